"""Known answers: the facts a self-check compares with, computed once by the trusted references.

A self-check cannot compute what the reference solution outputs: the package holds no answer.
Instead, ``python -m autograder.authoring.known_answers`` loads known weights into the
reference formulas (``autograder.hidden``), runs them on the self-check's inputs and stores the
resulting facts (the reference's outputs, each known mistake's, ...) in the part's
``known_answers.npz``. The self-check loads the same known weights into the student's module
and runs the very checks the grader runs, on facts of the same shape.

The facts are a nested dict of arrays, strings and numbers; ``pack`` stores one as flat arrays
(``np.savez``, read back with ``allow_pickle=False``) and ``unpack`` restores it.
"""

from __future__ import annotations

import json
from importlib import resources

import numpy as np

from .results import json_value
from .toolkit import load


def pack(value, arrays: dict | None = None, prefix: str = "") -> dict[str, np.ndarray]:
    """A nested dict of arrays and plain values as flat arrays: ``__index__`` holds the JSON
    structure, each array its own entry."""
    arrays = {} if arrays is None else arrays

    def encode(v):
        if isinstance(v, np.ndarray):
            key = f"{prefix}a{len(arrays)}"
            arrays[key] = v
            return {"__array__": key}
        if isinstance(v, dict):
            return {str(k): encode(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [encode(x) for x in v]
        if isinstance(v, (np.generic,)):
            return v.item()
        return v

    arrays[f"{prefix}__index__"] = np.array(json.dumps(encode(value)))
    return arrays


def unpack(arrays: dict, prefix: str = ""):
    """The nested value ``pack`` stored under ``prefix``."""

    def decode(v):
        if isinstance(v, dict):
            if set(v) == {"__array__"}:
                return np.asarray(arrays[v["__array__"]])
            return {k: decode(x) for k, x in v.items()}
        if isinstance(v, list):
            return [decode(x) for x in v]
        return v

    return decode(json_value(arrays, f"{prefix}__index__", None))


class KnownAnswers:
    """The known answers of one part: ``package`` (e.g. ``"fusionlab.part1"``) holds
    ``known_answers.npz`` with, per exercise, ``<exercise>/weights/<name>`` and the packed
    facts under ``<exercise>/facts/``."""

    FILE = "known_answers.npz"

    def __init__(self, package: str):
        self.package = package
        self._arrays: dict | None = None

    @property
    def arrays(self) -> dict:
        if self._arrays is None:
            path = resources.files(self.package) / self.FILE
            with resources.as_file(path) as file:
                self._arrays = load(file)
        return self._arrays

    def weights(self, exercise: str) -> dict[str, np.ndarray]:
        prefix = f"{exercise}/weights/"
        return {k[len(prefix):]: v for k, v in self.arrays.items() if k.startswith(prefix)}

    def facts(self, exercise: str, ev: dict) -> dict:
        """The stored facts of ``exercise``, valid when the module took every known weight;
        otherwise ``unavailable`` says which weights it lacks."""
        facts = unpack(self.arrays, f"{exercise}/facts/")
        missing = sorted(set(self.weights(exercise)) - set(json_value(ev, "loaded", [])))
        if missing:
            facts["unavailable"] = (
                f"the module has no weight {', '.join(missing[:4])}"
                + (" ..." if len(missing) > 4 else "")
                + " of the interface's shape, so the known test weights cannot be loaded")
        return facts


def store(answers: dict[str, tuple[dict, dict]]) -> dict[str, np.ndarray]:
    """``{exercise: (weights, facts)}`` as the arrays of a known-answers file."""
    arrays: dict[str, np.ndarray] = {}
    for exercise, (weights, facts) in answers.items():
        arrays.update({f"{exercise}/weights/{k}": np.asarray(v, dtype=np.float32)
                       for k, v in weights.items()})
        pack(facts, arrays, prefix=f"{exercise}/facts/")
    return arrays
