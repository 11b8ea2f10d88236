"""The trusted verdicts of Part 3 (``source/part3_who_gets_to_speak``), one per graded cell.

Each graded cell writes evidence (``fusionlab.evidence_part3.gmu``, ``tanh_gated_block``,
``modality_dropout``); ``autograder.verdicts`` calls ``verdict`` here, in the grader's process.
The checks are ``fusionlab.check_part3``'s, the very functions of the self-checks; the facts
they compare against (the submodules' outputs, the inputs, the random draws of the dropout
rule) are recomputed by ``reference_part3`` from the exported weights and the grader's seed,
never read from the evidence.
"""

from __future__ import annotations

from fusionlab import check
from fusionlab import check_part3 as C

from . import reference_part3 as R

# grade_id -> (exercise, check name)
GRADED = {
    "gmu_visible_shape": ("gmu", "shapes"),
    "gmu_attributes": ("gmu", "attributes"),
    "gmu_equivalence": ("gmu", "equivalence"),
    "gmu_last_gate": ("gmu", "last_gate"),
    "block_visible_identity": ("block", "identity_at_init"),
    "block_attributes": ("block", "attributes"),
    "block_alpha_gradient": ("block", "alpha_gradient"),
    "block_equivalence": ("block", "equivalence"),
    "block_mask": ("block", "mask"),
    "dropout_visible_returns": ("dropout", "returns"),
    "dropout_rule": ("dropout", "rule"),
    "dropout_rate": ("dropout", "rate"),
    "dropout_replacement": ("dropout", "replacement"),
    "dropout_tokens": ("dropout", "tokens"),
}
CHECKS = {"gmu": C.GMU, "block": C.BLOCK, "dropout": C.DROPOUT}
FACTS = {"gmu": R.gmu_facts, "block": R.block_facts, "dropout": R.dropout_facts}


def verdict(grade_id: str, ev: dict, request: dict) -> check.CheckResult:
    """The verdict of graded cell ``grade_id`` on its evidence; never raises."""
    exercise, name = GRADED[grade_id]
    try:
        facts = FACTS[exercise](ev, request["seed"])
    except Exception as error:  # noqa: BLE001 (evidence of an unexpected form)
        return check.CheckResult(name, False, f"the evidence could not be read: "
                                 f"{type(error).__name__}: {error}")
    return check.run_one(CHECKS[exercise], name, ev, facts)
