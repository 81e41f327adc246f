"""The learner's working copy: complete, self-contained, ignored by git, and never overwriting their work."""
import json
import re
import subprocess

import pytest

from course_lib.course import COURSE_MAP
from course_lib.workspace import WORKSPACE_DIR, make_workspace


def test_copy_is_complete_and_its_links_stay_inside(tmp_path):
    result = make_workspace(tmp_path / "work")
    assert result["copied"] == [lesson.notebook for lesson in COURSE_MAP if lesson.available] and not result["kept"]
    for path in (tmp_path / "work").glob("*.ipynb"):
        notebook = json.loads(path.read_text())
        text = "".join("".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "markdown")
        for target in re.findall(r"\]\(([^)#\s]+\.ipynb)", text):
            assert "/" not in target and (path.parent / target).is_file(), f"{path.name} links to {target}"
        if path.name[:2] != "00":  # the exercises come without solutions
            assert "### BEGIN SOLUTION" not in path.read_text(), path.name


def test_work_is_never_overwritten(tmp_path):
    work = tmp_path / "work"
    make_workspace(work)
    mine = work / "04_load_balancing.ipynb"
    mine.write_text("my answers")
    (work / "05_moe_vs_dense.ipynb").unlink()
    result = make_workspace(work)
    assert result["copied"] == ["05_moe_vs_dense.ipynb"] and "04_load_balancing.ipynb" in result["kept"]
    assert mine.read_text() == "my answers"
    with pytest.raises(NotADirectoryError, match="not a folder"):
        make_workspace(mine)


def test_git_ignores_the_working_copy():
    ignored = subprocess.run(["git", "check-ignore", "-q", str(WORKSPACE_DIR / "01_dense_transformer.ipynb")],
                             cwd=WORKSPACE_DIR.parent)
    assert ignored.returncode == 0, "add my-work/ to .gitignore"
