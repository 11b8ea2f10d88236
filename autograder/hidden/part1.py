"""The trusted verdicts of Part 1 (``source/part1_fusion_strategies``), one per graded cell.

Each graded cell of the notebook writes evidence (``fusionlab.evidence``); after the notebook
ran, ``autograder.verdicts`` calls ``verdict`` here, in the grader's process, for every cell.
The checks are ``fusionlab.check``'s (the same functions the self-checks run); the facts they
compare against are computed here by the reference formulas (``reference_part1``) on the
student's exported weights and the grader's inputs:

- equivalence: the reference on the exported weights, and each known mistake, to say which one
  the submission's outputs match;
- attributes: names and shapes of the exported ``state_dict``; each submodule's exported
  output against a fresh reference layer loaded with the same weights;
- gradients and NaN: recomputed by the grader for an implementation whose outputs match the
  reference or a known mistake, read from the evidence for any other;
- accuracy: the architecture the outputs match, loaded with the exported trained weights,
  evaluated on XOR data the kernel never saw (``eval_seed``).

The thresholds are measured by ``python -m autograder.measure_thresholds``
(autograder/README.md, "Accuracy thresholds").
"""

from __future__ import annotations

import numpy as np
import torch

from fusionlab import check
from fusionlab import evidence as E
from fusionlab.data import MultimodalDataset

from . import reference_part1 as R

BIDIR_ACCURACY_THRESHOLD = 0.90
GATED_ACCURACY_THRESHOLD = 0.90
EVAL_SAMPLES = 500

# grade_id -> (exercise, check name, the cell trains the model)
GRADED = {
    "bidir_visible_shape": ("bidirectional", "visible_shape", False),
    "bidir_attributes": ("bidirectional", "attributes", False),
    "bidir_shapes": ("bidirectional", "shapes", False),
    "bidir_equivalence": ("bidirectional", "equivalence", False),
    "bidir_gradients": ("bidirectional", "gradients", False),
    "bidir_no_nan": ("bidirectional", "no_nan", False),
    "bidir_accuracy": ("bidirectional", "accuracy", True),
    "gated_visible_shape": ("gated", "visible_shape", False),
    "gated_gate_init": ("gated", "gate", False),
    "gated_shapes": ("gated", "shapes", False),
    "gated_equivalence": ("gated", "equivalence", False),
    "gated_gate_gradient": ("gated", "gate_gradient", False),
    "gated_accuracy": ("gated", "accuracy", True),
}


def _state(ev: dict, prefix: str = "state/") -> dict:
    return {k[len(prefix):]: np.asarray(v) for k, v in ev.items() if k.startswith(prefix)}


def _t(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float32))


def _outputs(variants: dict, compute) -> dict[str, dict]:
    """name -> outputs of each variant that applies to these inputs (a mistake such as
    swapped queries and keys raises for token counts that differ)."""
    outputs = {}
    for name, f in variants.items():
        try:
            outputs[name] = compute(f)
        except RuntimeError:
            if name == "reference":
                raise
    return outputs


def _match(ev: dict, outputs: dict[str, dict]) -> str | None:
    """The variant whose outputs the evidence matches on every recorded key, if any."""
    for name, outs in outputs.items():
        if outs and all(key in ev and check.close(ev[key], out) for key, out in outs.items()):
            return name
    return None


# ----------------------------------------------------------------------------- bidirectional

