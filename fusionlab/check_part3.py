"""Compatibility for notebooks of earlier releases (to be removed in the next release).

Part 3's self-checks now live in the exercise registry, with every other part's::

    from fusionlab import check
    check.gmu(GatedMultimodalUnit)
    check.tanh_gated(TanhGatedCrossAttention)
    check.modality_dropout(modality_dropout)

A copy of an older notebook that still imports ``fusionlab.check_part3`` gets the same
self-checks through the names it used.
"""

from __future__ import annotations

from . import check


def gmu(cls) -> None:
    """Print the self-check of a ``GatedMultimodalUnit`` class (``check.gmu``)."""
    check.gmu(cls)


def tanh_gated_block(cls) -> None:
    """Print the self-check of a ``TanhGatedCrossAttention`` class (``check.tanh_gated``)."""
    check.tanh_gated_block(cls)


def modality_dropout(fn) -> None:
    """Print the self-check of a ``modality_dropout`` function (``check.modality_dropout``)."""
    check.modality_dropout(fn)
