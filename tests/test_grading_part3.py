"""Part 3 graded end to end with real nbgrader (generate_assignment, autograde, the trusted
verdicts of autograder/hidden/part3.py, generate_feedback, export), in one batch shared by the
tests: the solution, the untouched notebook and the three wrong examples of ``make demo``. The
other known mistakes (``PART3_VARIANTS``) are decided through the verdict functions directly in
tests/test_check_part3.py.
"""

from __future__ import annotations

import pytest

from autograder.examples import (
    PART3_EXAMPLES,
    PART3_VARIANTS,
    graded_cells,
    write_examples,
)
from tests.grading_batch import grade_batch

pytestmark = pytest.mark.grading

ASSIGNMENT = "part3_who_gets_to_speak"
GRADED = graded_cells(ASSIGNMENT)
MAX_SCORE = 50.0
CELL_TIMEOUT = 60  # generous on a loaded 2-core machine

BATCH = {  # name -> (replacement cells or None for untouched, graded cells expected to fail)
    "correct": ({}, ()),
    "untouched": (None, tuple(GRADED)),
    "gmu_gate_detached": PART3_VARIANTS["gmu_gate_detached"],  # the GMU accuracy cell
    "alpha_at_one": PART3_VARIANTS["alpha_at_one"],
    "dropout_shortcut": PART3_VARIANTS["dropout_shortcut"],
}


@pytest.fixture(scope="module")
def part3(tmp_path_factory):
    return grade_batch(ASSIGNMENT, BATCH, tmp_path_factory, cell_timeout=CELL_TIMEOUT,
                       submission_timeout=600)


def test_rubric_totals_50():
    assert sum(GRADED.values()) == MAX_SCORE


def test_part3_scores(part3):
    """Solution 50/50, untouched 0, each mistake loses exactly the points of the cells it
    fails, with a reason for each."""
    report, _ = part3
    results = report.by_student()
    assert set(results) == set(BATCH)
    for name, (_, failing) in BATCH.items():
        result = results[name]
        failed = sorted(t.name for t in result.tests if not t.passed)
        assert failed == sorted(failing), (name, [(t.name, t.reason) for t in result.tests
                                                  if not t.passed])
        assert result.score == MAX_SCORE - sum(GRADED[c] for c in failing), name
        for test in result.tests:
            assert test.passed or test.reason, (name, test.name)


def test_demo_examples_keep_their_scores(part3):
    report, _ = part3
    scores = {s.student: s.score for s in report.students}
    assert [scores[n] for n in BATCH] == [50, 0, 47, 43, 44]


def test_feedback_is_written_for_every_submission(part3):
    _, out = part3
    for name in BATCH:
        assert list((out / "feedback").rglob(f"*{name}*")) or list(
            (out / "feedback").rglob("*.html")), name


def test_make_demo_writes_the_examples_of_the_table(tmp_path):
    """`make demo` grades these examples (the batch above holds each of them)."""
    paths = write_examples(ASSIGNMENT, tmp_path)
    assert [p.stem for p in paths] == list(PART3_EXAMPLES)
    assert {name.removeprefix("wrong_") for name in PART3_EXAMPLES} == set(BATCH)
