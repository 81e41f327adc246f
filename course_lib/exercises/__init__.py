"""Automatic checks for the notebooks' exercises, one module per notebook (``course_lib.exercises.nb01``...).

Each check returns Feedback: pass, or a hint aimed at the most common mistake it recognises, and what to try
next. An answer left as ``None`` (or ``...``) reports "not done yet" instead of failing.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Feedback:
    passed: bool | None  # None: not attempted yet
    message: str

    def __repr__(self) -> str:
        mark = {True: "✅ correct", False: "❌ not yet", None: "⏳ not done yet"}[self.passed]
        return f"{mark}: {self.message}"

    def _repr_markdown_(self) -> str:
        return repr(self)


NOT_DONE = Feedback(None, "replace the `None` (or `...`) with your answer and run the cell again.")


def not_done(answer) -> bool:
    return answer is None or answer is Ellipsis