def bidirectional_facts(ev: dict, seed: int, eval_seed: int | None = None) -> dict:
    """Expected values for the bidirectional checks, from the exported weights."""
    x = E.bidirectional_inputs(seed)
    state = _state(ev)
    facts: dict = {"expected": {}, "mistakes": {}}
    with torch.no_grad():
        for attr in R.ATTENTION:
            try:
                layer = R.attention_layer(state, f"{attr}.", E.DIM, E.HEADS)
                facts["expected"][f"sub/{attr}"] = layer(x["sub/query"], x["sub/kv"]).numpy()
            except R.WeightsError:
                pass
        for attr in R.NORMS:
            try:
                facts["expected"][f"sub/{attr}"] = R.layer_norm(state, f"{attr}.", E.DIM)(
                    x["sub/query"]).numpy()
            except R.WeightsError:
                pass
        try:
            parts = R.bidir_parts(state, E.DIM, E.HEADS)
        except R.WeightsError as error:
            facts["unavailable"] = f"the exported weights do not fit the interface: {error}"
            facts["accuracy"] = ("the trained layer cannot be evaluated: its weights do not fit "
                                 f"the interface ({error})")
            return facts
        outputs = _outputs(R.BIDIR_VARIANTS, lambda f: {
            "out/eq": f(parts, x["eq/img"], x["eq/txt"]).numpy()})
    facts["expected"]["out/eq"] = outputs["reference"]["out/eq"]
    facts["mistakes"] = {k: v for k, v in outputs.items() if k != "reference"}
    identified = _match(ev, outputs)
    if identified is not None:
        params = check._json(ev, "params", [])
        facts["grad_reach"] = {a: a in R.BIDIR_USES[identified] and any(
            p.startswith(f"{a}.") for p in params) for a in R.ATTENTION + R.NORMS}
    if eval_seed is not None:
        facts["accuracy"] = _bidir_accuracy(ev, identified, eval_seed)
    return facts


def _eval_data(eval_seed: int):
    return MultimodalDataset(n_samples=EVAL_SAMPLES, seed=eval_seed, interaction="xor").tensors()


def _bidir_accuracy(ev: dict, identified: str | None, eval_seed: int):
    if "error/trained" in ev:
        return ("the classifier on your layer could not be trained: "
                f"{check.text(ev, 'error/trained')}")
    if identified is None:
        return ("your layer's output matches neither the reference nor a known mistake, so its "
                "trained weights cannot be evaluated by the grader (see bidir_equivalence)")
    trained = _state(ev, "trained/")
    try:
        parts = R.bidir_parts(trained, E.DIM, E.HEADS, prefix="bidirectional.")
        img_w, img_b = _t(trained["img_proj.weight"]), _t(trained["img_proj.bias"])
        txt_w, txt_b = _t(trained["txt_proj.weight"]), _t(trained["txt_proj.bias"])
        classifier = R.mlp_classifier(trained, "classifier.", E.DIM, 2)
    except (R.WeightsError, KeyError) as error:
        return f"the trained weights do not fit the classifier around your layer: {error}"
    img, txt, labels = _eval_data(eval_seed)
    with torch.no_grad():
        img_embed = torch.nn.functional.linear(img, img_w, img_b).unsqueeze(1)  # (B, 1, E)
        txt_embed = torch.nn.functional.linear(txt, txt_w, txt_b).unsqueeze(1)
        logits = classifier(R.BIDIR_VARIANTS[identified](parts, img_embed, txt_embed))
    acc = float((logits.argmax(dim=1) == labels).float().mean())
    return acc, BIDIR_ACCURACY_THRESHOLD, "a classifier trained on your layer"


# ----------------------------------------------------------------------------- gated

def _gate_value(ev: dict, state: dict):
    if "gate" in state:
        return state["gate"]
    return np.asarray(ev["attr/gate"]) if "attr/gate" in ev else None


