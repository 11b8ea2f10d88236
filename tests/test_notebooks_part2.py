"""The Part 2 master follows the course's notebook contract: its sections in order (P2-LAB's
experiments between "## 6. Experiments" and "## 7. Reflection"), each TODO followed by its
self-check (``check.<exercise>``) and its graded cells, the graded cells and the rubric table
as the exercise registry declares them (visible tests keep their asserts, hidden tests are
comments only: nothing of them runs in the student's notebook). (Freshness of the generated
versions and nbval run for every master in tests/test_notebooks.py.)"""

import re

import nbformat
import pytest

from autograder import REPO_ROOT
from autograder.authoring import rubric
from fusionlab.grading import registry

ASSIGNMENT = "part2_attention_that_selects"
MASTER = REPO_ROOT / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
EXERCISES = registry.exercises(ASSIGNMENT)
SECTIONS = ("## 1. Why", "## 2. The mathematics", "## 3. The data", "## 4. The models",
            "## 5. Your turn", "## 6. Experiments", "## 7. Reflection")


@pytest.fixture(scope="module")
def nb():
    return nbformat.read(MASTER, as_version=4)


def by_id(nb):
    return {cell.get("id"): cell for cell in nb.cells}


def test_sections_in_order_and_the_reflection_last(nb):
    headings = [c.source.splitlines()[0] for c in nb.cells if c.cell_type == "markdown"
                and c.source.startswith("## ")]
    found = [next(h for h in headings if h.startswith(s)) for s in SECTIONS]
    assert [headings.index(h) for h in found] == sorted(headings.index(h) for h in found)
    assert nb.cells[-1].source.startswith("## 7. Reflection")
    setup = by_id(nb)["setup"].source
    assert 'GRADING = "NBGRADER_EXECUTION" in os.environ' in setup
    assert re.search(r"^from fusionlab import check\b", setup, re.MULTILINE)


def test_the_master_agrees_with_the_exercise_registry(nb):
    """Points, graded cells' header comments and the rubric table: as declared (``make
    notebooks`` stamps them), no graded cell undeclared, none declared missing."""
    assert rubric.differences(nb, ASSIGNMENT) == []
    assert sum(e.points for e in EXERCISES) == 50


def test_graded_cells_are_in_the_exercise_section(nb):
    ids = [c.get("id") for c in nb.cells]
    experiments = next(i for i, c in enumerate(nb.cells) if c.source.startswith("## 6."))
    assert all(ids.index(c.grade_id) < experiments for e in EXERCISES for c in e.cells)


@pytest.mark.parametrize("exercise", [pytest.param(e, id=e.name) for e in EXERCISES])
def test_todo_then_self_check_then_its_graded_cells(nb, exercise):
    ids = [c.get("id") for c in nb.cells]
    cell = by_id(nb)[exercise.solution]
    meta = cell.metadata.nbgrader
    assert (meta.grade_id, meta.solution, meta.grade, meta.locked) == (exercise.solution, True,
                                                                       False, False)
    assert cell.source.count("### BEGIN SOLUTION") == cell.source.count("### END SOLUTION") >= 1
    self_check = nb.cells[ids.index(exercise.solution) + 1]
    assert f"check.{exercise.name}({exercise.target})" in self_check.source
    start = ids.index(exercise.solution) + 2
    graded = [c.grade_id for c in exercise.cells]
    assert ids[start:start + len(graded)] == graded


def test_graded_cells_follow_the_contract(nb):
    """Each graded cell is locked and named by its grade_id; a visible one asserts, a hidden one
    is the registry's comment and nothing else; none records evidence in the notebook."""
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if not meta.get("grade"):
            continue
        _, declared = registry.graded_cell(meta["grade_id"])
        assert cell.id == meta["grade_id"]
        assert (meta["solution"], meta["locked"], meta["schema_version"]) == (False, True, 3)
        assert "evidence" not in cell.source and "HIDDEN TESTS" not in cell.source, cell.id
        if declared.visible:
            assert "assert " in cell.source, cell.id
        else:
            assert cell.source == rubric.hidden_source(declared), cell.id


def _words(text: str) -> str:
    return " ".join(text.replace("**", "").replace("`", "").split())


def test_every_claim_test_quotes_the_notebook_word_for_word(nb):
    """Each claim test of tests/test_claims_part2.py opens its docstring with the sentences it
    backs, in double quotes, as its first paragraph ("..." marks a cut; how the bound was
    derived follows after a blank line). Every piece is in the master's text, so that the text
    and its test cannot drift apart."""
    import ast

    from tests import test_claims_part2

    text = _words(" ".join(c.source for c in nb.cells if c.cell_type == "markdown"))
    tree = ast.parse(open(test_claims_part2.__file__).read())
    tests = [f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name.startswith("test_")]
    assert len(tests) >= 10
    for function in tests:
        quote = (ast.get_docstring(function) or "").split("\n\n")[0].strip()
        assert quote.startswith('"') and quote.endswith('"'), f"{function.name} quotes nothing"
        for piece in quote[1:-1].split("..."):
            piece = _words(piece).strip(" ,.;:()")
            assert piece in text, (function.name, piece)
