"""Open weights, safely: export a course model as a release folder, and load one only after verifying it.

A release is what you would upload to a model hub:

    model.safetensors   the weights; its ``__metadata__`` holds the config, the corpus manifest hash, the licence
    config.json         the ModelConfig, readable without loading any weights
    README.md           a model card with Hugging Face metadata (license, tags, datasets, metrics, model-index)
    LICENSE             the licence text
    SHA256SUMS          one line per file, in the format ``sha256sum -c`` checks

The loader verifies every checksum and the config before it builds anything, refuses pickle files unless asked
(and then unpickles with ``weights_only=True``), and rebuilds a model whose outputs are bit-identical.
Taught in notebook 07.
"""
from __future__ import annotations

import datetime
import json
import os
import shutil
import struct
from pathlib import Path

import torch
import torch.nn as nn
from huggingface_hub import EvalResult, ModelCardData
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .checkpoints import config_differences, payload_sha256, state_tensors

from .data import DATA_DIR, sha256_of
from .hardware import model_device, pick_device
from .licenses import catalogue
from .config import ModelConfig
from .model import build_model
from .transformer import Transformer, count_parameters

RELEASE_FORMAT = "course-release-v1"
WEIGHTS, CONFIG, CARD, LICENSE, SUMS = "model.safetensors", "config.json", "README.md", "LICENSE", "SHA256SUMS"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
MAX_HEADER_BYTES = 100_000_000  # the safetensors format's own limit, against denial-of-service headers
LICENCE_TEXTS = DATA_DIR / "licence-texts"


class ReleaseError(ValueError):
    """A release folder that is incomplete, modified, inconsistent or unsafe to load."""


def read_safetensors_header(path: str | Path) -> dict:
    """The JSON header of a safetensors file, read by hand: 8 bytes little-endian length N, then N bytes of JSON."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise ReleaseError(f"{path.name} is too short to be a safetensors file ({size} bytes)")
        (length,) = struct.unpack("<Q", prefix)  # unsigned 64-bit, little-endian
        if length > min(MAX_HEADER_BYTES, size - 8):
            raise ReleaseError(f"{path.name}: header length {length:,} is impossible for a {size:,}-byte file")
        raw = handle.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ReleaseError(f"{path.name}: the header is not valid UTF-8 JSON ({error})") from error
    if not isinstance(header, dict):
        raise ReleaseError(f"{path.name}: the header must be a JSON object")
    return header


def write_checksums(folder: Path, names: list[str]) -> None:
    """SHA256SUMS for ``names``, in the format ``sha256sum -c`` checks: "<hex digest>  <file name>" per line."""
    (folder / SUMS).write_text("".join(f"{sha256_of(folder / name)}  {name}\n" for name in names))


def read_checksums(folder: Path) -> dict[str, str]:
    """{file name: expected SHA-256} from a release's SHA256SUMS, refusing malformed lines."""
    expected = {}
    for number, line in enumerate((folder / SUMS).read_text().splitlines(), 1):
        digest, _, filename = line.partition("  ")
        if len(digest) != 64 or not filename or "/" in filename or filename.startswith("."):
            raise ReleaseError(f"{SUMS} line {number} is malformed: {line!r}")
        expected[filename] = digest
    return expected


def licence_text(licence: str, *, holder: str, year: int) -> str:
    """The licence text to ship; the course has the MIT template, other licences need their own text."""
    template = LICENCE_TEXTS / f"{licence}.txt"
    if not template.is_file():
        shipped = sorted(p.stem for p in LICENCE_TEXTS.glob("*.txt"))
        raise ReleaseError(f"The course ships no text for licence {licence!r} (it has: {', '.join(shipped)}). "
                           f"Pass licence_text_override=<the full licence text> to export_release.")
    return template.read_text(encoding="utf-8").format(year=year, holder=holder)