def gated_facts(ev: dict, seed: int, eval_seed: int | None = None) -> dict:
    """Expected values for the gated checks, from the exported weights."""
    s = E.GATED_SIZES
    x = E.gated_inputs(seed)
    state = _state(ev)
    facts: dict = {"expected": {}, "mistakes": {}}
    try:
        with torch.no_grad():
            facts["expected"]["sub/classifier"] = R.mlp_classifier(
                state, "classifier.", s["embed_dim"], s["num_classes"])(x["sub/z"]).numpy()
    except R.WeightsError:
        pass
    gate = _gate_value(ev, state)
    try:
        if gate is None or np.asarray(gate).shape != (1,):
            raise R.WeightsError("no gate of shape (1,)")
        parts = R.gated_parts(state, s["img_dim"], s["txt_dim"], s["embed_dim"],
                              s["num_classes"], gate=gate)
    except R.WeightsError as error:
        facts["unavailable"] = f"the exported weights do not fit the interface: {error}"
        facts["accuracy"] = f"the trained model cannot be evaluated: {error}"
        return facts
    uneven = torch.full((1,), E.UNEVEN_GATE)
    with torch.no_grad():
        outputs = _outputs(R.GATED_VARIANTS, lambda f: {
            "out/eq": f(parts, x["eq/img"], x["eq/txt"]).numpy(),
            "out/eq_uneven_gate": f(parts, x["eq/img"], x["eq/txt"], uneven).numpy()})
    facts["expected"].update(outputs["reference"])
    facts["mistakes"] = {k: v for k, v in outputs.items() if k != "reference"}
    identified = _match(ev, outputs)
    if identified is not None:
        is_param = "gate" in check._json(ev, "params", [])
        facts["grad_reach"] = {"gate": is_param and R.GATED_USES_GATE[identified]}
    if eval_seed is not None:
        facts["accuracy"] = _gated_accuracy(ev, identified, eval_seed)
    return facts


def _gated_accuracy(ev: dict, identified: str | None, eval_seed: int):
    s = E.GATED_SIZES
    if "error/trained" in ev:
        return f"your model could not be trained: {check.text(ev, 'error/trained')}"
    trained = _state(ev, "trained/")
    try:
        gate = _gate_value(ev, trained)
        parts = R.gated_parts(trained, s["img_dim"], s["txt_dim"], s["embed_dim"], 2, gate=gate)
    except (R.WeightsError, TypeError, ValueError) as error:
        return f"the trained model does not fit the reference architecture: {error}"
    if identified is None:
        return ("your model's output matches neither the reference nor a known mistake, so its "
                "trained weights cannot be evaluated by the grader (see gated_equivalence)")
    img, txt, labels = _eval_data(eval_seed)
    with torch.no_grad():
        logits = R.GATED_VARIANTS[identified](parts, img, txt)
    acc = float((logits.argmax(dim=1) == labels).float().mean())
    return acc, GATED_ACCURACY_THRESHOLD, "your GatedFusionModel"


# ----------------------------------------------------------------------------- verdicts

def visible_shape(exercise: str):
    def run(ev, facts) -> check.CheckResult:
        if exercise == "bidirectional":
            d, B, n_img, n_txt = E.BIDIR_SHAPE_CASES[0]
            expected, inputs = (B, d), f"image and text inputs {(B, n_img, d)}"
        else:
            classes, B = E.GATED_SHAPE_CASES[0]
            s = E.GATED_SIZES
            expected = (B, classes)
            inputs = f"inputs {(B, s['img_dim'])} and {(B, s['txt_dim'])}"
        out = check._output(ev, "out/shape0", f"the call on {inputs}")
        shape = tuple(out.shape)
        return check.CheckResult("visible_shape", shape == expected,
                                 f"expected shape {expected} for {inputs}, got {shape}"
                                 if shape != expected else f"shape {expected}")
    return run


CHECKS = {
    "bidirectional": {**check.BIDIRECTIONAL, "visible_shape": visible_shape("bidirectional")},
    "gated": {**check.GATED, "visible_shape": visible_shape("gated")},
}
FACTS = {"bidirectional": bidirectional_facts, "gated": gated_facts}


def verdict(grade_id: str, ev: dict, request: dict) -> check.CheckResult:
    """The verdict of graded cell ``grade_id`` on its evidence; never raises."""
    exercise, name, trains = GRADED[grade_id]
    try:
        facts = FACTS[exercise](ev, request["seed"], request["eval_seed"] if trains else None)
    except Exception as error:  # noqa: BLE001 (evidence of an unexpected form)
        return check.CheckResult(name, False, f"the evidence could not be read: "
                                 f"{type(error).__name__}: {error}")
    return check.run_one(CHECKS[exercise], name, ev, facts)
