import os

import pytest
import torch
from hypothesis import settings

# Tests run on the CPU whatever the machine has, with the thread count CI uses, so numbers are comparable.
os.environ["COURSE_DEVICE"] = "cpu"
torch.set_num_threads(2)
settings.register_profile("course", max_examples=40, deadline=None)
settings.load_profile("course")


@pytest.fixture(scope="session")
def corpus():
    from course_lib.data import Corpus

    return Corpus()


@pytest.fixture
def tiny_config():
    from course_lib.transformer import ModelConfig

    return ModelConfig(context_length=32, d_model=32, n_layers=2, n_heads=4, ffn_hidden=48)
