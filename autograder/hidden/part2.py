"""The trusted verdicts of Part 2 (``source/part2_attention_that_selects``), one per graded
cell.

Each graded cell writes evidence (``fusionlab.evidence_part2.attention``, ``coattention``,
``pairs``);
``autograder.verdicts`` calls ``verdict`` here, in the grader's process. The checks are
``fusionlab.check_part2``'s, the very functions of the self-checks; the facts they compare
against (the reference ``CrossAttentionLayer`` and ``CoAttentionBlock`` and each known mistake,
loaded with the exported weights and run on the inputs of the grader's seed) are recomputed
here, never read from the evidence, and the accuracy of the trained weights is measured by
``reference_part2`` on questions of the grader's own ``eval_seed``.
"""

from __future__ import annotations

from fusionlab import check
from fusionlab import check_part2 as C

from . import reference_part2 as R

# grade_id -> (exercise, check name)
GRADED = {
    "attn_visible_shape": ("attention", "shapes"),
    "attn_attributes": ("attention", "attributes"),
    "attn_equivalence": ("attention", "equivalence"),
    "attn_weights": ("attention", "weights"),
    "attn_padding": ("attention", "padding"),
    "attn_mask_polarity": ("attention", "mask_polarity"),
    "attn_order": ("attention", "order"),
    "attn_gradients": ("attention", "gradients"),
    "attn_accuracy": ("attention", "accuracy"),
    "coatt_visible_shape": ("coattention", "shapes"),
    "coatt_attributes": ("coattention", "attributes"),
    "coatt_equivalence": ("coattention", "equivalence"),
    "coatt_padding": ("coattention", "padding"),
    "coatt_gradients": ("coattention", "gradients"),
    "pairs_visible_shape": ("pairs", "shapes"),
    "pairs_sum": ("pairs", "sum"),
    "pairs_padding": ("pairs", "padding"),
}


def facts(exercise: str, ev: dict, request: dict, trains: bool) -> dict:
    """The grader's facts for ``ev``: from the exported weights and the request's seeds."""
    checks, compute = C.EXERCISES[exercise]
    result = compute(ev, request["seed"])
    if trains:
        result["accuracy"] = R.accuracy(ev, result, request["eval_seed"])
    return result


def verdict(grade_id: str, ev: dict, request: dict) -> check.CheckResult:
    """The verdict of graded cell ``grade_id`` on its evidence; never raises."""
    exercise, name = GRADED[grade_id]
    try:
        found = facts(exercise, ev, request, trains=name == "accuracy")
    except Exception as error:  # noqa: BLE001 (evidence of an unexpected form)
        return check.CheckResult(name, False, f"the evidence could not be read: "
                                 f"{type(error).__name__}: {error}")
    return check.run_one(C.EXERCISES[exercise][0], name, ev, found)
