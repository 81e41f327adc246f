"""The course's documents: glossary terms really taught where they point, generated pages in sync, no dead links."""
import json
import re
from pathlib import Path

import pytest

from course_lib.course import COURSE_MAP, NOTEBOOK_DIR
from course_lib.maintainer.docs import MAP_FIGURE, further_reading_markdown, map_fingerprint

ROOT = NOTEBOOK_DIR.parent
DOCS = ROOT / "docs"


def notebook_text(path: Path) -> str:
    return "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"]).lower()


def glossary_rows():
    rows = re.findall(r"^\| \*\*(.+?)\*\* \| (.+?) \| \[(\d\d)\]\(\.\./notebooks/(.+?\.ipynb)\) \|$",
                      (DOCS / "glossary.md").read_text(), flags=re.M)
    assert len(rows) >= 50
    return rows


@pytest.mark.parametrize("term, meaning, number, notebook", glossary_rows(), ids=lambda v: v if isinstance(v, str) and len(v) < 40 else "")
def test_glossary_terms_are_taught_where_they_point(term, meaning, number, notebook):
    path = NOTEBOOK_DIR / notebook
    assert path.is_file() and notebook.startswith(number)
    key = re.sub(r"\s*\(.*?\)\s*$", "", term).lower()  # "MLA (multi-head latent attention)" -> "mla"
    assert key in notebook_text(path), f"glossary term {term!r} does not appear in {notebook}"


def test_glossary_covers_every_lesson():
    numbers = [number for _, _, number, _ in glossary_rows()]
    for lesson in COURSE_MAP[1:]:
        assert numbers.count(lesson.notebook[:2]) >= 3, lesson.notebook


def test_further_reading_page_is_in_sync():
    assert (DOCS / "further-reading.md").read_text() == further_reading_markdown(), \
        "docs/further-reading.md is stale: run `python -m course_lib.maintainer.docs`"
    assert further_reading_markdown().count("](https://") >= 40


def test_map_figure_matches_the_course_map():
    from PIL import Image

    with Image.open(MAP_FIGURE) as image:
        assert image.text.get("Description") == f"course-map {map_fingerprint()}", \
            "docs/figures/course-map.png is stale: run `python -m course_lib.maintainer.docs`"
    assert "](docs/figures/course-map.png)" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("document", ["README.md", "docs/instructor-guide.md", "docs/glossary.md",
                                      "docs/further-reading.md", "data/README.md"])
def test_relative_links_resolve(document):
    path = ROOT / document
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
        if not re.match(r"[a-z]+:", target):
            assert (path.parent / target).exists(), f"{document} links to missing {target}"


def test_instructor_guide_covers_every_notebook():
    guide = (DOCS / "instructor-guide.md").read_text()
    for lesson in COURSE_MAP:
        assert lesson.notebook in guide, lesson.notebook
    for needle in ("COURSE_WORKSHOP", "course_lib.doctor", "wheelhouse", "3-hour", "2-day"):
        assert needle in guide
