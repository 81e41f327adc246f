"""Release export and verified loading: bit-identical round trips, tampering, config mismatches, pickles."""
import json
import pickle

import pytest
import torch

from course_lib import open_weights
from course_lib.open_weights import (ReleaseError, export_release, load_release, read_safetensors_header,
                                     same_outputs, verify_release, write_checksums)
from course_lib.transformer import ModelConfig
from course_lib.model import build_model

TOKENS = torch.randint(256, (2, 32), generator=torch.Generator().manual_seed(0))


def fresh(config, seed=0):
    torch.manual_seed(seed)
    return build_model(config)


@pytest.fixture
def release(tmp_path, tiny_config):
    model = fresh(tiny_config)
    return model, export_release(model, tmp_path / "release", name="tiny", metrics={"validation loss": 2.5})


def rewrite_sums(folder):
    write_checksums(folder, sorted(p.name for p in folder.iterdir() if p.name != "SHA256SUMS"))


def test_round_trip_is_bit_identical(release):
    model, folder = release
    assert sorted(p.name for p in folder.iterdir()) == ["LICENSE", "README.md", "SHA256SUMS", "config.json",
                                                         "model.safetensors"]
    assert same_outputs(model, load_release(folder), TOKENS)


def test_moe_round_trip_is_bit_identical(tmp_path):
    config = ModelConfig(context_length=32, d_model=32, n_layers=2, n_heads=4,
                         moe=dict(n_experts=4, top_k=2, expert_hidden=16, n_shared=1, hash_layers=1))
    model = fresh(config)
    assert same_outputs(model, load_release(export_release(model, tmp_path / "r", name="moe")), TOKENS)


def test_same_outputs_is_not_a_tolerance_check(tiny_config):
    model, other = fresh(tiny_config), fresh(tiny_config)
    with torch.no_grad():
        next(other.parameters()).view(-1)[0] += 1e-6
    assert same_outputs(model, fresh(tiny_config), TOKENS) and not same_outputs(model, other, TOKENS)


