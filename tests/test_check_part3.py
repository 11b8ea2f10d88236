"""Part 3's self-checks and trusted verdicts agree on every known mistake (one design: the same
check functions on evidence, the facts from the evidence in the kernel and recomputed by the
grader). Each variant of ``autograder.examples.PART3_VARIANTS`` fails exactly its cells."""

from __future__ import annotations

import json

import numpy as np
import pytest

from autograder import measure_thresholds_part3, verdicts
from autograder.examples import PART3_VARIANTS, _gmu, strip_solution_markers
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
REQUEST = {"seed": SEED, "eval_seed": 1}
GRADER_ONLY = {g for g, (_, name) in part3.GRADED.items() if name == "accuracy"}
# the per-exercise markers of pyproject.toml: `pytest -m gmu` checks the GMU exercise alone
MARKS = {"gmu": pytest.mark.gmu, "block": pytest.mark.tanh_gated,
         "dropout": pytest.mark.modality_dropout}


def namespace(variant: str | None) -> dict:
    ns = notebook_models()
    if variant is not None:
        for source in PART3_VARIANTS[variant][0].values():
            exec(compile(strip_solution_markers(source), variant, "exec"), ns)
    return ns


def grader_verdicts(ns: dict, tmp_path, exercise: str) -> dict:
    """The verdicts of ``exercise``'s graded cells; one collection, with the training of its
    accuracy cell (the other records do not depend on it)."""
    (tmp_path / evidence.REQUEST_FILE).write_text(json.dumps({"seed": SEED}))
    ev = COLLECT[exercise](ns[EXERCISE_OBJECT[exercise]], SEED,
                           **({} if exercise == "block" else {"train": True}))
    return {grade_id: part3.verdict(grade_id, ev, REQUEST)
            for grade_id, (ex, _) in part3.GRADED.items() if ex == exercise}


def self_check_failures(ns: dict, exercise: str) -> set[str]:
    names = {(ex, name): gid for gid, (ex, name) in part3.GRADED.items()}
    return {names[(exercise, r.name)] for r in SELF[exercise](ns[EXERCISE_OBJECT[exercise]])
            if not r.passed and (exercise, r.name) in names}


def by_exercise(exercise: str, *values):
    """``pytest.param(*values)`` tagged with ``exercise``'s marker (``pytest -m gmu``)."""
    return pytest.param(*values, marks=MARKS[exercise], id="-".join(map(str, values)))


def test_the_suite_is_registered():
    assert verdicts.SUITES["part3_who_gets_to_speak"] == "autograder.hidden.part3"
    assert "moddrop-wrapper" in NOTEBOOK_CELLS


@pytest.mark.parametrize("exercise", [by_exercise(ex, ex) for ex in COLLECT])
def test_the_master_passes_every_verdict_and_self_check(exercise, tmp_path):
    ns = namespace(None)
    results = grader_verdicts(ns, tmp_path, exercise)
    assert all(r.passed for r in results.values()), {g: r.message for g, r in results.items()
                                                     if not r.passed}
    assert self_check_failures(ns, exercise) == set()


def variant_exercise(variant: str) -> str:
    (exercise,) = {part3.GRADED[g][0] for g in PART3_VARIANTS[variant][1]}
    return exercise


@pytest.mark.parametrize("variant", [by_exercise(variant_exercise(v), v)
                                     for v in sorted(PART3_VARIANTS)])
def test_each_mistake_fails_its_cells_in_the_grader_and_the_self_check(variant, tmp_path):
    ns, exercise = namespace(variant), variant_exercise(variant)
    expected = set(PART3_VARIANTS[variant][1])
    results = grader_verdicts(ns, tmp_path, exercise)
    assert {g for g, r in results.items() if not r.passed} == expected, {
        g: r.message for g, r in results.items() if not r.passed}
    # the self-checks do not train: the accuracy cells are the grader's alone
    assert self_check_failures(ns, exercise) == expected - GRADER_ONLY


@pytest.mark.gmu
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
            call = f'evidence_part3.{CALL[exercise]}("{grade_id}", {EXERCISE_OBJECT[exercise]}'
            train = ", train=True" if grade_id.endswith("_accuracy") else ""
            assert call + train + ")" in cell.source, grade_id
            assert ("HIDDEN" in cell.source) != ("visible" in grade_id), grade_id


# ----------------------------------------------------------------------------- forged reports
# Values a kernel could simply report (a rate, an initial value, a list of shapes) are not taken
# as reported: the grader computes them from the arrays it computes with, or checks them against
# the behaviour it recomputes. Each test forges one and fails without that.

