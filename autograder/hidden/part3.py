"""The trusted verdicts of Part 3 (``source/part3_who_gets_to_speak``), one per graded cell.

Each graded cell writes evidence (``fusionlab.evidence_part3.gmu``, ``tanh_gated_block``,
``modality_dropout``); ``autograder.verdicts`` calls ``verdict`` here, in the grader's process.
The checks are ``fusionlab.check_part3``'s, the very functions of the self-checks; the facts
they compare against (the submodules' outputs, the inputs, the random draws of the dropout
rule) are recomputed by ``reference_part3`` from the exported weights and the grader's seed,
never read from the evidence.

The accuracy cells (``gmu_accuracy``, ``dropout_accuracy``) export the weights of a model trained
in the kernel with the settings of ``fusionlab.evidence_part3`` (``GMU_TRAINING``,
``DROPOUT_TRAINING``); the grader evaluates them in its own reference architecture on data of
its own seed (``eval_seed``), which never leaves the worker. The thresholds are measured by
``python -m autograder.measure_thresholds_part3`` (autograder/README.md).
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
    "gmu_accuracy": ("gmu", "accuracy"),
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
    "dropout_accuracy": ("dropout", "accuracy"),
}
EVAL_SAMPLES = 2000
# GMU: a linear classifier on the unit, trained on the switch task, must be accurate and its
# gate must follow the switch M; a gate that never trains (detached) is accurate enough but
# does not follow M, one stuck on a modality is neither
GMU_ACCURACY_THRESHOLD = 0.90
GMU_CORRELATION_THRESHOLD = 0.6
# modality dropout: early fusion trained with the text dropped must stay accurate with every
# text present, and with every text zeroed answer from the image with a cross-entropy a model
# that never saw a missing text does not reach (it is confidently wrong on many samples)
DROPOUT_COMPLETE_THRESHOLD = 0.90
DROPOUT_MISSING_LOSS_THRESHOLD = 1.09


def _trained_error(ev: dict) -> str | None:
    if "error/trained" in ev:
        return f"the model could not be trained: {check.text(ev, 'error/trained')}"
    if not any(k.startswith("trained/") for k in ev):
        return "the cell exported no trained weights"
    return None


def gmu_accuracy_facts(ev: dict, seed: int, eval_seed: int) -> dict:
    facts = R.gmu_facts(ev, seed)
    reason = _trained_error(ev)
    if reason is None:
        variant = R.gmu_variant(ev, facts)
        if variant is None:
            reason = ("your unit's output matches neither h = z * h_v + (1 - z) * h_t nor a "
                      "known mistake, so its trained weights cannot be evaluated by the grader "
                      "(see gmu_equivalence)")
        else:
            try:
                facts["accuracy"] = R.gmu_trained(ev, variant, eval_seed, EVAL_SAMPLES)
            except R.WeightsError as error:
                reason = f"the trained weights do not fit FusionClassifier(your unit, 2): {error}"
    if reason is not None:
        facts["accuracy"] = reason
    return facts


def dropout_accuracy_facts(ev: dict, seed: int, eval_seed: int) -> dict:
    facts = R.dropout_facts(ev, seed)
    reason = _trained_error(ev)
    if reason is None:
        try:
            facts["accuracy"] = R.dropout_trained(ev, eval_seed, EVAL_SAMPLES)
        except R.WeightsError as error:
            reason = str(error)
    if reason is not None:
        facts["accuracy"] = reason
    return facts


def _measured(facts: dict):
    result = facts.get("accuracy")
    if result is None:
        raise check.Skip("the accuracy is measured by the grader only")
    return result


def gmu_accuracy(ev, facts) -> check.CheckResult:
    result = _measured(facts)
    if isinstance(result, str):
        return check.CheckResult("accuracy", False, result)
    acc, corr = result
    what = "a linear classifier on your GMU, trained on the switch task,"
    if not acc >= GMU_ACCURACY_THRESHOLD:  # also catches NaN
        return check.CheckResult("accuracy", False, f"{what} reached {acc:.3f} on the grader's "
                                 f"switch data, below the required {GMU_ACCURACY_THRESHOLD:.2f}")
    if not corr >= GMU_CORRELATION_THRESHOLD:
        return check.CheckResult("accuracy", False, (
            f"{what} reached {acc:.3f}, but its gate does not follow the switch M: corr(z, M) = "
            f"{corr:.2f}, below {GMU_CORRELATION_THRESHOLD} (does the gate train? z must stay "
            "in the graph; only last_gate is detached)"))
    return check.CheckResult("accuracy", True, f"{what} reached {acc:.3f} on the grader's "
                             f"switch data (required {GMU_ACCURACY_THRESHOLD:.2f}) and its gate "
                             f"follows M: corr(z, M) = {corr:.2f}")


def dropout_accuracy(ev, facts) -> check.CheckResult:
    result = _measured(facts)
    if isinstance(result, str):
        return check.CheckResult("accuracy", False, result)
    what = "early fusion trained with your modality_dropout on the text"
    complete, missing, loss = (result[k] for k in ("complete", "text_missing",
                                                   "text_missing_loss"))
    if not complete >= DROPOUT_COMPLETE_THRESHOLD:  # also catches NaN
        return check.CheckResult("accuracy", False, (
            f"{what} reached {complete:.3f} with every text present, below the required "
            f"{DROPOUT_COMPLETE_THRESHOLD:.2f}: is the text dropped for far more than a "
            "fraction p of the samples?"))
    if not loss <= DROPOUT_MISSING_LOSS_THRESHOLD:
        return check.CheckResult("accuracy", False, (
            f"with every text zeroed, {what} has a cross-entropy of {loss:.3f} on the grader's "
            f"data (accuracy {missing:.3f}), above the required {DROPOUT_MISSING_LOSS_THRESHOLD}:"
            " it did not learn to answer from the image alone, as a model trained without "
            "modality dropout"))
    return check.CheckResult("accuracy", True, (
        f"{what}: accuracy {complete:.3f} with every text present; with every text zeroed, "
        f"accuracy {missing:.3f} and cross-entropy {loss:.3f} (required <= "
        f"{DROPOUT_MISSING_LOSS_THRESHOLD})"))


CHECKS = {"gmu": {**C.GMU, "accuracy": gmu_accuracy}, "block": C.BLOCK,
          "dropout": {**C.DROPOUT, "accuracy": dropout_accuracy}}
FACTS = {"gmu": R.gmu_facts, "block": R.block_facts, "dropout": R.dropout_facts}
ACCURACY_FACTS = {"gmu": gmu_accuracy_facts, "dropout": dropout_accuracy_facts}


def verdict(grade_id: str, ev: dict, request: dict) -> check.CheckResult:
    """The verdict of graded cell ``grade_id`` on its evidence; never raises."""
    exercise, name = GRADED[grade_id]
    try:
        if name == "accuracy":
            facts = ACCURACY_FACTS[exercise](ev, request["seed"], request["eval_seed"])
        else:
            facts = FACTS[exercise](ev, request["seed"])
    except Exception as error:  # noqa: BLE001 (evidence of an unexpected form)
        return check.CheckResult(name, False, f"the evidence could not be read: "
                                 f"{type(error).__name__}: {error}")
    return check.run_one(CHECKS[exercise], name, ev, facts)
