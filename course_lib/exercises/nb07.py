"""Checks for notebook 07's exercises."""
from __future__ import annotations

import struct
from pathlib import Path

from . import NOT_DONE, Feedback, graduated, not_done


def check_header_length(answer, path: str | Path) -> Feedback:
    """Exercise 07.1: the header length N stored in the first 8 bytes of a safetensors file."""
    if not_done(answer):
        return NOT_DONE
    prefix = Path(path).read_bytes()[:8]
    truth = struct.unpack("<Q", prefix)[0]
    if answer == truth:
        return Feedback(True, f"N = {truth:,}: the JSON header fills bytes 8 to {8 + truth:,}, and the tensor bytes "
                              f"start right after. Next: json.loads those N bytes and look at one tensor's data_offsets.")
    if answer == struct.unpack(">Q", prefix)[0]:
        return Feedback(False, "you read the 8 bytes big-endian; the format says little-endian: '<Q' in struct, or "
                               "int.from_bytes(prefix, 'little').")
    if answer == truth + 8:
        return Feedback(False, "that counts the 8 length bytes too; N is the length of the JSON alone.")
    if isinstance(answer, int) and answer < 1000:
        return Feedback(False, "that looks like a count of tensors, not of bytes: read the first 8 bytes of the file.")
    return graduated("07.1", answer, nudge="the format's first 8 bytes hold one number: the length of the JSON header.",
                     method="open the file in binary mode, read 8 bytes, and decode them as an unsigned 64-bit "
                            "little-endian integer (struct.unpack('<Q', ...)).")


def check_outputs_rule(answer) -> Feedback:
    """Exercise 07.2: may you train your own model on outputs of Llama 3, and of Llama 3.1? A dict of verdicts."""
    if not_done(answer):
        return NOT_DONE
    if not isinstance(answer, dict) or set(answer) != {"llama3", "llama3.1"}:
        return Feedback(False, "answer with a dict: {'llama3': 'yes' | 'no' | 'conditional', 'llama3.1': ...}.")
    if answer == {"llama3": "no", "llama3.1": "conditional"}:
        return Feedback(True, "Llama 3 §1.b.v forbids using outputs to improve any other LLM; Llama 3.1 §1.b.i allows "
                              "it if the new model's name begins with 'Llama'. One version apart, opposite rules. "
                              "Next: check('meta-llama/Llama-3.1-8B', publish_finetune_as='...') with two names.")
    if answer == {"llama3": "conditional", "llama3.1": "no"}:
        return Feedback(False, "you swapped them: the older licence (Llama 3) is the stricter one here.")
    if answer["llama3.1"] == "yes":
        return Feedback(False, "Llama 3.1 allows it, but not unconditionally: read the last sentence of §1.b.i.")
    if answer["llama3"] != "no":
        return Feedback(False, "read Llama 3's §1.b.v: 'will not use … any output … to improve any other large "
                               "language model'.")
    return graduated("07.2", answer, nudge="look for the clause on using a model's outputs to improve another model.",
                     method="check each with course_lib.licenses.check(repo_id, train_on_outputs=True) and read why.")


def check_tampered_file(answer, folder: str | Path) -> Feedback:
    """Exercise 07.3: which file of a release no longer matches its SHA256SUMS line?"""
    if not_done(answer):
        return NOT_DONE
    from ..data import sha256_of
    from ..open_weights import SUMS, read_checksums

    folder = Path(folder)
    expected = read_checksums(folder)
    changed = [name for name, digest in expected.items() if sha256_of(folder / name) != digest]
    if answer in changed:
        return Feedback(True, f"{answer} changed after export. A checksum tells you that a file changed, not who "
                              f"changed it: for that, publishers sign the checksums. Next: `sha256sum -c SHA256SUMS`.")
    if answer == SUMS:
        return Feedback(False, "SHA256SUMS is the reference, not one of the checked files: compare each listed file "
                               "with its line.")
    if answer in expected:
        return Feedback(False, f"{answer} still matches its checksum; compute sha256_of for every listed file.")
    return Feedback(False, f"answer with a file name from {SUMS}: {', '.join(expected)}.")
