"""Compatibility for notebooks of earlier releases (to be removed in the next release).

Graded cells used to record evidence in the student's kernel with, e.g.,
``evidence.bidirectional("bidir_equivalence", BidirectionalCrossAttention)``. The grader now
measures the TODO cells itself, outside the notebook (``fusionlab.grading.cleanroom``), so a
copy of an older notebook that still calls these functions gets a note instead of a crash. The
evidence toolkit lives in ``fusionlab.grading.toolkit``.
"""

from __future__ import annotations

from .grading.toolkit import (  # noqa: F401 (re-exported for the modules of earlier releases)
    build_module,
    describe_error,
    isolated,
    load,
    record,
    record_state,
    save,
    to_array,
)

NOTE = ("{grade_id}: nothing to record here any more: the grader runs your TODO cell itself, "
        "outside the notebook")


def export(grade_id: str, collect=None, obj=None, **kwargs) -> None:
    """What a graded cell of an earlier release called: now only a note."""
    print(NOTE.format(grade_id=grade_id))


def bidirectional(grade_id: str, cls=None, train: bool = False) -> None:
    export(grade_id)


def gated(grade_id: str, cls=None, train: bool = False) -> None:
    export(grade_id)
