"""The toy course's trusted reference: what ``add`` must return (never in the clean room)."""

from __future__ import annotations

from toy_exercises import CASES

from autograder.hidden.references import Reference, Variant, register

register(Reference(
    "toy_add", lambda ev, seed: {"expected": [float(a + b) for a, b in CASES]},
    variants=(Variant("truncates", "toy_add", {"add": "def add(a, b):\n    return int(a) + int(b)"},
                      ("add_hidden",), "rounds its inputs to integers"),),
))
