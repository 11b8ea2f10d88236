"""The Part 2 master follows the course's notebook contract: its sections in order (P2-LAB's
experiments between "## 6. Experiments" and "## 7. Reflection"), each TODO followed by its
self-check and its graded cells, visible tests that assert and export evidence, hidden tests
that only export evidence. (Freshness of the generated versions and nbval run for every master
in tests/test_notebooks.py.)"""

import re

import nbformat
import pytest

from autograder import REPO_ROOT
from autograder.examples import graded_cells
from autograder.hidden import part2

ASSIGNMENT = "part2_attention_that_selects"
MASTER = REPO_ROOT / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
GRADED = graded_cells(ASSIGNMENT)
HIDDEN_CELL = re.compile(
    r"\A# Hidden test: .+ \((?P<points>\d+) points?\)\n"
    r"### BEGIN HIDDEN TESTS\n"
    r"from fusionlab import evidence_part2\n\n"
    r"evidence_part2\.(?P<exercise>attention|coattention|pairs)\(\"(?P<grade_id>\w+)\", "
    r"(MaskedMultiHeadAttention|CoAttentionBlock|relation_pair_sum)(?P<train>, train=True)?\)\n"
    r"### END HIDDEN TESTS\Z"
)
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
    assert 'GRADING = "NBGRADER_EXECUTION" in os.environ' in by_id(nb)["setup"].source


def test_graded_cells_are_in_the_exercise_section(nb):
    ids = [c.get("id") for c in nb.cells]
    experiments = next(i for i, c in enumerate(nb.cells) if c.source.startswith("## 6."))
    assert all(ids.index(g) < experiments for g in GRADED)


@pytest.mark.parametrize("exercise, solution, self_check, call", [
    pytest.param("attention", "attention_solution", "attention-self-check",
                 "check_part2.attention(MaskedMultiHeadAttention)", marks=pytest.mark.attention),
    pytest.param("coattention", "coattention_solution", "coattention-self-check",
                 "check_part2.coattention(CoAttentionBlock)", marks=pytest.mark.coattention),
    pytest.param("pairs", "pairs_solution", "pairs-self-check",
                 "check_part2.pairs(relation_pair_sum)", marks=pytest.mark.pairs),
])
def test_todo_then_self_check_then_its_graded_cells(nb, exercise, solution, self_check, call):
    ids = [c.get("id") for c in nb.cells]
    cell = by_id(nb)[solution]
    meta = cell.metadata.nbgrader
    assert (meta.grade_id, meta.solution, meta.grade, meta.locked) == (solution, True, False,
                                                                       False)
    assert cell.source.count("### BEGIN SOLUTION") == cell.source.count("### END SOLUTION") >= 1
    assert ids.index(self_check) == ids.index(solution) + 1
    assert call in by_id(nb)[self_check].source
    graded = [g for g, (ex, _) in part2.GRADED.items() if ex == exercise]
    start = ids.index(self_check) + 1
    assert ids[start:start + len(graded)] == graded


def test_graded_cells_follow_the_contract(nb):
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if not meta.get("grade"):
            continue
        exercise, name = part2.GRADED[meta["grade_id"]]
        assert cell.id == meta["grade_id"]
        assert (meta["solution"], meta["locked"], meta["schema_version"]) == (False, True, 3)
        if "HIDDEN" not in cell.source:  # visible: its asserts are a hint, the evidence counts
            assert "assert " in cell.source and f'evidence_part2.{exercise}("{cell.id}", ' \
                in cell.source
            continue
        match = HIDDEN_CELL.match(cell.source)
        assert match, f"{cell.id} is not in the hidden-test form:\n{cell.source}"
        assert int(match["points"]) == meta["points"] and match["grade_id"] == cell.id
        assert match["exercise"] == exercise and bool(match["train"]) == (name == "accuracy")


def test_the_rubric_table_lists_every_graded_cell_with_its_points(nb):
    rubric = by_id(nb)["your-turn"].source
    for grade_id, points in GRADED.items():
        assert re.search(rf"\| `{grade_id}` \| {points:g} \|", rubric), grade_id
    assert "| **total** | **50** |" in rubric
