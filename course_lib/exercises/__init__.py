"""Automatic checks for the notebooks' exercises, one module per notebook (``course_lib.exercises.nb01``...).

Each check returns Feedback: pass, or a hint aimed at the most common mistake it recognises, and what to try
next. A wrong answer the check does not recognise gets graduated hints (``graduated``): a nudge first, the method
only from the second wrong try on, never the answer. An answer left as ``None`` (or ``...``) reports "not done
yet" instead of failing.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Feedback:
    passed: bool | None  # None: not attempted yet
    message: str

    def __repr__(self) -> str:  # the words carry the meaning; the symbol only helps the eye (no emoji font needed)
        mark = {True: "✔ correct", False: "✘ not yet", None: "… not done yet"}[self.passed]
        return f"{mark}: {self.message}"

    def _repr_markdown_(self) -> str:
        return repr(self)


NOT_DONE = Feedback(None, "replace the `None` (or `...`) with your answer and run the cell again.")


def not_done(answer) -> bool:
    return answer is None or answer is Ellipsis


_wrong_tries: dict[str, set[str]] = {}


def graduated(exercise: str, answer, *, nudge: str, method: str) -> Feedback:
    """Feedback for a wrong answer the check does not recognise: ``nudge`` (where to look) for the first wrong
    answer to ``exercise``, ``method`` (how to compute it, still not the answer) from a second, different wrong
    answer on. Re-running the same wrong answer does not count as another try."""
    tries = _wrong_tries.setdefault(exercise, set())
    tries.add(repr(answer))  # a redefined function is a new answer: its repr carries a new address
    if len(tries) == 1:
        return Feedback(False, f"{nudge} (Try another answer: the check then shows the method.)")
    return Feedback(False, f"method: {method}")
