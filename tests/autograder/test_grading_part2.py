"""Part 2 graded end to end with real nbgrader (generate_assignment, autograde in the sandbox,
the clean room in the sandbox, the trusted verdicts of autograder/hidden/part2,
generate_feedback, export), in one batch shared by the tests: the solution, the untouched
notebook and the demo examples of ``make demo`` (the known mistakes marked ``example``). Every
known mistake is decided in process, through the same clean room and verdicts, by
tests/grading/test_exercises.py.
"""

from __future__ import annotations

import pytest

from autograder.authoring.examples import examples, graded_cells
from tests.autograder.grading_batch import (
    assert_each_submission_loses_its_cells,
    assert_feedback_for_every_submission,
    grade_batch,
)

pytestmark = [pytest.mark.grading, pytest.mark.attention, pytest.mark.coattention,
              pytest.mark.pairs]

ASSIGNMENT = "part2_attention_that_selects"
GRADED = graded_cells(ASSIGNMENT)
CELL_TIMEOUT = 120  # generous on a loaded 2-core machine: the accuracy cell trains

BATCH = examples(ASSIGNMENT)  # name -> (replaced cells, None: untouched; the cells it loses)


@pytest.fixture(scope="module")
def part2(tmp_path_factory):
    return grade_batch(ASSIGNMENT, BATCH, tmp_path_factory, cell_timeout=CELL_TIMEOUT,
                       submission_timeout=900)


def test_part2_scores(part2):
    """Solution 50/50, untouched 0, each mistake loses exactly the points of the cells it
    fails, with a reason for each."""
    report, _ = part2
    assert_each_submission_loses_its_cells(report, BATCH, GRADED)


def test_demo_examples_keep_their_scores(part2):
    report, _ = part2
    scores = {s.student: s.score for s in report.students}
    assert [scores[n] for n in BATCH] == [50, 0, 43, 45]  # no_scaling -7, sequential -5


def test_the_verdicts_say_what_is_wrong(part2):
    report, _ = part2
    results = report.by_student()
    reasons = {t.name: t.reason for t in results["wrong_no_scaling"].tests if not t.passed}
    assert "sqrt(head_dim)" in reasons["attn_equivalence"]
    reasons = {t.name: t.reason for t in results["wrong_coattention_sequential"].tests
               if not t.passed}
    assert "updated words" in reasons["coatt_equivalence"]


def test_feedback_is_written_for_every_submission(part2):
    assert_feedback_for_every_submission(part2[1], BATCH)
