"""The trusted side of each exercise: what the grader computes, and the mistakes it knows.

Every exercise declared in ``fusionlab`` (``fusionlab.grading.registry``) has a ``Reference``
here, in ``autograder.hidden.part<N>``: never in the package, never in a sandbox.

- ``facts(ev, seed)``: the expected values, computed by the reference formulas from the
  weights the clean room exported (``state/...``) and the inputs drawn from ``seed``;
- ``evaluation``: the grader's held-out data for an accuracy cell. Its inputs go into the
  clean room, where the student's model is trained as the notebook trains it and predicts
  them; the labels stay here, and ``score`` turns the predictions into the accuracy fact;
- ``variants``: the known mistakes, as a student would write them (the source of the TODO
  cell), with the graded cells each one loses. The demo examples, the parity tests and the
  threshold tool derive from them.

``reference(name)`` finds an exercise's reference (``discover`` imports the parts).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

from fusionlab.grading.registry import import_parts


@dataclass(frozen=True)
class Evaluation:
    """``data(eval_seed) -> (inputs, labels)``: the inputs (``{name: array}``) enter the clean
    room, the labels never do; ``score(trained, labels) -> (accuracy, threshold, what, data)``
    or the reason it cannot be measured, from the predictions ``trained`` (``{name: array}``,
    the evidence's ``trained/`` entries)."""

    data: Callable[[int], tuple[dict, object]]
    score: Callable[[dict, object], object]


@dataclass(frozen=True)
class Variant:
    """A known mistake of ``exercise``: ``replace`` maps the name of what a TODO cell defines
    (a class, a function) to the source of the mistaken cell; it loses the graded cells
    ``loses`` and no other. ``example``: ``make demo`` grades it (and asserts its score)."""

    name: str
    exercise: str
    replace: dict[str, str]
    loses: tuple[str, ...]
    description: str
    example: bool = False
    threshold_variant: bool = False  # the threshold tool measures its accuracy too


@dataclass(frozen=True)
class Reference:
    """``known_weights()``: the weights the self-check loads into the student's module, for an
    exercise whose self-check compares with stored known answers (``fusionlab.grading.known``:
    ``python -m autograder.authoring.known_answers`` stores ``facts`` on them)."""

    exercise: str
    facts: Callable[[dict, int], dict]
    evaluation: Evaluation | None = None
    variants: tuple[Variant, ...] = field(default_factory=tuple)
    known_weights: Callable[[], dict] | None = None


_REFERENCES: dict[str, Reference] = {}
_DISCOVERED = False


def register(*references: Reference) -> None:
    for ref in references:
        known = _REFERENCES.get(ref.exercise)
        if known is not None and known is not ref:
            raise ValueError(f"two references for exercise {ref.exercise!r}")
        _REFERENCES[ref.exercise] = ref


def discover() -> None:
    """Import every ``autograder.hidden.part<N>`` package (they register their references)."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    from autograder import hidden

    import_parts(hidden)
    _DISCOVERED = True


def load(module: str) -> None:
    """Import a module that registers references outside ``autograder.hidden``."""
    importlib.import_module(module)


def reference(exercise: str) -> Reference | None:
    discover()
    return _REFERENCES.get(exercise)


def variants(exercise: str | None = None) -> list[Variant]:
    """Every known mistake, or those of ``exercise``."""
    discover()
    return [v for ref in _REFERENCES.values() for v in ref.variants
            if exercise is None or v.exercise == exercise]
