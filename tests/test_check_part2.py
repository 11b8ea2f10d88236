"""Part 2's self-checks and trusted verdicts agree on every known mistake (one design: the same
check functions on evidence; the facts from the exported weights, recomputed by the grader on
its own seed). Each variant of ``autograder.examples.PART2_VARIANTS`` fails exactly its cells;
the accuracy cell, which trains, is decided in the slow tests at the end."""

from __future__ import annotations

import json

import nbformat
import numpy as np
import pytest
import torch

from autograder import REPO_ROOT, verdicts
from autograder.examples import (
    PART2_VARIANTS,
    graded_cells,
    master_namespace,
    strip_solution_markers,
)
from autograder.hidden import part2
from autograder.hidden import reference_part2 as R
from fusionlab import check_part2, evidence, evidence_part2

ASSIGNMENT = "part2_attention_that_selects"
SOLUTION_CELLS = ("attention_solution", "coattention_solution", "pairs_solution")
EXERCISE_OBJECT = {"attention": "MaskedMultiHeadAttention", "coattention": "CoAttentionBlock",
                   "pairs": "relation_pair_sum"}
COLLECT = {"attention": evidence_part2.collect_attention,
           "coattention": evidence_part2.collect_coattention,
           "pairs": evidence_part2.collect_pairs}
SELF = {"attention": check_part2.attention_results,
        "coattention": check_part2.coattention_results, "pairs": check_part2.pairs_results}
MARK = {"attention": pytest.mark.attention, "coattention": pytest.mark.coattention,
        "pairs": pytest.mark.pairs}
SEED = 4242
FAST = {g: v for g, v in part2.GRADED.items() if v[1] != "accuracy"}


def namespace(variant: str | None = None) -> dict:
    """The master's solution cells as plain Python, with ``variant``'s cells replacing them."""
    ns = master_namespace(ASSIGNMENT, SOLUTION_CELLS)
    if variant is not None:
        for source in PART2_VARIANTS[variant][0].values():
            exec(compile(strip_solution_markers(source), variant, "exec"), ns)
    return ns


def grader_verdicts(ns: dict, tmp_path, graded=FAST) -> dict:
    (tmp_path / evidence.REQUEST_FILE).write_text(json.dumps({"seed": SEED}))
    cache, results = {}, {}
    for grade_id, (exercise, name) in graded.items():
        train = name == "accuracy"
        if (exercise, train) not in cache:
            cache[exercise, train] = COLLECT[exercise](ns[EXERCISE_OBJECT[exercise]], SEED,
                                                       **({"train": True} if train else {}))
        results[grade_id] = part2.verdict(grade_id, cache[exercise, train],
                                          {"seed": SEED, "eval_seed": 7})
    return results


def self_check_failures(ns: dict) -> set[str]:
    names = {(ex, name): gid for gid, (ex, name) in part2.GRADED.items()}
    failed = set()
    for exercise, check in SELF.items():
        for result in check(ns[EXERCISE_OBJECT[exercise]]):
            if not result.passed and (exercise, result.name) in names:
                failed.add(names[(exercise, result.name)])
    return failed


def _exercise(variant: str) -> str:
    replaced = PART2_VARIANTS[variant][0]
    return ("coattention" if "CoAttentionBlock" in replaced
            else "pairs" if "pairs_solution" in replaced else "attention")


def test_the_suite_is_registered():
    assert verdicts.SUITES[ASSIGNMENT] == "autograder.hidden.part2"
    assert verdicts.suite(ASSIGNMENT) is part2


@pytest.mark.attention
@pytest.mark.coattention
@pytest.mark.pairs
def test_the_master_passes_every_verdict_and_self_check(tmp_path):
    ns = namespace()
    results = grader_verdicts(ns, tmp_path)
    assert all(r.passed for r in results.values()), {g: r.message for g, r in results.items()
                                                     if not r.passed}
    assert self_check_failures(ns) == set()


@pytest.mark.parametrize("variant", [pytest.param(v, marks=MARK[_exercise(v)])
                                     for v in sorted(PART2_VARIANTS)])
def test_each_mistake_fails_its_cells_in_the_grader_and_the_self_check(variant, tmp_path):
    ns = namespace(variant)
    expected = set(PART2_VARIANTS[variant][1]) - {"attn_accuracy"}
    results = grader_verdicts(ns, tmp_path)
    assert {g for g, r in results.items() if not r.passed} == expected, {
        g: r.message for g, r in results.items() if not r.passed}
    assert self_check_failures(ns) == expected


@pytest.mark.attention
def test_verdicts_name_the_mistake(tmp_path):
    ns = namespace("no_scaling")
    message = grader_verdicts(ns, tmp_path)["attn_equivalence"].message
    assert "sqrt(head_dim)" in message
    ns = namespace("mask_inverted")
    results = grader_verdicts(ns, tmp_path)
    assert "inverted" in results["attn_mask_polarity"].message
    assert "exactly 0" in results["attn_weights"].message


