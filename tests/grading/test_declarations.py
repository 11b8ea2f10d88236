"""Each part's ``exercises.toml``: every row becomes a registered exercise, its texts are filled,
and a misspelt key is refused instead of ignored."""

import string

import pytest

from fusionlab.grading import registry
from fusionlab.grading.registry import Declarations

PARTS = ("part1", "part2", "part3", "part4")


def _declarations(part: str) -> Declarations:
    module = __import__(f"fusionlab.{part}.exercises", fromlist=["DECLARED"])
    return module.DECLARED


@pytest.mark.parametrize("part", PARTS)
def test_every_row_of_the_table_is_a_registered_exercise(part):
    declared = _declarations(part)
    registered = [e.name for e in registry.exercises(declared.assignment)]
    assert declared.names == registered


@pytest.mark.parametrize("part", PARTS)
def test_every_text_is_filled_from_the_settings(part):
    """No ``{...}`` is left in a rubric text: each names a setting or a phrase that exists."""
    for exercise in registry.exercises(_declarations(part).assignment):
        for cell in exercise.cells:
            fields = [f for _, f, _, _ in string.Formatter().parse(cell.description) if f]
            assert not fields, (cell.grade_id, cell.description)


def _table(tmp_path, cell_line: str) -> Declarations:
    (tmp_path / "exercises.toml").write_text(
        '[toy]\ntarget = "f"\nsolution = "toy_solution"\ntitle = "a toy"\n'
        'self_checks = ["works"]\n\n[toy.cells]\n' + cell_line + "\n")
    return Declarations(str(tmp_path / "exercises.py"), "toy_assignment", config=None)


def test_a_table_row_becomes_an_exercise_with_its_cells(tmp_path):
    declared = _table(tmp_path, 'toy_works = {check = "works", points = 2, visible = true, '
                                'text = "works on {n} inputs"}')
    exercise = declared.exercise("toy", collect=lambda *a, **k: {}, texts={"n": 3},
                                 checks={"works": lambda ev, facts: None})
    assert (exercise.name, exercise.assignment, exercise.target) == ("toy", "toy_assignment", "f")
    (cell,) = exercise.cells
    assert (cell.grade_id, cell.check, cell.points, cell.visible, cell.trains) == (
        "toy_works", "works", 2, True, False)
    assert cell.description == "works on 3 inputs"


def test_a_misspelt_key_is_refused_with_its_place(tmp_path):
    declared = _table(tmp_path, 'toy_works = {check = "works", points = 2, visble = true, '
                                'text = "works"}')
    with pytest.raises(ValueError, match=r"\[toy.cells.toy_works\] has unknown keys visble"):
        declared.exercise("toy", collect=lambda *a, **k: {},
                          checks={"works": lambda ev, facts: None})
