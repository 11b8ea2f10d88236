"""Compatibility for notebooks of earlier releases (to be removed in the next release).

Part 3's graded cells used to record evidence in the student's kernel with, e.g.,
``evidence_part3.gmu("gmu_equivalence", GatedMultimodalUnit)``. The grader now runs the TODO
cells itself, outside the notebook (``fusionlab.grading.cleanroom``), so a copy of an older
notebook that still calls these functions gets a note instead of a crash.
"""

from __future__ import annotations

NOTE = ("{grade_id}: nothing to record here any more: the grader runs your TODO cell itself, "
        "outside the notebook")


def _note(grade_id: str) -> None:
    print(NOTE.format(grade_id=grade_id))


def gmu(grade_id: str, cls=None, train: bool = False) -> None:
    """What a GMU graded cell of an earlier release called: now only a note."""
    _note(grade_id)


def tanh_gated_block(grade_id: str, cls=None) -> None:
    """What a tanh-gated block graded cell of an earlier release called: now only a note."""
    _note(grade_id)


def modality_dropout(grade_id: str, fn=None, train: bool = False) -> None:
    """What a modality-dropout graded cell of an earlier release called: now only a note."""
    _note(grade_id)