@pytest.mark.attention
def test_forged_outputs_do_not_fool_the_grader():
    """The grader recomputes every expected output from the exported weights on the inputs of
    its own seed: outputs recorded on other inputs, or reported as invariant by a layer whose
    weights compute one that is not, fail."""
    honest = evidence_part2.collect_attention(namespace()["MaskedMultiHeadAttention"], SEED)
    assert part2.verdict("attn_equivalence", honest, {"seed": SEED}).passed
    assert not part2.verdict("attn_equivalence", honest, {"seed": SEED + 1}).passed
    ns = namespace("mask_ignored")
    ev = evidence_part2.collect_attention(ns["MaskedMultiHeadAttention"], SEED)
    ev["out/junk"] = ev["out/mask"]  # claims that junk in the padding changes nothing
    assert check_part2.attention_padding(ev, {}).passed  # the claim alone would pass
    result = part2.verdict("attn_padding", ev, {"seed": SEED})
    assert not result.passed and "exported weights" in result.message


@pytest.mark.attention
@pytest.mark.coattention
@pytest.mark.pairs
def test_evidence_of_an_unexpected_form_gets_a_verdict_not_an_error():
    ns = namespace()
    good = {ex: COLLECT[ex](ns[EXERCISE_OBJECT[ex]], SEED) for ex in COLLECT}
    for grade_id, (exercise, _) in part2.GRADED.items():
        ev = dict(good[exercise])
        for key in [k for k in ev if k.startswith(("state/", "out/", "weights/", "grad/"))]:
            ev[key] = np.array("not an array of numbers")
        ev["params"] = np.array("{not json")
        result = part2.verdict(grade_id, ev, {"seed": SEED, "eval_seed": 1})
        assert not result.passed and result.message, grade_id


@pytest.mark.attention
def test_an_untouched_notebook_gets_reasons_not_errors(tmp_path):
    class Untouched(torch.nn.Module):
        def __init__(self, dim, num_heads=4):
            super().__init__()
            raise NotImplementedError()

    ev = evidence_part2.collect_attention(Untouched, SEED)
    for grade_id, (exercise, _) in part2.GRADED.items():
        if exercise == "attention":
            result = part2.verdict(grade_id, ev, {"seed": SEED, "eval_seed": 1})
            assert not result.passed and "not implemented" in result.message, grade_id


@pytest.mark.attention
def test_wrong_shapes_raise_value_errors_naming_the_expected_shape():
    cls = namespace()["MaskedMultiHeadAttention"]
    layer = cls(32, num_heads=4)
    with pytest.raises(ValueError, match=r"query must have shape \(B, N, 32\), got \(2, 3, 31\)"):
        layer(torch.randn(2, 3, 31), torch.randn(2, 4, 32))
    with pytest.raises(ValueError, match=r"key_padding_mask must have shape \(B, N\) = \(2, 4\)"):
        layer(torch.randn(2, 3, 32), torch.randn(2, 4, 32), torch.zeros(2, 5, dtype=torch.bool))


@pytest.mark.attention
def test_the_evidence_holds_plain_arrays_only(tmp_path):
    ev = evidence_part2.collect_attention(namespace()["MaskedMultiHeadAttention"], SEED)
    path = evidence.save(ev, tmp_path / "e.npz")
    loaded = evidence.load(path)  # allow_pickle=False
    assert set(loaded) == set(ev)
    assert all(isinstance(v, np.ndarray) and v.dtype != object for v in loaded.values())


def test_graded_cells_follow_the_contract():
    """50 points; every graded cell of the master exports its own evidence and has a verdict;
    exactly the accuracy cell trains."""
    graded = graded_cells(ASSIGNMENT)
    assert list(graded) == list(part2.GRADED)
    assert sum(graded.values()) == 50
    master = nbformat.read(REPO_ROOT / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb",
                           as_version=4)
    for cell in master.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in part2.GRADED:
            exercise, name = part2.GRADED[grade_id]
            train = ", train=True" if name == "accuracy" else ""
            call = f'evidence_part2.{exercise}("{grade_id}", {EXERCISE_OBJECT[exercise]}{train})'
            assert call in cell.source, grade_id
            assert ("HIDDEN" in cell.source) != ("visible" in grade_id), grade_id


# ----------------------------------------------------------------------------- accuracy (slow)

@pytest.mark.slow
@pytest.mark.attention
@pytest.mark.parametrize("variant, passes", [(None, True), ("mask_ignored", False),
                                             ("mask_inverted", False)])
def test_accuracy_verdict(variant, passes, tmp_path):
    """One grading seed of the 20 that autograder/measure_part2_thresholds.py measures."""
    ns = namespace(variant)
    result = grader_verdicts(ns, tmp_path, {"attn_accuracy": ("attention", "accuracy")})
    verdict = result["attn_accuracy"]
    assert verdict.passed == passes, verdict.message


@pytest.mark.slow
@pytest.mark.attention
def test_the_grader_evaluates_its_own_questions_with_junk_in_the_padding():
    objects, question, object_mask, question_mask, answer = R.eval_data(3)
    assert object_mask.shape[1] == R.EVAL_SLOTS and object_mask.any()
    assert (objects[object_mask].abs().sum(-1) > 0).all()  # junk, not zeros
    training = evidence_part2.training_data(3)
    assert not torch.equal(training[1][:5], question[:5]) or not torch.equal(
        training[0][:5, :6], objects[:5, :6])
