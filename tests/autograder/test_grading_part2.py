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
from tests.autograder.grading_batch import assert_demo_graded, demo_batch

pytestmark = [pytest.mark.grading, pytest.mark.attention, pytest.mark.coattention,
              pytest.mark.pairs]

ASSIGNMENT = "part2_attention_that_selects"
GRADED = graded_cells(ASSIGNMENT)
CELL_TIMEOUT = 120  # generous on a loaded 2-core machine: the accuracy cell trains

BATCH = examples(ASSIGNMENT)  # name -> (replaced cells, None: untouched; the cells it loses)


part2 = demo_batch(ASSIGNMENT, cell_timeout=CELL_TIMEOUT, submission_timeout=900)


def test_each_example_loses_its_cells_scores_as_documented_and_gets_its_feedback(part2):
    assert_demo_graded(part2, BATCH, GRADED)


def test_the_verdicts_say_what_is_wrong(part2):
    report, _ = part2
    results = report.by_student()
    reasons = {t.name: t.reason for t in results["wrong_no_scaling"].tests if not t.passed}
    assert "sqrt(head_dim)" in reasons["attn_equivalence"]
    reasons = {t.name: t.reason for t in results["wrong_coattention_sequential"].tests
               if not t.passed}
    assert "updated words" in reasons["coatt_equivalence"]
