"""What Part 2's graded cells called in earlier releases, kept for one release so that a
notebook started from one of them still runs: ``evidence_part2.attention(grade_id, cls)`` and
its siblings now only say that grading happens outside the notebook. The grader runs each TODO
cell again in a clean process, with inputs of its own (``fusionlab.grading.cleanroom``); no
graded cell records anything in the student's notebook any more.
"""

from __future__ import annotations

MESSAGE = ("Nothing is recorded here any more: the grader runs your TODO cells again, on their "
           "own, outside this notebook, with inputs of its own. Use the self-check above "
           "(check.{exercise}) to see how your code does.")


def _note(exercise: str) -> None:
    print(MESSAGE.format(exercise=exercise))


def attention(grade_id: str, cls, train: bool = False) -> None:
    """Does nothing but say so (graded cell ``grade_id`` of TODO 1, earlier releases)."""
    _note("attention")


def coattention(grade_id: str, cls) -> None:
    """Does nothing but say so (graded cell ``grade_id`` of TODO 2, earlier releases)."""
    _note("coattention")


def pairs(grade_id: str, fn) -> None:
    """Does nothing but say so (graded cell ``grade_id`` of TODO 3, earlier releases)."""
    _note("pairs")
