"""Learner editions: in sync with the notebooks, free of solutions, and every exercise checked."""
import json
import re

import pytest

from course_lib.course import COURSE_MAP, NOTEBOOK_DIR
from course_lib.maintainer.learner import BEGIN, END, LEARNER_DIR, exercise_notebooks, stale_editions, strip_solutions


def test_learner_editions_are_in_sync():
    assert stale_editions() == [], "learner editions are out of date: run `python -m course_lib.maintainer.learner`"


def code_cells(path):
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("lesson", [l for l in COURSE_MAP if l.notebook[:2] != "00"], ids=lambda l: l.notebook[:2])
def test_every_lesson_ends_with_three_checked_exercises(lesson):
    cells = [c for c in code_cells(NOTEBOOK_DIR / lesson.notebook) if BEGIN in c]
    assert len(cells) >= 3
    for cell in cells:
        after = cell.split(END, 1)[1]
        assert re.search(r"\bcheck_\w+\(", after), f"an exercise without a check:\n{cell}"


def test_learner_editions_hold_no_solutions_and_keep_the_checks():
    assert [p.name for p in exercise_notebooks()] == sorted(p.name for p in LEARNER_DIR.glob("*.ipynb"))
    for path in LEARNER_DIR.glob("*.ipynb"):
        cells = code_cells(path)
        assert not any(BEGIN in c or END in c for c in cells), path.name
        original = [c for c in code_cells(NOTEBOOK_DIR / path.name) if BEGIN in c]
        stubs = [c for c in cells if "# your code here" in c]
        assert len(stubs) == len(original) and all(re.search(r"\bcheck_\w+\(", c) for c in stubs)


def test_strip_solutions_stubs_the_names_the_check_needs():
    source = ("x = 1\n### BEGIN SOLUTION\nhelper = 2\n\ndef f(n):\n    return n\nanswer = f(helper)\n"
              "### END SOLUTION\ncheck_it(answer, f, x)\n")
    assert strip_solutions(source) == "x = 1\nf = None  # your code here\nanswer = None  # your code here\ncheck_it(answer, f, x)\n"
    already_set = "answer = None\n### BEGIN SOLUTION\nanswer = 42\n### END SOLUTION\ncheck(answer)\n"
    assert strip_solutions(already_set) == "answer = None\n# your code here\ncheck(answer)\n"
    two = "### BEGIN SOLUTION\na = 1\n### END SOLUTION\nc(a)\n### BEGIN SOLUTION\nb = 2\n### END SOLUTION\nc(b)\n"
    assert strip_solutions(two) == "a = None  # your code here\nc(a)\nb = None  # your code here\nc(b)\n"


def test_an_unclosed_solution_region_is_an_error():
    with pytest.raises(ValueError, match="without '### END SOLUTION'"):
        strip_solutions("### BEGIN SOLUTION\nanswer = 1\n")


def test_tuple_assignments_get_stubs():
    source = "x = 1\n### BEGIN SOLUTION\nseen, answer = [], 0\n### END SOLUTION\ncheck(answer, seen)\n"
    assert strip_solutions(source) == "x = 1\nseen = None  # your code here\nanswer = None  # your code here\ncheck(answer, seen)\n"
