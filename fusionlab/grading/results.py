"""Verdicts: a check is a small function ``check(evidence, facts) -> CheckResult``.

``evidence`` is what a collector recorded about the student's code, as plain arrays
(``fusionlab.grading.toolkit``); ``facts`` holds the expected values: the stored known answers
or properties in a self-check, the reference formulas on the exported weights in the grader
(``autograder.hidden``). The self-check and the grader run the same check functions.

``run`` executes an exercise's checks in order: every check needs ``implemented`` to pass
first (except those that read only the built module's weights, ``MODULE_ONLY``); otherwise
each check runs on its own, an error fails that check only, and a check says ``SKIP`` only
when the evidence it needs is missing. ``report`` prints the verdicts, one wrapped line each.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass

import numpy as np

TOLERANCE = 1e-5  # absolute and relative tolerance of the equivalence checks
MARKS = {"PASS": "✅", "FAIL": "❌", "SKIP": "➖"}
LINE_WIDTH = 100  # JupyterLab wraps longer lines mid-word
MODULE_ONLY = ("attributes", "gate")  # checks that read the built module's weights only


@dataclass
class CheckResult:
    """One verdict: ``name``, ``passed`` and a message that says what is wrong, with a hint."""

    name: str
    passed: bool
    message: str
    skipped: bool = False  # not run: the evidence it needs is missing

    @property
    def word(self) -> str:
        return "PASS" if self.passed else ("SKIP" if self.skipped else "FAIL")


class Skip(Exception):
    """Raised by a check whose evidence is missing; its message says why."""


# ----------------------------------------------------------------------------- evidence access

def text(ev: dict, key: str, default: str = "") -> str:
    return str(ev[key]) if key in ev else default


def json_value(ev: dict, key: str, default):
    """The JSON text ``ev[key]`` decoded, or ``default`` when missing or malformed."""
    try:
        return json.loads(text(ev, key)) if key in ev else default
    except ValueError:
        return default


def shape_text(shape) -> str:
    return str(tuple(int(n) for n in shape))


def output(ev: dict, key: str, what: str) -> np.ndarray:
    """The recorded output ``key``, or Skip/AssertionError with the reason it is missing."""
    if key in ev:
        return np.asarray(ev[key])
    error = text(ev, f"error/{key}")
    if error:
        raise AssertionError(f"{what} " + (error if error.startswith("returned")
                                           else f"raised {error}"))
    raise Skip(f"no evidence for {what}")


def close(a, b, tolerance: float = TOLERANCE) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(np.allclose(a, b, atol=tolerance, rtol=tolerance))


def prefixed(ev: dict, prefix: str) -> dict[str, np.ndarray]:
    """``{name: array}`` of the entries ``prefix + name`` (e.g. the ``state/`` weights)."""
    return {k[len(prefix):]: np.asarray(v) for k, v in ev.items() if k.startswith(prefix)}


# ----------------------------------------------------------------------------- shared checks

def implemented_check(error_key: str, *, wrong_return_is_implemented: bool = True):
    """The ``implemented`` check of an exercise whose first call's error is recorded under
    ``error_key``. With ``wrong_return_is_implemented`` a call that returned something of the
    wrong kind counts as implemented (the shape checks then say what is wrong)."""

    def implemented(ev, facts) -> CheckResult:
        status = text(ev, "status", "no evidence")
        if status.startswith("not implemented"):
            return CheckResult("implemented", False, f"{status}. Replace the "
                               "`raise NotImplementedError()` with your code.")
        if status != "ok":
            return CheckResult("implemented", False, status.removeprefix("error: "))
        error = text(ev, error_key)
        if "NotImplementedError" in error:
            return CheckResult("implemented", False, "not implemented yet: it still raises "
                               "NotImplementedError. Replace it with your code.")
        if error and not (wrong_return_is_implemented and error.startswith("returned")):
            return CheckResult("implemented", False, f"calling it raised {error}")
        return CheckResult("implemented", True, "it can be built and called")

    return implemented


def function_implemented(ev, facts) -> CheckResult:
    """The ``implemented`` check of a function exercise (evidence begun by
    ``toolkit.function_status``): a function, and none of its calls still raises
    ``NotImplementedError``."""
    status = text(ev, "status", "no evidence")
    if status != "ok":
        return CheckResult("implemented", False, status.removeprefix("error: "))
    errors = [text(ev, k) for k in ev if k.startswith("error/out/")]
    if any("NotImplementedError" in e for e in errors):
        return CheckResult("implemented", False, "not implemented yet: it still raises "
                           "NotImplementedError. Replace it with your code.")
    return CheckResult("implemented", True, "it can be called")


# ----------------------------------------------------------------------------- the runner

def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def run_one(checks: dict, name: str, ev: dict, facts: dict) -> CheckResult:
    """One check, never raising: ``implemented`` must pass first; a missing piece of evidence
    is a SKIP, an error inside the check fails that check only."""
    if name in MODULE_ONLY:
        status = text(ev, "status", "no evidence")
        if status != "ok":
            return CheckResult(name, False, f"not checked: {status.removeprefix('error: ')}",
                               skipped=True)
    elif name != "implemented" and "implemented" in checks:
        first = run_one(checks, "implemented", ev, facts)
        if not first.passed:
            return CheckResult(name, False, f"not checked: {first.message}", skipped=True)
    try:
        result = checks[name](ev, facts)
    except Skip as reason:
        return CheckResult(name, False, f"not checked: {reason}", skipped=True)
    except AssertionError as error:
        return CheckResult(name, False, str(error))
    except Exception as error:  # noqa: BLE001 (evidence of an unexpected form)
        return CheckResult(name, False, f"the check could not read the evidence: "
                           f"{_describe(error)}")
    result.name = name
    return result


def run(checks: dict, names, ev: dict, facts: dict) -> list[CheckResult]:
    return [run_one(checks, name, ev, facts) for name in names]


# ----------------------------------------------------------------------------- printing

def wrap(line: str, indent: str = "    ", width: int = LINE_WIDTH) -> str:
    """``line`` broken at word boundaries into lines of at most ``width`` characters, the
    continuation lines indented (a long verdict stays readable in a notebook's output)."""
    return "\n".join(textwrap.wrap(line, width=width, subsequent_indent=indent,
                                   break_long_words=False, break_on_hyphens=False)) or line


def report(title: str, results: list[CheckResult]) -> None:
    """Print one wrapped line per verdict, then a summary line."""
    print(f"Checking {title}")
    for result in results:
        print(wrap(f"  {result.word} {MARKS[result.word]} {result.name}: {result.message}",
                   indent="      "))
    failed = [r for r in results if not r.passed]
    if not failed:
        print(f"All {len(results)} checks passed.")
    elif results[0].name == "implemented" and not results[0].passed:
        print("Not implemented yet: fill in the TODO above, then run this cell again.")
    else:
        print(f"{len(failed)} of {len(results)} checks did not pass: start with the first FAIL.")
