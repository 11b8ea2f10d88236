"""Part 2's self-checks under their old import path, kept for one release: the notebooks of
earlier releases call ``check_part2.attention(MaskedMultiHeadAttention)``. The self-checks now
come from the exercise registry; new notebooks call them as::

    from fusionlab import check
    check.attention(MaskedMultiHeadAttention)
    check.coattention(CoAttentionBlock)
    check.pairs(relation_pair_sum)
"""

from __future__ import annotations

from . import check


def attention(cls) -> None:
    """Print the self-check of a ``MaskedMultiHeadAttention`` class (``check.attention``)."""
    check.attention(cls)


def coattention(cls) -> None:
    """Print the self-check of a ``CoAttentionBlock`` class (``check.coattention``)."""
    check.coattention(cls)


def pairs(fn) -> None:
    """Print the self-check of a ``relation_pair_sum`` function (``check.pairs``)."""
    check.pairs(fn)
