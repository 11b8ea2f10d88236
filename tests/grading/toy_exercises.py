"""The toy course's one exercise, declared as every exercise is (``fusionlab.grading.registry``).

The toy master names this module in its metadata; the grader copies it next to the master and
into the clean room, where it collects the evidence of ``add`` (no torch: a fast kernel).
"""

from __future__ import annotations

import numpy as np

from fusionlab.grading.registry import Exercise, GradedCell, register
from fusionlab.grading.results import CheckResult, text

CASES = ((-1, 1), (2.5, 2.5))


def collect(add, seed: int, weights=None) -> dict:
    ev: dict = {"status": np.array("ok" if callable(add) else "error: add is not a function")}
    for i, (a, b) in enumerate(CASES):
        try:
            ev[f"out/{i}"] = np.array(float(add(a, b)))
        except NotImplementedError:
            ev[f"error/out/{i}"] = np.array("NotImplementedError: not implemented yet")
        except Exception as error:  # noqa: BLE001 (the student's code can raise anything)
            ev[f"error/out/{i}"] = np.array(f"{type(error).__name__}: {error}")
    return ev


def implemented(ev, facts) -> CheckResult:
    errors = [text(ev, f"error/out/{i}") for i in range(len(CASES)) if f"error/out/{i}" in ev]
    if text(ev, "status") != "ok" or any("NotImplementedError" in e for e in errors):
        return CheckResult("implemented", False, "add is not implemented yet")
    return CheckResult("implemented", True, "add can be called")


def visible(ev, facts) -> CheckResult:
    return CheckResult("visible", True, "add(1, 2) == 3")


def negatives_and_floats(ev, facts) -> CheckResult:
    for i, (a, b) in enumerate(CASES):
        if f"out/{i}" not in ev:
            error = text(ev, f"error/out/{i}")
            return CheckResult("hidden", False, f"add({a}, {b}) raised {error}")
        got, want = float(ev[f"out/{i}"]), facts["expected"][i]
        if got != want:
            return CheckResult("hidden", False, f"add({a}, {b}) gave {got:g}, expected {want:g}")
    return CheckResult("hidden", True, "add works on negatives and floats")


ADD = register(Exercise(
    name="toy_add", assignment="toy", target="add", solution="add_solution", title="add (toy)",
    collect=collect,
    checks={"implemented": implemented, "visible": visible, "hidden": negatives_and_floats},
    self_checks=("implemented", "hidden"),
    cells=(GradedCell("add_visible", "visible", 2, "add(1, 2) == 3", visible=True),
           GradedCell("add_hidden", "hidden", 3, "add works on negatives and floats")),
))
