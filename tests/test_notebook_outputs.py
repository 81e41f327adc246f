"""Committed notebook outputs are shared on GitHub: they must not carry a path from the machine that ran them."""
import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").rglob("*.ipynb"))
# an absolute POSIX path under a typical root, or a Windows drive path
ABSOLUTE_PATH = re.compile(r"(?<![\w.~])/(?:home|Users|root|work|tmp|opt|usr|var|private|mnt)/|\b[A-Za-z]:\\\\")


def output_texts(notebook: Path):
    for index, cell in enumerate(json.loads(notebook.read_text())["cells"]):
        for output in cell.get("outputs", []):
            texts = [output.get("text", "")] + [value for key, value in output.get("data", {}).items()
                                                 if key.startswith("text/")]
            for text in texts:
                yield index, "".join(text) if isinstance(text, list) else text


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name if p.parent.name == "notebooks" else f"learner/{p.name}")
def test_no_absolute_paths_in_outputs(notebook):
    leaks = [(index, match.group()) for index, text in output_texts(notebook) for match in ABSOLUTE_PATH.finditer(text)]
    assert not leaks, f"{notebook.name}: absolute paths in the outputs of cells {leaks[:5]}"


def test_the_check_finds_a_leak():
    assert ABSOLUTE_PATH.search("course_lib doctor — Linux x86_64, in /home/ana/course/.venv")
    assert ABSOLUTE_PATH.search(r"C:\\Users\\ana\\course")
    assert not ABSOLUTE_PATH.search("see notebooks/learner/03_routing.ipynb and data/results/seed_sweeps.json")
