"""Part 3 graded end to end with real nbgrader (generate_assignment, autograde in the sandbox,
the clean room, the trusted verdicts of autograder/hidden/part3, generate_feedback, export), in
one batch shared by the tests: the solution, the untouched notebook and the demo examples of
``make demo`` (the known mistakes that ``autograder.hidden.part3`` marks ``example``). Every
other known mistake is decided through the same clean room, in-process, by
tests/grading/test_exercises.py.
"""

from __future__ import annotations

import pytest

from autograder.authoring.examples import examples, graded_cells, write_examples
from autograder.hidden import references
from fusionlab.grading import registry
from tests.autograder.grading_batch import (
    assert_each_submission_loses_its_cells,
    assert_feedback_for_every_submission,
    grade_batch,
)

pytestmark = pytest.mark.grading

ASSIGNMENT = "part3_who_gets_to_speak"
GRADED = graded_cells(ASSIGNMENT)
MAX_SCORE = 50.0
CELL_TIMEOUT = 60  # generous on a loaded 2-core machine
# name -> (replacement cells or None for untouched, graded cells expected to fail)
BATCH = examples(ASSIGNMENT)
EXAMPLES = [name for name in BATCH if name not in ("correct", "untouched")]


@pytest.fixture(scope="module")
def part3(tmp_path_factory):
    return grade_batch(ASSIGNMENT, BATCH, tmp_path_factory, cell_timeout=CELL_TIMEOUT,
                       submission_timeout=600)


def test_every_exercise_has_a_demo_example():
    shown = {v.exercise for v in references.variants() if f"wrong_{v.name}" in EXAMPLES}
    assert shown == {e.name for e in registry.exercises(ASSIGNMENT)}


def test_part3_scores(part3):
    """Solution 50/50, untouched 0, each example loses exactly the points of the cells it
    declares, each with a reason that is not "cannot evaluate"."""
    report, _ = part3
    assert_each_submission_loses_its_cells(report, BATCH, GRADED)


def test_demo_examples_lose_some_points_but_not_all(part3):
    report, _ = part3
    scores = {s.student: s.score for s in report.students}
    assert scores["correct"] == MAX_SCORE and scores["untouched"] == 0
    for name in EXAMPLES:
        assert 0 < scores[name] < MAX_SCORE, name


def test_feedback_is_written_for_every_submission(part3):
    assert_feedback_for_every_submission(part3[1], BATCH)


def test_make_demo_writes_the_examples_of_the_batch(tmp_path):
    """`make demo` grades these examples (the batch above holds each of them)."""
    paths = write_examples(ASSIGNMENT, tmp_path)
    assert [p.stem for p in paths] == list(BATCH)
