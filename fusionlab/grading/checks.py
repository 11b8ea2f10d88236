"""Checks that every exercise can use: which known variant the outputs match, whether the
gradients are what the formula sends back, the equivalence verdict, the accuracy verdict, the
visible shape cell.

Each follows the registry's convention ``check(evidence, facts) -> CheckResult`` (or is a
helper of such checks); the facts they read are documented in ``fusionlab.part1.exercises``:
``variants`` (outputs per variant), ``grads`` (gradients per variant), ``accuracy``.
"""

from __future__ import annotations

import numpy as np

from .results import CheckResult, Skip, close, output, prefixed, shape_text, text

TOLERANCE_GRAD = 1e-4  # gradients through LayerNorm and softmax carry more rounding


def identified(ev: dict, facts: dict, keys) -> str | None:
    """The variant of ``facts["variants"]`` whose outputs the evidence matches on ``keys``."""
    for name, outs in facts.get("variants", {}).items():
        if all(k in ev and k in outs and close(ev[k], outs[k]) for k in keys):
            return name
    return None


def _nonzero(g) -> bool:
    return bool(np.isfinite(g).all() and np.abs(g).sum() > 0)


def gradient_problems(ev, facts, groups: dict[str, str], keys) -> dict[str, str]:
    """``{group: "none" or "differs"}`` for the submodules (``groups``: name -> parameter
    prefix) whose gradients are wrong. For outputs the grader recognises (a variant of
    ``facts``), the gradients must equal that formula's on the same weights, so a ``.detach()``
    shows; otherwise every submodule must receive a finite, non-zero gradient."""
    if "error/grad" in ev:
        raise AssertionError(text(ev, "error/grad"))
    grads = prefixed(ev, "grad/")
    if not grads:
        raise Skip("no gradients were recorded")
    variant = identified(ev, facts, keys)
    expected = facts.get("grads", {}).get(variant) if variant else None
    problems = {}
    for group, prefix in groups.items():
        mine = {k: g for k, g in grads.items() if k.startswith(prefix)}
        if expected is None:
            if not any(_nonzero(g) for g in mine.values()):
                problems[group] = "none"
            continue
        want = {k: g for k, g in expected.items() if k.startswith(prefix)}
        if not any(_nonzero(g) for g in want.values()):
            problems[group] = "none"  # the formula itself sends none (e.g. an unused gate)
        elif not all(k in mine and close(mine[k], g, TOLERANCE_GRAD) for k, g in want.items()):
            problems[group] = "differs"  # e.g. a .detach() on the way
    return problems


def gradients_verdict(problems: dict[str, str], passed: str) -> CheckResult:
    """The ``gradients`` verdict from ``gradient_problems``' findings: the groups that receive
    none, else those whose gradients differ, else passed (saying ``passed``)."""
    none = [g for g, why in problems.items() if why == "none"]
    differs = [g for g, why in problems.items() if why == "differs"]
    if none:
        return CheckResult("gradients", False, f"no gradient reaches {', '.join(none)}: is its "
                           "output part of the result?")
    if differs:
        return CheckResult("gradients", False, f"the gradients of {', '.join(differs)} are not "
                           "what your output sends back: is part of the computation detached "
                           "(.detach())?")
    return CheckResult("gradients", True, passed)


def no_output(ev: dict, key: str, where: str, check: str = "shapes") -> CheckResult:
    """The failed verdict of a call that produced no output: why, from its recorded error."""
    error = text(ev, f"error/{key}", "no output")
    if "returned a NoneType" in error:
        return CheckResult(check, False, f"{where} forward returned None: did you forget "
                           "`return`?")
    return CheckResult(check, False, f"{where} it raised {error}")


def shapes(ev: dict, cases, passed: str, missing=no_output) -> CheckResult:
    """The ``shapes`` verdict over ``cases``, ``(key, where, expected, wrong)`` each: the first
    case whose output ``key`` is missing (``missing(ev, key, where)`` says why) or has another
    shape than ``expected`` (``wrong(shape)`` says what is wrong) fails the check; else it
    passes, saying ``passed``."""
    for key, where, expected, wrong in cases:
        if key not in ev:
            return missing(ev, key, where)
        shape = tuple(np.asarray(ev[key]).shape)
        if shape != expected:
            return CheckResult("shapes", False, wrong(shape))
    return CheckResult("shapes", True, passed)


def equivalence(ev: dict, facts: dict, keys, *, formula: str, mistakes: dict[str, str],
                attributes=None) -> CheckResult | None:
    """None when the outputs ``keys`` equal the reference's (``facts["variants"]
    ["reference"]``), else the failed ``equivalence`` verdict: a known mistake in the words
    of ``mistakes`` when the outputs match one, else ``formula``. For a module,
    ``attributes(ev, facts)`` must pass first: the reference formula is computed with the
    interface's submodules (a function has none: ``attributes=None``)."""
    found = (attributes(ev, facts) if attributes is not None
             else CheckResult("attributes", True, "a function: no attributes"))
    if not found.passed or facts.get("unavailable"):
        return CheckResult("equivalence", False, "cannot compare with the reference: " + (
            facts["unavailable"] if found.passed else found.message))
    outs = {key: output(ev, key, "the output") for key in keys}
    expected = facts["variants"]["reference"]
    wrong = [key for key in keys if not close(outs[key], expected[key])]
    if not wrong:
        return None
    out, want = outs[wrong[0]], expected[wrong[0]]
    if out.shape != want.shape:
        return CheckResult("equivalence", False, f"the output has shape {shape_text(out.shape)},"
                           f" expected {shape_text(want.shape)}: fix the shape first")
    diff = max(float(np.max(np.abs(outs[k] - expected[k]))) for k in wrong)
    mistake = identified(ev, facts, keys)
    return CheckResult("equivalence", False, f"the output differs from the reference by up to "
                       f"{diff:.3g}: " + (f"it looks like {mistakes[mistake]}"
                                          if mistake in mistakes else f"check {formula}"))


def accuracy(ev, facts) -> CheckResult:
    """The grader's accuracy verdict. ``facts["accuracy"]`` is the reason it could not be
    measured, or ``{"accuracy", "threshold", "what", "data"}``. Every part's plain accuracy
    cell uses it."""
    result = facts.get("accuracy")
    if result is None:
        raise Skip("the accuracy is measured by the grader only")
    if isinstance(result, str):
        return CheckResult("accuracy", False, result)
    acc, threshold, what, data = (result[k] for k in ("accuracy", "threshold", "what", "data"))
    if not acc >= threshold:  # also catches NaN
        return CheckResult("accuracy", False, f"{what} reached {acc:.3f} on the grader's {data}, "
                           f"below the required {threshold:.2f}")
    return CheckResult("accuracy", True, f"{what} reached {acc:.3f} on the grader's {data} "
                       f"(required {threshold:.2f})")


def visible_shape(shape_case: str, expected, inputs: str):
    """The check of a visible shape cell: the first shape case's output shape."""

    def check(ev, facts) -> CheckResult:
        out = output(ev, shape_case, f"the call on {inputs}")
        shape = tuple(out.shape)
        return CheckResult("visible_shape", shape == expected,
                           f"expected shape {expected} for {inputs}, got {shape}"
                           if shape != expected else f"shape {expected}")

    return check
