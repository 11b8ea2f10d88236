"""Write the self-checks' known answers from the trusted references.

    python -m autograder.authoring.known_answers   # rewrites fusionlab/part<N>/known_answers.npz

A self-check cannot compute the reference solution's outputs: the package holds no answer. For
every exercise whose reference declares ``known_weights``, this tool loads those weights into
the reference formulas (``autograder.hidden``), computes the facts the grader would compute on
the self-check's inputs (``fusionlab.grading.seeds.SELF_CHECK_SEED``) and stores them with the
weights in the part's ``known_answers.npz`` (``fusionlab.grading.known``). The self-check loads
the same weights into the student's module and runs the same checks against those facts.
A test proves that the stored files equal a fresh computation.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from fusionlab.grading import known, registry
from fusionlab.grading.seeds import SELF_CHECK_SEED
from fusionlab.grading.toolkit import save

from ..hidden import references


def compute() -> dict[str, dict[str, np.ndarray]]:
    """``{package: arrays of its known_answers.npz}`` for every part with known answers."""
    per_package: dict[str, dict] = {}
    for exercise in registry.exercises():
        ref = references.reference(exercise.name)
        if ref is None or ref.known_weights is None:
            continue
        weights = ref.known_weights()
        ev = {f"state/{k}": np.asarray(v) for k, v in weights.items()}
        facts = ref.facts(ev, SELF_CHECK_SEED)
        assert "unavailable" not in facts, (exercise.name, facts.get("unavailable"))
        package = exercise.collect.__module__.rsplit(".", 1)[0]
        per_package.setdefault(package, {})[exercise.name] = (weights, facts)
    return {package: known.store(answers) for package, answers in per_package.items()}


def path_of(package: str) -> Path:
    return Path(str(resources.files(package))) / known.KnownAnswers.FILE


def main() -> None:
    for package, arrays in compute().items():
        path = save(arrays, path_of(package))
        print(f"wrote {len(arrays)} arrays to {path}")


if __name__ == "__main__":
    main()
