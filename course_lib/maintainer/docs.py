"""Generated documents: the course-map figure and the further-reading page, both drawn from course_lib.course.

For maintainers: ``python -m course_lib.maintainer.docs`` rewrites them; ``tests/test_docs.py`` keeps them in sync.
"""
from __future__ import annotations

from ..course import COURSE_MAP, NOTEBOOK_DIR

DOCS_DIR = NOTEBOOK_DIR.parent / "docs"
MAP_FIGURE = DOCS_DIR / "figures" / "course-map.png"
PARTS = {"00": ("start", "#8c8c8c"), "01": ("foundations", "#4c72b0"), "02": ("the MoE layer", "#dd8452"),
         "03": ("the MoE layer", "#dd8452"), "04": ("the MoE layer", "#dd8452"), "05": ("the MoE layer", "#dd8452"),
         "06": ("systems", "#55a868"), "07": ("open weights", "#8172b3"), "08": ("capstone", "#c44e52"),
         "09": ("research lab", "#937860"), "10": ("systems", "#55a868"),
         "11": ("capstone", "#c44e52")}


def map_fingerprint() -> str:
    """A hash of the course map, stored in the figure so a test can tell when the figure is stale."""
    import hashlib

    return hashlib.sha256(repr(COURSE_MAP).encode()).hexdigest()[:16]


def _box_position(index: int, columns: int) -> tuple[int, int]:
    """(row, column) of notebook ``index`` in a snake layout: odd rows run right to left, so each arrow is short."""
    row, col = divmod(index, columns)
    return row, col if row % 2 == 0 else columns - 1 - col


def course_map_figure():
    """The course map as a figure: one box per notebook in study order, coloured by part, with study times."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    import textwrap

    columns = 3
    rows = (len(COURSE_MAP) + columns - 1) // columns
    fig, ax = plt.subplots(figsize=(13, 1.2 + 1.05 * rows))
    for index, lesson in enumerate(COURSE_MAP):
        row, col = _box_position(index, columns)
        x, y = col * 4.0, -row * 1.5
        part, colour = PARTS[lesson.notebook[:2]]
        ax.add_patch(FancyBboxPatch((x, y), 3.4, 1.0, boxstyle="round,pad=0.05", facecolor=colour, alpha=0.9))
        title = textwrap.fill(f"{lesson.notebook[:2]} · {lesson.title}", 34)  # long titles on two lines
        ax.text(x + 1.7, y + 0.62, title, ha="center", va="center", color="white", weight="bold",
                fontsize=9.5 if "\n" not in title else 8.5, linespacing=1.0)
        ax.text(x + 1.7, y + 0.28, f"{part} · {lesson.study_minutes} min", ha="center", va="center",
                color="white", fontsize=8.5)
        if index + 1 < len(COURSE_MAP):
            next_row, next_col = _box_position(index + 1, columns)
            start = (x + (3.45 if next_col > col else -0.05 if next_col < col else 1.7), y + (0.5 if next_row == row else -0.05))
            end = (next_col * 4.0 + (-0.05 if next_col > col else 3.45 if next_col < col else 1.7),
                   -next_row * 1.5 + (0.5 if next_row == row else 1.05))
            ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="->", color="#444444", lw=1.4))
    total = sum(lesson.study_minutes for lesson in COURSE_MAP)
    ax.set_title(f"Mixture-of-Experts from scratch, the DeepSeek way: {len(COURSE_MAP)} notebooks, "
                 f"about {total / 60:.0f} hours of study", fontsize=11)
    ax.set_xlim(-0.2, columns * 4.0 - 0.4)
    ax.set_ylim(-1.5 * ((len(COURSE_MAP) - 1) // columns) - 0.2, 1.25)
    ax.axis("off")
    return fig


def write_map_figure(path=MAP_FIGURE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure = course_map_figure()
    figure.savefig(path, dpi=100, bbox_inches="tight", metadata={"Description": f"course-map {map_fingerprint()}"})
    import matplotlib.pyplot as plt

    plt.close(figure)


def further_reading_markdown() -> str:
    """Each notebook's "Further reading" (primary sources), collected into one page."""
    import json
    import re

    parts = ["# Further reading", "",
             "Primary sources for each notebook, collected from the notebooks themselves by "
             "`python -m course_lib.maintainer.docs` (`tests/test_docs.py` keeps this page in sync).", ""]
    for lesson in COURSE_MAP:
        cells = json.loads((NOTEBOOK_DIR / lesson.notebook).read_text(encoding="utf-8"))["cells"]
        texts = ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]
        section = next((t.split("## Further reading", 1)[1].strip() for t in texts if "## Further reading" in t), "")
        if section:  # links relative to notebooks/ must point there from docs/ too
            section = re.sub(r"\]\((?![a-z]+:|\.\./|#)", "](../notebooks/", section)
            parts += [f"## [{lesson.notebook[:2]} · {lesson.title}](../notebooks/{lesson.notebook})", "", section, ""]
    return "\n".join(parts)


def main() -> None:
    write_map_figure()
    (DOCS_DIR / "further-reading.md").write_text(further_reading_markdown(), encoding="utf-8")
    print(f"wrote {MAP_FIGURE.relative_to(DOCS_DIR.parent)} and docs/further-reading.md; "
          f"the README's map table comes from markdown_table()")


if __name__ == "__main__":
    main()
