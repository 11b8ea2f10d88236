"""The self-checks that follow each TODO in the notebooks::

    from fusionlab import check
    check.bidirectional(BidirectionalCrossAttention)      # Part 1, TODO 1
    check.attention(MaskedMultiHeadAttention)             # Part 2, TODO 1
    check.gmu(GatedMultimodalUnit)                        # Part 3, TODO 1

``check.<exercise>(target)`` prints one line per check, each with a word and a mark
(``PASS ✅``, ``FAIL ❌``, ``SKIP ➖``), and returns nothing. It runs the exercise's own checks,
the very functions the grader runs, on what your code does with known inputs (see
``fusionlab.grading``). A self-check is a hint, never a grade: the grader measures your TODO
cells again, outside your notebook, on inputs of its own.

Every exercise of the registry (``fusionlab.grading.registry``) has its self-check here, under
its name; ``check.exercises()`` lists them.
"""

from __future__ import annotations

from .grading import registry

# names the notebooks of earlier releases used for the same self-checks
ALIASES = {"tanh_gated_block": "tanh_gated"}


def exercises() -> list[str]:
    """The names of every exercise with a self-check."""
    return [e.name for e in registry.exercises()]


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    try:
        exercise = registry.exercise(ALIASES.get(name, name))
    except KeyError:
        raise AttributeError(f"fusionlab.check has no self-check {name!r}; the exercises are "
                             f"{', '.join(exercises())}") from None
    return exercise.self_check


def __dir__() -> list[str]:
    return sorted([*globals(), *exercises(), *ALIASES])