@pytest.mark.parametrize("filename", ["model.safetensors", "config.json", "README.md", "LICENSE"])
def test_one_flipped_byte_fails_naming_the_file(release, filename):
    _, folder = release
    data = bytearray((folder / filename).read_bytes())
    data[len(data) // 2] ^= 0x01
    (folder / filename).write_bytes(bytes(data))
    with pytest.raises(ReleaseError, match=f"{filename}: checksum mismatch"):
        load_release(folder)


def test_config_mismatch_fails_clearly_even_with_fresh_checksums(release):
    _, folder = release
    config = json.loads((folder / "config.json").read_text())
    config["n_layers"] = 3
    (folder / "config.json").write_text(json.dumps(config))
    rewrite_sums(folder)  # a careless edit, checksums regenerated: the config check still catches it
    with pytest.raises(ReleaseError, match="n_layers: config.json says 3, model.safetensors was exported with 2"):
        load_release(folder)


def test_missing_and_unlisted_files_are_errors(release):
    _, folder = release
    (folder / "extra.txt").write_text("hello")
    with pytest.raises(ReleaseError, match="does not list: extra.txt"):
        verify_release(folder)
    (folder / "extra.txt").unlink()
    (folder / "LICENSE").unlink()
    with pytest.raises(ReleaseError, match="LICENSE is listed in SHA256SUMS but missing"):
        verify_release(folder)
    (folder / "SHA256SUMS").unlink()
    with pytest.raises(ReleaseError, match="has no SHA256SUMS"):
        verify_release(folder)
    with pytest.raises(FileNotFoundError, match="No release folder"):
        load_release(folder / "nope")


class Payload:
    """Writes a marker file when unpickled: the harmless stand-in for malicious code."""
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (_touch, (self.marker,))


def _touch(path):
    open(path, "w").close()


def test_pickle_is_refused_by_default_and_weights_only_when_allowed(release, tmp_path):
    model, folder = release
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    rewrite_sums(folder)
    with pytest.raises(ReleaseError, match="pytorch_model.bin .* is a pickle checkpoint"):
        load_release(folder)
    assert same_outputs(model, load_release(folder, allow_pickle=True), TOKENS)  # plain tensors: accepted

    marker = tmp_path / "marker"
    torch.save({"weights": torch.zeros(1), "payload": Payload(marker)}, folder / "pytorch_model.bin")
    rewrite_sums(folder)
    with pytest.raises(pickle.UnpicklingError):
        load_release(folder, allow_pickle=True)
    assert not marker.exists()  # weights_only=True refused the payload before running it
    torch.load(folder / "pytorch_model.bin", weights_only=False)  # what an unsafe loader does...
    assert marker.exists()  # ...it ran the code


def test_safetensors_header_by_hand_matches_the_library(release):
    model, folder = release
    header = read_safetensors_header(folder / "model.safetensors")
    metadata = header.pop("__metadata__")
    assert metadata["license"] == "mit" and metadata["format"] == "course-release-v1"
    assert set(header) == set(model.state_dict())
    spans = sorted(entry["data_offsets"] for entry in header.values())
    assert spans[0][0] == 0 and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # no holes, no overlap


def test_impossible_header_length_is_refused(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes((10**12).to_bytes(8, "little") + b"{}")
    with pytest.raises(ReleaseError, match="header length"):
        read_safetensors_header(path)


def test_model_card_metadata(release, tmp_path, tiny_config):
    _, folder = release
    yaml = pytest.importorskip("yaml")
    card = (folder / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["license"] == "mit" and "license_name" not in front
    assert front["model-index"][0]["results"][0]["metrics"][0]["value"] == 2.5
    other = export_release(fresh(tiny_config), tmp_path / "ds", name="x", licence="deepseek-license-1.0",
                           licence_text_override="DEEPSEEK LICENSE AGREEMENT ...")
    front = yaml.safe_load((other / "README.md").read_text().split("---")[1])
    assert (front["license"], front["license_name"], front["license_link"]) == ("other", "deepseek", "LICENSE")


@pytest.mark.parametrize("metrics", [{"validation loss": 2.5, "prose": 2.1}, None, {}], ids=["metrics", "none", "empty"])
@pytest.mark.parametrize("licence, text", [("mit", None), ("deepseek-license-1.0", "DEEPSEEK LICENSE AGREEMENT ...")])
def test_every_exported_card_loads_with_huggingface_hub(tmp_path, tiny_config, metrics, licence, text):
    """The independent reader: huggingface_hub parses the card and its model-index (an empty `metrics:` broke it)."""
    from huggingface_hub import ModelCard

    folder = export_release(fresh(tiny_config), tmp_path / "r", name="tiny", licence=licence, metrics=metrics,
                            licence_text_override=text)
    card = ModelCard.load(folder / "README.md")
    assert card.data.license == ("mit" if licence == "mit" else "other")
    results = card.data.eval_results or []
    assert {(r.metric_name, r.metric_value) for r in results} == \
        {(f"{name} (nats per byte)", value) for name, value in (metrics or {}).items()}
    assert all(r.task_type == "text-generation" and r.dataset_type == "course-corpus" for r in results)
    assert "# tiny" in card.text


def test_export_errors_name_the_fix(release, tmp_path, tiny_config):
    model, folder = release
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_release(model, folder, name="tiny")
    with pytest.raises(ReleaseError, match="Known licence ids: .*mit"):
        export_release(model, tmp_path / "x", name="x", licence="wtfpl")
    with pytest.raises(ReleaseError, match="licence_text_override"):
        export_release(model, tmp_path / "x", name="x", licence="apache-2.0")


def test_failed_export_leaves_the_previous_release_intact(release, monkeypatch, tiny_config):
    model, folder = release
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def broken_save(tensors, filename, metadata=None):
        open(filename, "wb").write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(open_weights, "save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        export_release(fresh(tiny_config, seed=1), folder, name="tiny", overwrite=True)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in folder.parent.iterdir()) == ["release"]  # no staging folder left behind


def test_a_failed_swap_puts_the_previous_release_back(release, monkeypatch, tiny_config):
    _, folder = release
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    real_replace, calls = open_weights.os.replace, []

    def replace(source, target):
        calls.append(source)
        if len(calls) == 2:  # moving the new release into place fails (disk error, permissions...)
            raise OSError("rename failed")
        real_replace(source, target)

    monkeypatch.setattr(open_weights.os, "replace", replace)
    with pytest.raises(OSError, match="rename failed"):
        export_release(fresh(tiny_config, seed=1), folder, name="tiny", overwrite=True)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in folder.parent.iterdir()) == ["release"]


def test_same_outputs_leaves_training_mode_alone(tiny_config):
    model, other = fresh(tiny_config), fresh(tiny_config)
    model.train()
    other.eval()
    assert same_outputs(model, other, TOKENS)
    assert model.training and not other.training
