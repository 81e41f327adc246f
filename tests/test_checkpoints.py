import json
import pytest
import torch

from course_lib import checkpoints
from course_lib.checkpoints import load_checkpoint, load_model, read_checkpoint, save_checkpoint
from course_lib.transformer import ModelConfig
from course_lib.model import build_model


def fresh(config, seed=0):
    torch.manual_seed(seed)
    return build_model(config)


def test_checkpoint_round_trip_and_load_model(tmp_path, tiny_config):
    model = fresh(tiny_config)
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model)
    rebuilt = load_model(path)
    inputs = torch.randint(256, (2, 16))
    assert torch.equal(model(inputs), rebuilt(inputs))
    with open(path, "rb") as handle:  # safetensors: an 8-byte little-endian length, then that much JSON header
        header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
    assert header["__metadata__"]["format"] == checkpoints.CHECKPOINT_FORMAT
    assert not path.read_bytes().startswith(b"\x80")  # a pickle starts with its PROTO opcode, 0x80


def test_truncated_checkpoint_is_a_clear_error(tmp_path, tiny_config):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, fresh(tiny_config))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="truncated or corrupted"):
        read_checkpoint(path)


def test_flipped_byte_is_detected(tmp_path, tiny_config):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, fresh(tiny_config))
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupted"):
        read_checkpoint(path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="No checkpoint"):
        read_checkpoint(tmp_path / "nope.safetensors")


def test_config_mismatch_names_the_field(tmp_path, tiny_config):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, fresh(tiny_config))
    other = build_model(ModelConfig(context_length=32, d_model=32, n_layers=3, n_heads=4, ffn_hidden=48))
    with pytest.raises(ValueError, match="n_layers: checkpoint 2 vs model 3"):
        load_checkpoint(path, other)


def test_failed_save_leaves_previous_checkpoint_intact(tmp_path, tiny_config, monkeypatch):
    path = tmp_path / "m.safetensors"
    model = fresh(tiny_config)
    save_checkpoint(path, model)
    before = path.read_bytes()

    def broken_save(tensors, filename, metadata=None):
        with open(filename, "wb") as handle:
            handle.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoints, "save_file", broken_save)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model)
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind
