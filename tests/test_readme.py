import re
from pathlib import Path

from course_lib.course import COURSE_MAP, markdown_table

ROOT = Path(__file__).resolve().parent.parent


def test_readme_course_map_is_current():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- course-map:start.*?-->\n(.*?)\n<!-- course-map:end -->", readme, re.S)
    assert block and block.group(1) == markdown_table(), "regenerate with course_lib.course.markdown_table()"


def test_every_notebook_is_on_the_map():
    on_disk = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert on_disk == [lesson.notebook for lesson in COURSE_MAP if lesson.available]


def test_ci_runs_the_readme_test_line_verbatim():
    readme = (ROOT / "README.md").read_text()
    test_line = re.findall(r"```bash\n(.*?)\n```", readme)[1]
    assert "pytest" in test_line
    assert test_line in (ROOT / ".ci" / "run").read_text()


def test_one_workshop_threshold_everywhere():
    """The doctor, the README and the instructor guide advise workshop mode above the same number of minutes."""
    from course_lib.course import WORKSHOP_ABOVE_MINUTES, running_time_estimate, workshop_recommended

    guide = (ROOT / "docs" / "instructor-guide.md").read_text()
    assert f"more than {WORKSHOP_ABOVE_MINUTES} minutes" in guide and "WORKSHOP_ABOVE_MINUTES" in guide
    assert f"more than {WORKSHOP_ABOVE_MINUTES} minutes" in (ROOT / "README.md").read_text()
    from course_lib.course import REFERENCE_STEP_SECONDS

    at_reference = sum(running_time_estimate(REFERENCE_STEP_SECONDS).values())
    threshold_step = REFERENCE_STEP_SECONDS * WORKSHOP_ABOVE_MINUTES * 60 / at_reference
    assert workshop_recommended(threshold_step * 1.01) and not workshop_recommended(threshold_step * 0.99)