def model_card(*, name: str, config: ModelConfig, licence: str, metrics: dict[str, float], parameters: int) -> str:
    """README.md with the YAML front matter the Hugging Face Hub reads (license, tags, datasets, model-index).

    The metadata is written by huggingface_hub's ``ModelCardData`` (``model-index`` from ``EvalResult``s), so
    ``huggingface_hub.ModelCard.load`` reads it back, with or without metrics.
    """
    hf = licence_terms_by_id(licence)["hf_license"]
    other = {"license_name": hf["license_name"], "license_link": LICENSE} if hf["value"] == "other" else {}
    results = [EvalResult(task_type="text-generation", dataset_type="course-corpus",
                          dataset_name="course corpus, validation split", metric_type="loss",
                          metric_name=f"{metric} (nats per byte)", metric_value=round(value, 4))
               for metric, value in metrics.items()]
    card_data = ModelCardData(
        license=hf["value"], **other, library_name="course_lib", pipeline_tag="text-generation",
        tags=["mixture-of-experts" if config.moe else "dense", "byte-level", "educational"],
        datasets=["course-corpus"], metrics=["loss"] if metrics else None,
        model_name=name if metrics else None, eval_results=results or None)
    kind = (f"A Mixture-of-Experts model ({config.moe.n_experts} routed experts, top-{config.moe.top_k})"
            if config.moe else "A dense transformer")
    rows = "\n".join(f"| {metric} | {value:.4f} |" for metric, value in metrics.items()) or "| (none given) | |"
    return f"""---
{card_data.to_yaml()}
---

# {name}

{kind} with {parameters:,} parameters, trained in the course *Mixture-of-Experts from scratch, the DeepSeek way*.
It reads and writes bytes (vocabulary 256) with a context of {config.context_length} bytes.

## Training data
The course corpus (`data/` in the course repository): CPython's help topics (prose), 21 standard-library
modules (code), and generated arithmetic. The CPython parts are under the PSF License 2.0. The corpus manifest's
SHA-256 is stored in the weights file's metadata.

## Evaluation (the course's own, validation split)
| metric | value |
|---|---:|
{rows}

## Intended use and limits
Teaching only: it is a few-minute CPU training run. It produces plausible-looking bytes, not reliable text.

## How to load
`course_lib.open_weights.load_release(folder)` verifies `SHA256SUMS` and the config first. Check by hand with
`sha256sum -c SHA256SUMS`.

## Licence
`{licence}` (see `LICENSE`).
"""


def licence_terms_by_id(licence: str) -> dict:
    licences = catalogue()["licences"]
    if licence not in licences:
        raise ReleaseError(f"Unknown licence {licence!r}. Known licence ids: {', '.join(sorted(licences))}.")
    return licences[licence]


def _atomic_folder(folder: Path, write, *, overwrite: bool) -> None:
    """Write a whole folder beside ``folder``, then swap it in, so a failure never leaves half a release."""
    if folder.exists() and not overwrite:
        raise FileExistsError(f"{folder} already exists. Pass overwrite=True to replace it, or choose another folder.")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir()
        write(staging)
        if folder.exists():
            os.replace(folder, old)  # a directory cannot be replaced in one step: move the old one aside first
        try:
            os.replace(staging, folder)
        except BaseException:
            if old.exists():
                os.replace(old, folder)  # put the previous release back
            raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def export_release(model: Transformer, folder: str | Path, *, name: str, licence: str = "mit",
                   holder: str = "the course learner", metrics: dict[str, float] | None = None,
                   licence_text_override: str | None = None, overwrite: bool = False) -> Path:
    """Write ``model`` as a release folder (see the module docstring) and return its path.

    name: the model's name in the card. licence: a licence id from data/licenses.json (its Hugging Face tag goes
    into the card). holder: the copyright holder in the licence text. metrics: the course's evaluation, e.g.
    {"validation loss": 2.31}. licence_text_override: the full text for a licence the course ships no text for.
    """
    licence_terms_by_id(licence)
    text = licence_text_override or licence_text(licence, holder=holder, year=datetime.date.today().year)
    tensors = state_tensors(model)
    metadata = {"format": RELEASE_FORMAT, "model_config": json.dumps(model.config.to_dict(), sort_keys=True),
                "corpus_manifest_sha256": sha256_of(DATA_DIR / "manifest.json"), "license": licence,
                "payload_sha256": payload_sha256(tensors)}
    card = model_card(name=name, config=model.config, licence=licence, metrics=metrics or {},
                      parameters=count_parameters(model))

    def write(staging: Path) -> None:
        save_file(tensors, str(staging / WEIGHTS), metadata=metadata)
        (staging / CONFIG).write_text(json.dumps(model.config.to_dict(), indent=2, sort_keys=True) + "\n")
        (staging / CARD).write_text(card, encoding="utf-8")
        (staging / LICENSE).write_text(text, encoding="utf-8")
        write_checksums(staging, [WEIGHTS, CONFIG, CARD, LICENSE])

    folder = Path(folder)
    _atomic_folder(folder, write, overwrite=overwrite)
    return folder


