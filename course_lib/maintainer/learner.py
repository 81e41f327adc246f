"""Learner editions: the notebooks with the exercise solutions taken out.

Reference solutions live in the notebooks between ``### BEGIN SOLUTION`` and ``### END SOLUTION``. The learner
edition replaces each region with a stub that sets the names the check needs to ``None``, so an untouched exercise
reports "not done yet" instead of crashing, and clears the outputs of exercise cells; every other cell keeps its
outputs, so learners can compare their run with ours. ``tests/test_learner.py`` keeps the editions in sync.

    python -m course_lib.maintainer.learner            # write notebooks/learner/
    python -m course_lib.maintainer.learner --check    # exit 1 if notebooks/learner/ is out of date
"""
from __future__ import annotations

import argparse
import ast
import copy
import json
import sys
from pathlib import Path

from ..course import NOTEBOOK_DIR

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
LEARNER_DIR = NOTEBOOK_DIR / "learner"
BANNER = ("> **Learner edition.** The exercises at the end are yours: replace each `None` with your code and run the "
          "cell; the check says what is right and hints at what is not. Generated from `notebooks/{name}` (which has the "
          "reference solutions) by `python -m course_lib.maintainer.learner`.")


def _assigned(source: str) -> list[str]:
    """Top-level names a solution defines, in order: assignments, augmented assignments, defs and classes."""
    names = []
    for node in ast.parse(source).body:
        targets = (node.targets if isinstance(node, ast.Assign) else [node.target]
                   if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else [])
        for target in targets:  # a, b = ... assigns both
            names += [t.id for t in (target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target])
                      if isinstance(t, ast.Name)]
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.append(node.name)
    return list(dict.fromkeys(names))


def _loaded(source: str) -> set[str]:
    return {n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def strip_solutions(source: str) -> str:
    """Replace every solution region by stubs for the names used after it and not already set before it."""
    if BEGIN not in source:
        return source
    before, rest = source.split(BEGIN, 1)
    if END not in rest:
        raise ValueError(f"A cell opens '{BEGIN}' without '{END}':\n{source}")
    solution, after = rest.split(END, 1)
    indent = before[len(before.rstrip(" ")):]
    needed = [name for name in _assigned(solution) if name in _loaded(after) and name not in _assigned(before)]
    stub = "".join(f"{name} = None  # your code here\n{indent}" for name in needed) or f"# your code here\n{indent}"
    return strip_solutions(before + stub.rstrip(" ") + after.lstrip("\n"))


def learner_edition(notebook: dict, name: str) -> dict:
    """The learner edition of one notebook (nbformat JSON as a dict)."""
    edition = copy.deepcopy(notebook)
    for cell in edition["cells"]:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "code" and BEGIN in source:
            cell["source"] = strip_solutions(source).splitlines(keepends=True)
            cell["outputs"], cell["execution_count"] = [], None
    banner = {"cell_type": "markdown", "id": "learner", "metadata": {},
              "source": BANNER.format(name=name).splitlines(keepends=True)}
    edition["cells"].insert(1, banner)
    return edition


def exercise_notebooks() -> list[Path]:
    return sorted(p for p in NOTEBOOK_DIR.glob("*.ipynb") if BEGIN in p.read_text(encoding="utf-8"))


def render(notebook_path: Path) -> str:
    edition = learner_edition(json.loads(notebook_path.read_text(encoding="utf-8")), notebook_path.name)
    return json.dumps(edition, indent=1, sort_keys=True, ensure_ascii=False) + "\n"  # as nbformat writes


def stale_editions() -> list[str]:
    """Learner editions that are missing, outdated, or left over from a notebook that no longer exists."""
    expected = {p.name: render(p) for p in exercise_notebooks()}
    stale = [name for name, text in expected.items()
             if not (LEARNER_DIR / name).is_file() or (LEARNER_DIR / name).read_text(encoding="utf-8") != text]
    return stale + sorted(p.name for p in LEARNER_DIR.glob("*.ipynb") if p.name not in expected)


def write_editions() -> list[Path]:
    LEARNER_DIR.mkdir(exist_ok=True)
    written = []
    for path in exercise_notebooks():
        target = LEARNER_DIR / path.name
        target.write_text(render(path), encoding="utf-8")
        written.append(target)
    for leftover in LEARNER_DIR.glob("*.ipynb"):
        if leftover not in written:
            leftover.unlink()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write (or check) the learner editions in notebooks/learner/.")
    parser.add_argument("--check", action="store_true", help="only report editions that are out of date")
    if parser.parse_args(argv).check:
        stale = stale_editions()
        print("learner editions up to date" if not stale else
              f"out of date: {', '.join(stale)}; run: python -m course_lib.maintainer.learner")
        return 1 if stale else 0
    for path in write_editions():
        print(f"wrote {path.relative_to(NOTEBOOK_DIR.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
