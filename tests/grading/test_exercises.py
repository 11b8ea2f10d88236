"""Every exercise of the registry, through its self-check and its trusted verdicts.

The cases come from the declarations (``fusionlab.grading.registry``) and the known mistakes of
the trusted references (``autograder.hidden``): nothing here names an exercise. Each case is
marked with its exercise (``python -m pytest -m gmu``). For every exercise:

- the master's solution passes every self-check and every graded cell;
- each known mistake loses exactly the graded cells it declares, all of its own exercise;
- the self-check and the verdicts agree on every known mistake: the checks they share fail
  together, for the same reason (the numbers aside: the self-check's inputs are not the
  grader's), and a self-check that passes means the grader gives the exercise full points;
- no reason for a known mistake (honest code) suggests that evidence was tampered with.
"""

from __future__ import annotations

import functools
import re

import pytest

from autograder.authoring import trial
from autograder.hidden import references
from fusionlab.grading import registry

EXERCISES = registry.exercises()
VARIANTS = references.variants()


def _exercise_params():
    return [pytest.param(e, id=e.name) for e in EXERCISES]


def _variant_params():
    return [pytest.param(v, id=f"{v.exercise}-{v.name}") for v in VARIANTS]


def _mask(message: str) -> str:
    """A verdict's words without its numbers."""
    return re.sub(r"[-+]?\d+(\.\d+)?(e[-+]?\d+)?", "#", message)


def _source(variant) -> str:
    exercise = registry.exercise(variant.exercise)
    return variant.replace[exercise.target]


def _variant_verdicts(variant) -> dict:
    """The trusted verdicts of a known mistake, measured once for the tests that need them (a
    measurement trains every accuracy cell of the assignment)."""
    return _verdicts_of(variant.exercise, variant.name)


@functools.lru_cache(maxsize=None)
def _verdicts_of(exercise_name: str, variant_name: str) -> dict:
    variant = next(v for v in VARIANTS if (v.exercise, v.name) == (exercise_name, variant_name))
    return trial.verdicts(registry.exercise(exercise_name).assignment, variant.replace)


@pytest.fixture(scope="module")
def solved():
    """assignment -> the verdicts of the master's own solutions."""
    return {a: trial.verdicts(a) for a in sorted({e.assignment for e in EXERCISES})}


@pytest.mark.parametrize("exercise", _exercise_params())
def test_the_solution_passes_every_self_check_and_every_graded_cell(exercise, solved):
    results = trial.self_check(exercise)
    assert list(results) == list(exercise.self_checks)
    assert all(r.passed for r in results.values()), [r for r in results.values() if not r.passed]
    verdicts = solved[exercise.assignment]
    mine = {c.grade_id for c in exercise.cells}
    assert mine <= set(verdicts), mine - set(verdicts)
    failed = {g: v.message for g, v in verdicts.items() if g in mine and not v.passed}
    assert not failed, failed


@pytest.mark.parametrize("variant", _variant_params())
def test_each_known_mistake_loses_exactly_its_own_cells(variant):
    exercise = registry.exercise(variant.exercise)
    verdicts = _variant_verdicts(variant)
    lost = {g for g, v in verdicts.items() if not v.passed}
    assert lost == set(variant.loses), {g: verdicts[g].message for g in lost ^ set(variant.loses)}
    assert lost <= {c.grade_id for c in exercise.cells}  # a mistake costs its own cells only
    for grade_id in lost:
        assert "cannot evaluate" not in verdicts[grade_id].message


# Words that would tell an honest student that their evidence was tampered with: the trusted
# process has no proof of that for a known mistake, which is honest code.
_SUSPICION = re.compile(r"tamper|\bforg(e|ed|es|ery|ing)\b|edited|not what your exported"
                        r"|recorded .* not what", re.I)


@pytest.mark.parametrize("variant", _variant_params())
def test_self_check_and_verdicts_agree_on_each_known_mistake(variant):
    exercise = registry.exercise(variant.exercise)
    mine = trial.self_check(exercise, _source(variant))
    verdicts = _variant_verdicts(variant)
    reasons = [v.message for v in verdicts.values()] + [r.message for r in mine.values()]
    assert not [m for m in reasons if _SUSPICION.search(m)]  # honest code is never suspected
    if all(r.passed for r in mine.values()):  # a self-check that passes means full points
        assert not [c.grade_id for c in exercise.cells if not verdicts[c.grade_id].passed]
    for cell in exercise.cells:
        if cell.check not in mine:
            continue
        verdict, hint = verdicts[cell.grade_id], mine[cell.check]
        assert verdict.passed == hint.passed, (cell.grade_id, verdict, hint)
        if not verdict.passed and not cell.visible:
            assert _mask(verdict.message) == _mask(hint.message), cell.grade_id
            assert verdict.skipped == hint.skipped, cell.grade_id


def test_every_exercise_has_a_trusted_reference_and_known_mistakes():
    for exercise in EXERCISES:
        ref = references.reference(exercise.name)
        assert ref is not None, exercise.name
        assert ref.variants, f"{exercise.name} has no known mistake to test against"
        if exercise.trains:
            assert ref.evaluation is not None, exercise.name


def test_each_exercises_points_and_cells_are_declared_once():
    ids = [c.grade_id for e in EXERCISES for c in e.cells]
    assert len(ids) == len(set(ids))
    for exercise in EXERCISES:
        assert exercise.points > 0
        assert all(c.check in exercise.checks for c in exercise.cells)
