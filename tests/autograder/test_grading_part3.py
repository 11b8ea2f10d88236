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
from tests.autograder.grading_batch import assert_demo_graded, demo_batch

pytestmark = pytest.mark.grading

ASSIGNMENT = "part3_who_gets_to_speak"
GRADED = graded_cells(ASSIGNMENT)
MAX_SCORE = 50.0
CELL_TIMEOUT = 60  # generous on a loaded 2-core machine
# name -> (replacement cells or None for untouched, graded cells expected to fail)
BATCH = examples(ASSIGNMENT)
EXAMPLES = [name for name in BATCH if name not in ("correct", "untouched")]


part3 = demo_batch(ASSIGNMENT, cell_timeout=CELL_TIMEOUT, submission_timeout=600)


def test_every_exercise_has_a_demo_example():
    shown = {v.exercise for v in references.variants() if f"wrong_{v.name}" in EXAMPLES}
    assert shown == {e.name for e in registry.exercises(ASSIGNMENT)}


def test_each_example_loses_its_cells_scores_as_documented_and_gets_its_feedback(part3):
    assert_demo_graded(part3, BATCH, GRADED)


def test_demo_examples_lose_some_points_but_not_all(part3):
    report, _ = part3
    scores = {s.student: s.score for s in report.students}
    assert scores["correct"] == MAX_SCORE and scores["untouched"] == 0
    for name in EXAMPLES:
        assert 0 < scores[name] < MAX_SCORE, name


def test_make_demo_writes_the_examples_of_the_batch(tmp_path):
    """`make demo` grades these examples (the batch above holds each of them)."""
    paths = write_examples(ASSIGNMENT, tmp_path)
    assert [p.stem for p in paths] == list(BATCH)