@pytest.mark.modality_dropout
def test_a_forged_dropout_rate_does_not_fool_the_grader():
    """A function that drops nothing without a generator, with a kernel reporting the rate of
    a correct one: the grader computes the rate from the returned mask itself."""
    ev = evidence_part3.collect_dropout(namespace("dropout_needs_generator")["modality_dropout"],
                                        SEED)
    ev["rate_mean"] = np.array(0.3)
    result = part3.verdict("dropout_rate", ev, REQUEST)
    assert not result.passed and "dropped 0.000" in result.message, result.message


@pytest.mark.tanh_gated
def test_a_forged_initial_alpha_does_not_fool_the_grader():
    """alpha starts at 1, the kernel reports 0: the output at initialisation contradicts it."""
    ev = evidence_part3.collect_block(namespace("alpha_at_one")["TanhGatedCrossAttention"], SEED)
    ev["init/alpha"] = np.zeros(1, dtype=np.float32)
    result = part3.verdict("block_attributes", ev, REQUEST)
    assert not result.passed and "did not use alpha = 0" in result.message, result.message


@pytest.mark.gmu
def test_forged_weight_shapes_do_not_fool_the_grader():
    """A gate that reads the image only (gate_proj: Linear(32, 32)), with the shapes of the
    interface reported: the grader reads the shapes of the exported weights."""
    source = (_gmu().replace("nn.Linear(img_dim + txt_dim, hidden_dim)",
                             "nn.Linear(img_dim, hidden_dim)")
              .replace("self.gate_proj(torch.cat([img_feat, txt_feat], dim=-1))",
                       "self.gate_proj(img_feat)"))
    ns = notebook_models()
    exec(source, ns)
    ev = evidence_part3.collect_gmu(ns["GatedMultimodalUnit"], SEED)
    ev["shapes"] = np.array(json.dumps({"img_proj.weight": [32, 32], "txt_proj.weight": [32, 16],
                                        "gate_proj.weight": [32, 48]}))
    result = part3.verdict("gmu_attributes", ev, REQUEST)
    assert not result.passed and "gate_proj.weight should have shape (32, 48)" in result.message


# ----------------------------------------------------------------------------- accuracy cells
# The thresholds are measured over 20 seeds by autograder/measure_thresholds_part3.py; here one
# seed shows that each ablation fails for its reason and the reference passes.

def _accuracy(exercise: str, obj, seed: int = 3):
    return measure_thresholds_part3.accuracy_verdict(exercise, obj, seed)[1]


@pytest.mark.slow
@pytest.mark.gmu
@pytest.mark.parametrize("name, reason", [
    ("gate detached (z.detach() in h: the gate never trains)", "does not follow the switch M"),
    ("image only (z stuck at 1)", "below the required 0.90"),
])
def test_gmu_ablations_fail_the_accuracy_cell(name, reason):
    cases = {n: obj for ex, n, obj in measure_thresholds_part3.cases() if ex == "gmu"}
    assert _accuracy("gmu", cases["reference"]).passed
    result = _accuracy("gmu", cases[name])
    assert not result.passed and reason in result.message, result.message


@pytest.mark.slow
@pytest.mark.modality_dropout
@pytest.mark.parametrize("name, reason", [
    ("no dropout (x returned unchanged)", "with every text zeroed"),
    ("always drops (p ignored)", "with every text present, below the required 0.90"),
])
def test_dropout_ablations_fail_the_accuracy_cell(name, reason):
    cases = {n: obj for ex, n, obj in measure_thresholds_part3.cases() if ex == "dropout"}
    assert _accuracy("dropout", cases["reference"]).passed
    result = _accuracy("dropout", cases[name])
    assert not result.passed and reason in result.message, result.message


@pytest.mark.modality_dropout
def test_the_dropout_accuracy_cell_needs_trained_weights_of_the_reference_architecture():
    """Evidence without training, or with trained weights of another model, fails with the
    reason; the grader never trains or evaluates anything of the kernel's choosing."""
    ev = evidence_part3.collect_dropout(namespace(None)["modality_dropout"], SEED)
    result = part3.verdict("dropout_accuracy", ev, REQUEST)
    assert not result.passed and "no trained weights" in result.message
    ev["trained/fusion.0.weight"] = np.zeros((7, 7), dtype=np.float32)
    result = part3.verdict("dropout_accuracy", ev, REQUEST)
    assert not result.passed and "do not fit EarlyFusion" in result.message, result.message


@pytest.mark.gmu
def test_the_gmu_accuracy_cell_needs_trained_weights_of_the_reference_architecture():
    ev = evidence_part3.collect_gmu(namespace(None)["GatedMultimodalUnit"], SEED)
    result = part3.verdict("gmu_accuracy", ev, REQUEST)
    assert not result.passed and "no trained weights" in result.message
    ev["trained/classifier.weight"] = np.zeros((2, 32), dtype=np.float32)
    result = part3.verdict("gmu_accuracy", ev, REQUEST)
    assert not result.passed and "do not fit" in result.message, result.message
