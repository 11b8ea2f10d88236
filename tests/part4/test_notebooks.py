"""The Part 4 master follows the course's notebook contract: its sections in order, each TODO
preceded by a worked example and followed by its self-check and its graded cells (in the order
its exercise declares them), the rubric and every graded cell's header as the registry stamps
them, what is real and what is synthetic said plainly. (Freshness of the generated versions and
nbval run for every master in tests/authoring/test_notebooks.py.)"""


import nbformat
import pytest

from autograder.authoring.examples import graded_cells
from autograder.masters import master_path
from fusionlab.grading import registry
from tests.notebook_contract import assert_sections_in_order, by_id

pytestmark = pytest.mark.notebooks

ASSIGNMENT = "part4_align_before_fuse"
MASTER = master_path(ASSIGNMENT)
SECTIONS = ("## 1. Why", "## 2. The data", "## 3. The encoders", "## 4. Your turn",
            "## 5. Experiments", "## 6. Reflection")
EXERCISES = registry.exercises(ASSIGNMENT)
# exercise -> (the worked example before its TODO, the self-check cell after it)
CELLS = {"clip_loss": ("worked-clip", "clip-selfcheck"),
         "recall_at_k": ("worked-recall", "recall-selfcheck"),
         "zero_shot_scores": ("worked-zeroshot", "zeroshot-selfcheck"),
         "siglip_loss": ("worked-siglip", "siglip-selfcheck")}


@pytest.fixture(scope="module")
def nb():
    return nbformat.read(MASTER, as_version=4)


def ids(nb):
    return [cell.get("id") for cell in nb.cells]


def test_sections_in_order_and_the_reflection_last(nb):
    assert_sections_in_order(nb, SECTIONS)
    assert 'GRADING = "NBGRADER_EXECUTION" in os.environ' in by_id(nb)["setup"].source


def test_the_notebook_says_what_is_real_and_what_is_synthetic(nb):
    title = by_id(nb)["title"].source
    assert "**images are real**" in title and "**captions are synthetic**" in title


@pytest.mark.parametrize("exercise", [pytest.param(e, id=e.name) for e in EXERCISES])
def test_a_worked_example_comes_before_each_todo_and_its_self_check(nb, exercise):
    """(The TODO, its self-check and its graded cells in order, and the rubric as the registry
    stamps it: tests/authoring/test_notebooks.py, for every master.)"""
    order = ids(nb)
    worked, self_check = CELLS[exercise.name]
    assert order.index(worked) < order.index(exercise.solution)
    assert order.index(self_check) == order.index(exercise.solution) + 1


def test_graded_cells_come_before_the_experiments(nb):
    order = ids(nb)
    experiments = order.index("experiments")
    assert all(order.index(g) < experiments for g in graded_cells(ASSIGNMENT))


def test_every_todo_cell_uses_only_the_setup_imports(nb):
    """The clean room runs a TODO cell after the setup cell's imports only: a TODO must not
    rely on a name another cell defines."""
    for exercise in EXERCISES:
        source = by_id(nb)[exercise.solution].source
        assert "import " not in source, exercise.solution
