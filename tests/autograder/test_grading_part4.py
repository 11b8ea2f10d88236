"""Part 4 graded end to end with real nbgrader, sandboxed: its ``make demo`` examples (the
solution, the untouched notebook and the two known mistakes its references mark as examples),
graded in one batch. Every verdict comes from the clean room and the trusted references
(``autograder.hidden.part4``); every other known mistake is decided through the registry in
tests/grading/test_exercises.py.
"""

from __future__ import annotations

import nbformat
import pytest

from autograder.authoring.examples import examples, graded_cells
from tests.autograder.grading_batch import assert_demo_graded, demo_batch

pytestmark = [pytest.mark.grading, pytest.mark.exercise("clip_loss", "recall_at_k",
                                                        "zero_shot_scores", "siglip_loss")]

ASSIGNMENT = "part4_align_before_fuse"
GRADED = graded_cells(ASSIGNMENT)
CELL_TIMEOUT = 120  # generous on a loaded 2-core machine: two cells train a dual encoder
BATCH = examples(ASSIGNMENT)  # name -> (replaced TODO cells or None, graded cells it loses)


part4 = demo_batch(ASSIGNMENT, cell_timeout=CELL_TIMEOUT, submission_timeout=900)


def test_the_demo_is_the_solution_the_untouched_notebook_and_two_mistakes():
    assert sorted(BATCH) == ["correct", "untouched", "wrong_image_to_text_only",
                             "wrong_temperature_twice"]


def test_each_example_loses_its_cells_scores_as_documented_and_gets_its_feedback(part4):
    assert_demo_graded(part4, BATCH, GRADED)


def test_the_verdicts_name_the_mistake(part4):
    report, _ = part4
    results = report.by_student()
    one_way = {t.name: t.reason for t in results["wrong_image_to_text_only"].tests
               if not t.passed}
    assert "the image-to-text direction only" in one_way["clip_equivalence"]
    assert "swapping the images and the captions changes the loss" in one_way["clip_symmetric"]
    twice = {t.name: t.reason for t in results["wrong_temperature_twice"].tests if not t.passed}
    assert "the scale is applied twice" in twice["clip_equivalence"]
    untouched = results["untouched"]
    assert all("not implemented" in t.reason or "NotImplementedError" in t.reason
               for t in untouched.tests)


def test_the_accuracy_cells_are_decided_on_the_graders_own_digits(part4):
    """The autograded notebook shows the trusted verdict in each accuracy cell: the accuracy a
    dual encoder trained with the student's loss reached on the grader's held-out digits."""
    _, out = part4
    path = out / "course" / "autograded" / "correct" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    cells = {c.metadata.nbgrader.grade_id: c for c in nbformat.read(path, as_version=4).cells
             if c.metadata.get("nbgrader", {}).get("grade")}
    for grade_id, loss in (("clip_accuracy", "clip_loss"), ("siglip_accuracy", "siglip_loss")):
        (output,) = cells[grade_id].outputs
        assert output.output_type == "stream" and output.text.startswith("PASS: "), output
        assert f"trained with your {loss} reached" in output.text
        assert "held-out digits (zero-shot)" in output.text
