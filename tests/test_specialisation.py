import pytest
import torch

from course_lib.specialisation import TOKEN_CLASSES, expert_disabled, expert_usage, shared_experts_disabled, token_classes
from course_lib.transformer import ModelConfig
from course_lib.model import build_model


def test_token_classes():
    text = "def f(x): return 12"
    classes = token_classes(torch.tensor(list(text.encode())))
    names = [TOKEN_CLASSES[c] for c in classes.tolist()]
    assert names[:3] == ["python keyword"] * 3 and names[3] == "whitespace"
    assert names[5] == "punctuation" and names[6] == "letter" and names[-1] == "digit"
    assert names[10:16] == ["python keyword"] * 6


def small_moe_model(n_shared=1):
    torch.manual_seed(0)
    return build_model(ModelConfig(context_length=16, d_model=32, n_layers=2, n_heads=2, ffn_hidden=32,
                                   moe=dict(n_experts=4, top_k=2, expert_hidden=16, n_shared=n_shared)))


def test_expert_usage_rows_are_distributions(corpus):
    usage = expert_usage(small_moe_model(), corpus, batches=1, batch_size=2, seq_len=16)
    assert usage["domain"].shape == (2, 3, 4) and torch.allclose(usage["domain"].sum(-1), torch.ones(2, 3))
    assert usage["class"].shape == (2, len(TOKEN_CLASSES), 4)


def test_ablations_change_the_output_and_restore_it():
    model = small_moe_model().eval()
    inputs = torch.randint(256, (1, 16))
    with torch.no_grad():
        before = model(inputs)
        with shared_experts_disabled(model):
            assert not torch.allclose(model(inputs), before)
        with expert_disabled(model, 0):
            assert not (model(inputs, return_aux=True).routing[0].indices == 0).any()
        assert torch.equal(model(inputs), before)
    with pytest.raises(ValueError, match="no shared experts"):
        with shared_experts_disabled(small_moe_model(n_shared=0)):
            pass