def verify_release(folder: str | Path) -> dict[str, str]:
    """Check SHA256SUMS against every file; return {file: sha256}. Unlisted or missing files are errors too."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"No release folder at {folder}. Export one with export_release(model, folder, ...).")
    if not (folder / SUMS).is_file():
        raise ReleaseError(f"{folder} has no {SUMS}: without checksums nothing can be verified. Ask the publisher "
                           f"for the checksums, or re-export with export_release.")
    expected = read_checksums(folder)
    present = {p.name for p in folder.iterdir() if p.is_file()} - {SUMS}
    if present - set(expected):
        raise ReleaseError(f"{folder} contains files that {SUMS} does not list: {', '.join(sorted(present - set(expected)))}. "
                           f"Remove them, or do not trust this release.")
    for filename, digest in expected.items():
        if filename not in present:
            raise ReleaseError(f"{filename} is listed in {SUMS} but missing from {folder}.")
        actual = sha256_of(folder / filename)
        if actual != digest:
            raise ReleaseError(f"{filename}: checksum mismatch (expected {digest[:16]}…, got {actual[:16]}…). The file "
                               f"changed after export: it is corrupted or was tampered with. Download or export it again.")
    return expected


def _refuse_pickles(folder: Path, allow_pickle: bool) -> list[Path]:
    pickles = sorted(p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles and not allow_pickle:
        raise ReleaseError(f"{', '.join(p.name for p in pickles)} in {folder} is a pickle checkpoint: loading an "
                           f"untrusted pickle can run arbitrary code. Ask for a .safetensors file. If you trust the "
                           f"source, pass allow_pickle=True (it is then unpickled with torch.load(weights_only=True)).")
    return pickles


def load_release(folder: str | Path, *, allow_pickle: bool = False, device: str | torch.device | None = None) -> Transformer:
    """Verify a release folder, then rebuild its model (in eval mode). The module docstring lists the checks."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"No release folder at {folder}. Export one with export_release(model, folder, ...).")
    pickles = _refuse_pickles(folder, allow_pickle)
    verify_release(folder)
    try:
        saved = json.loads((folder / CONFIG).read_text())
        config = ModelConfig(**saved)
    except (OSError, json.JSONDecodeError, TypeError) as error:
        raise ReleaseError(f"{CONFIG} in {folder} is missing or not a course ModelConfig ({error}).") from error
    if (folder / WEIGHTS).is_file():
        metadata = read_safetensors_header(folder / WEIGHTS).get("__metadata__", {})
        if metadata.get("format") != RELEASE_FORMAT:
            raise ReleaseError(f"{WEIGHTS} is not a course release (format {metadata.get('format')!r}).")
        differences = [f"{k}: {CONFIG} says {a!r}, {WEIGHTS} was exported with {b!r}"
                       for k, a, b in config_differences(saved, json.loads(metadata["model_config"]))]
        if differences:
            raise ReleaseError(f"Config mismatch in {folder}: {'; '.join(differences)}. Re-export the release.")
        try:
            tensors = load_file(str(folder / WEIGHTS))
        except SafetensorError as error:
            raise ReleaseError(f"{WEIGHTS} is not a valid safetensors file ({error}).") from error
        if payload_sha256(tensors) != metadata.get("payload_sha256"):
            raise ReleaseError(f"{WEIGHTS}: the tensors do not match the checksum stored inside the file.")
    elif pickles:
        tensors = torch.load(pickles[0], map_location="cpu", weights_only=True)  # refuses code, allows tensors
    else:
        raise ReleaseError(f"{folder} has no {WEIGHTS}.")
    model = build_model(config)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as error:
        raise ReleaseError(f"The weights do not fit the config in {CONFIG}: {str(error).splitlines()[0]} …") from error
    return model.to(pick_device(device)).eval()


def same_outputs(a: nn.Module, b: nn.Module, tokens: torch.Tensor) -> bool:
    """True when both models, in eval mode, give bit-identical logits for ``tokens`` (not merely close ones).

    Each model runs on its own device; the logits are compared on the CPU."""
    modes = a.training, b.training
    try:
        with torch.no_grad():
            return torch.equal(a.eval()(tokens.to(model_device(a))).cpu(), b.eval()(tokens.to(model_device(b))).cpu())
    finally:
        a.train(modes[0])
        b.train(modes[1])
