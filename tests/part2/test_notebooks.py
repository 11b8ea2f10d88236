"""The Part 2 master follows the course's notebook contract: its sections in order (P2-LAB's
experiments between "## 6. Experiments" and "## 7. Reflection"), the graded cells in the
exercise section, every claim test quoting the notebook. (Each TODO followed by its self-check
and its graded cells, the graded cells and the rubric table as the registry declares them,
freshness of the generated versions and nbval: for every master in
tests/authoring/test_notebooks.py.)"""

import re

import nbformat
import pytest

from autograder import REPO_ROOT
from fusionlab.grading import registry
from tests.notebook_contract import assert_sections_in_order, by_id

ASSIGNMENT = "part2_attention_that_selects"
MASTER = REPO_ROOT / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
EXERCISES = registry.exercises(ASSIGNMENT)
SECTIONS = ("## 1. Why", "## 2. The mathematics", "## 3. The data", "## 4. The models",
            "## 5. Your turn", "## 6. Experiments", "## 7. Reflection")


@pytest.fixture(scope="module")
def nb():
    return nbformat.read(MASTER, as_version=4)


def test_sections_in_order_and_the_reflection_last(nb):
    assert_sections_in_order(nb, SECTIONS)
    setup = by_id(nb)["setup"].source
    assert 'GRADING = "NBGRADER_EXECUTION" in os.environ' in setup
    assert re.search(r"^from fusionlab import check\b", setup, re.MULTILINE)


def test_graded_cells_are_in_the_exercise_section(nb):
    ids = [c.get("id") for c in nb.cells]
    experiments = next(i for i, c in enumerate(nb.cells) if c.source.startswith("## 6."))
    assert all(ids.index(c.grade_id) < experiments for e in EXERCISES for c in e.cells)


def _words(text: str) -> str:
    return " ".join(text.replace("**", "").replace("`", "").split())


def test_every_claim_test_quotes_the_notebook_word_for_word(nb):
    """Each claim test of tests/part2/test_claims.py opens its docstring with the sentences it
    backs, in double quotes, as its first paragraph ("..." marks a cut; how the bound was
    derived follows after a blank line). Every piece is in the master's text, so that the text
    and its test cannot drift apart."""
    import ast

    from tests.part2 import test_claims

    text = _words(" ".join(c.source for c in nb.cells if c.cell_type == "markdown"))
    tree = ast.parse(open(test_claims.__file__).read())
    tests = [f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name.startswith("test_")]
    assert len(tests) >= 10
    for function in tests:
        quote = (ast.get_docstring(function) or "").split("\n\n")[0].strip()
        assert quote.startswith('"') and quote.endswith('"'), f"{function.name} quotes nothing"
        for piece in quote[1:-1].split("..."):
            piece = _words(piece).strip(" ,.;:()")
            assert piece in text, (function.name, piece)
