"""A learner's own working copy of the course: ``python -m course_lib.workspace``.

Copies notebook 00 and the learner editions (exercises without solutions) into ``my-work/`` at the repository
root, which git ignores. Work there: the repository's own notebooks stay untouched, so ``git pull`` brings course
updates without conflicts. Links between notebooks point to their neighbours in the same folder, so they stay
inside the copy. A notebook already in the copy is never overwritten: run the command again after an update to
get only the notebooks you do not have yet (rename yours first to get a fresh copy of one).
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from .course import COURSE_MAP, NOTEBOOK_DIR
from .maintainer.learner import LEARNER_DIR

WORKSPACE_DIR = NOTEBOOK_DIR.parent / "my-work"


def sources() -> list[Path]:
    """The notebooks a working copy starts from, in course order: the learner edition where there is one."""
    paths = []
    for lesson in COURSE_MAP:
        learner = LEARNER_DIR / lesson.notebook
        full = NOTEBOOK_DIR / lesson.notebook
        if learner.is_file() or full.is_file():
            paths.append(learner if learner.is_file() else full)
    return paths


def make_workspace(destination: Path = WORKSPACE_DIR) -> dict[str, list[str]]:
    """Copy the missing notebooks into ``destination``; return the names copied and the names kept as they were."""
    destination = Path(destination)
    if destination.exists() and not destination.is_dir():
        raise NotADirectoryError(f"{destination} exists and is not a folder: move it away or pass another destination")
    destination.mkdir(parents=True, exist_ok=True)
    copied, kept = [], []
    for source in sources():
        target = destination / source.name
        if target.exists():
            kept.append(source.name)
        else:
            shutil.copy2(source, target)
            copied.append(source.name)
    return {"copied": copied, "kept": kept}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--destination", type=Path, default=WORKSPACE_DIR, help="default: my-work/ in the repository")
    args = parser.parse_args(argv)
    result = make_workspace(args.destination)
    where = args.destination.resolve()
    shown = where.relative_to(Path.cwd()) if where.is_relative_to(Path.cwd()) else where.name
    print(f"working copy in {shown}/: {len(result['copied'])} notebook(s) copied"
          + (f", {len(result['kept'])} already there and left as they are" if result["kept"] else ""))
    print(f"open {shown}/00_start_here.ipynb in JupyterLab and work there; git ignores this folder")


if __name__ == "__main__":
    main()
