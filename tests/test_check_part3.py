"""Part 3's self-checks and trusted verdicts agree on every known mistake (one design: the same
check functions on evidence, the facts from the evidence in the kernel and recomputed by the
grader). Each variant of ``autograder.examples.PART3_VARIANTS`` fails exactly its cells."""

from __future__ import annotations

import json

import pytest

from autograder import verdicts
from autograder.examples import PART3_VARIANTS, strip_solution_markers
from autograder.hidden import part3
from fusionlab import check_part3, evidence, evidence_part3
from tests.measure_part3 import NOTEBOOK_CELLS, notebook_models

EXERCISE_OBJECT = {"gmu": "GatedMultimodalUnit", "block": "TanhGatedCrossAttention",
                   "dropout": "modality_dropout"}
COLLECT = {"gmu": evidence_part3.collect_gmu, "block": evidence_part3.collect_block,
           "dropout": evidence_part3.collect_dropout}
SELF = {"gmu": check_part3.gmu_results, "block": check_part3.block_results,
        "dropout": check_part3.dropout_results}
SEED = 4242


def namespace(variant: str | None) -> dict:
    ns = notebook_models()
    if variant is not None:
        for source in PART3_VARIANTS[variant][0].values():
            exec(compile(strip_solution_markers(source), variant, "exec"), ns)
    return ns


def grader_verdicts(ns: dict, tmp_path) -> dict:
    (tmp_path / evidence.REQUEST_FILE).write_text(json.dumps({"seed": SEED}))
    results = {}
    for grade_id, (exercise, _) in part3.GRADED.items():
        ev = COLLECT[exercise](ns[EXERCISE_OBJECT[exercise]], SEED)
        results[grade_id] = part3.verdict(grade_id, ev, {"seed": SEED, "eval_seed": 1})
    return results


def self_check_failures(ns: dict) -> set[str]:
    names = {(ex, name): gid for gid, (ex, name) in part3.GRADED.items()}
    failed = set()
    for exercise, results in ((ex, SELF[ex](ns[EXERCISE_OBJECT[ex]])) for ex in SELF):
        for result in results:
            if not result.passed and (exercise, result.name) in names:
                failed.add(names[(exercise, result.name)])
    return failed


def test_the_suite_is_registered():
    assert verdicts.SUITES["part3_who_gets_to_speak"] == "autograder.hidden.part3"
    assert "moddrop-wrapper" in NOTEBOOK_CELLS


def test_the_master_passes_every_verdict_and_self_check(tmp_path):
    ns = namespace(None)
    results = grader_verdicts(ns, tmp_path)
    assert all(r.passed for r in results.values()), {g: r.message for g, r in results.items()
                                                     if not r.passed}
    assert self_check_failures(ns) == set()


@pytest.mark.parametrize("variant", sorted(PART3_VARIANTS))
def test_each_mistake_fails_its_cells_in_the_grader_and_the_self_check(variant, tmp_path):
    ns = namespace(variant)
    expected = set(PART3_VARIANTS[variant][1])
    results = grader_verdicts(ns, tmp_path)
    assert {g for g, r in results.items() if not r.passed} == expected, {
        g: r.message for g, r in results.items() if not r.passed}
    assert self_check_failures(ns) == expected


def test_forged_submodule_outputs_do_not_fool_the_grader(tmp_path):
    """A kernel that reports submodule outputs consistent with a wrong output gains nothing:
    the grader recomputes them from the exported weights."""
    ns = namespace("gmu_swapped_gate")
    ev = evidence_part3.collect_gmu(ns["GatedMultimodalUnit"], SEED)
    ev["sub/gate_proj"] = -ev["sub/gate_proj"]  # makes the swapped output look right
    assert check_part3.run(check_part3.GMU, ["equivalence"], ev, {})[0].passed  # in the kernel
    assert not part3.verdict("gmu_equivalence", ev, {"seed": SEED}).passed


CALL = {"gmu": "gmu", "block": "tanh_gated_block", "dropout": "modality_dropout"}


def test_graded_cells_follow_the_contract():
    """50 points; every graded cell of the master exports its own evidence and has a verdict."""
    import nbformat

    from autograder import REPO_ROOT
    from autograder.examples import graded_cells
    from tests.measure_part3 import ASSIGNMENT

    graded = graded_cells(ASSIGNMENT)
    assert list(graded) == list(part3.GRADED)
    assert sum(graded.values()) == 50
    master = nbformat.read(REPO_ROOT / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb",
                           as_version=4)
    for cell in master.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in part3.GRADED:
            exercise = part3.GRADED[grade_id][0]
            call = f'evidence_part3.{CALL[exercise]}("{grade_id}", {EXERCISE_OBJECT[exercise]})'
            assert call in cell.source, grade_id
            assert ("HIDDEN" in cell.source) != ("visible" in grade_id), grade_id
