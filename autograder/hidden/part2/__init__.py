"""The trusted side of Part 2's exercises (``fusionlab.part2.exercises``).

- **attention**: ``attention_facts`` compute, from the weights the clean room exported and the
  inputs of the grading seed, what the reference and each known mistake output (``variants``)
  and the gradients each sends back on those weights (``grads``); the self-check's known answers
  are the same facts on known weights (``attention_known_weights``). The accuracy cell is
  scored on the grader's own questions: the clean room trains ``SceneCrossAttention`` on the
  student's attention and answers them; the answers (labels) stay here.
- **coattention**: judged on the student's own blocks, from the clean room's evidence alone
  (the formula applied to the block's two directions): no facts.
- **pairs**: the inputs of the grading seed (its checks are properties).

The known mistakes are in ``mistakes``; the formulas in ``formulas``.
"""

from __future__ import annotations

import numpy as np
import torch

from fusionlab.grading.results import prefixed
from fusionlab.grading.seeds import SELF_CHECK_SEED, Stream, derive
from fusionlab.grading.toolkit import projection_loss
from fusionlab.part2.exercises import CONFIG, attention_inputs, binding_data, pairs_facts

from ..references import Evaluation, Reference, register
from . import formulas as F
from .mistakes import ATTENTION_MISTAKES, COATTENTION_MISTAKES, PAIRS_MISTAKES

# ----------------------------------------------------------------------------- facts


def attention_facts(ev: dict, seed: int) -> dict:
    """Expected values for the attention checks, from the exported weights."""
    d, h = CONFIG.dim, CONFIG.heads
    x = attention_inputs(seed)
    q, kv, mask = x["query"], x["kv"], x["mask"]
    facts: dict = {"qperm": x["qperm"].numpy()}
    state = prefixed(ev, "state/")
    try:
        layers = {name: F.attention_from_weights(state, d, h, name)
                  for name in F.ATTENTION_VARIANTS}
    except F.WeightsError as error:
        facts["unavailable"] = f"the exported weights do not fit the interface: {error}"
        return facts
    facts["variants"], facts["grads"] = {}, {}
    for name, layer in layers.items():
        with torch.no_grad():
            facts["variants"][name] = {"out/plain": layer(q, kv).numpy(),
                                       "out/mask": layer(q, kv, mask).numpy()}
        loss = projection_loss(layer(q, kv, mask), x["grad/projection"], seed, "attention")
        facts["grads"][name] = F.gradients(layer, loss)
    return facts


def coattention_facts(ev: dict, seed: int) -> dict:
    """None: the co-attention checks apply the formula to the student's own blocks, as the
    clean room recorded them (a mistake in TODO 1 is not counted again in TODO 2)."""
    return {}


# ----------------------------------------------------------------------------- known answers

def attention_known_weights() -> dict[str, np.ndarray]:
    """The self-check's weights: a fresh layer's draws under the self-check seed."""
    torch.manual_seed(SELF_CHECK_SEED)
    layer = F.MaskedAttention(CONFIG.dim, CONFIG.heads)
    return {key: value.numpy() for key, value in layer.state_dict().items()}


# ----------------------------------------------------------------------------- accuracy

def binding_evaluation(eval_seed: int):
    """The grader's questions: "what shape is X" about scenes of ``CONFIG.eval_objects``
    objects in ``CONFIG.eval_slots`` slots, each padded slot holding the token of a random
    object (a colour, a position, a shape), as a stale buffer would. A layer that masks its
    padding does not notice; one that reads it is misled by objects that are not in the scene.
    Returns the inputs for the clean room and the answers, which stay here."""
    from fusionlab.part2.scenes import COLORS, OBJECT_DIM, SHAPES, X_FEATURE

    objects, question, object_mask, question_mask, answer = binding_data(
        eval_seed, CONFIG.eval_scenes, CONFIG.eval_objects, CONFIG.eval_slots)
    g = torch.Generator().manual_seed(derive(eval_seed, "attention", Stream.INPUTS))
    n, slots = objects.shape[:2]
    junk = torch.zeros(n, slots, OBJECT_DIM)
    colour = torch.randint(len(COLORS), (n, slots), generator=g)
    shape = torch.randint(len(SHAPES), (n, slots), generator=g)
    junk[..., : len(COLORS)] = torch.nn.functional.one_hot(colour, len(COLORS)).float()
    junk[..., X_FEATURE : X_FEATURE + 2] = torch.rand(n, slots, 2, generator=g)
    junk[..., X_FEATURE + 2 :] = torch.nn.functional.one_hot(shape, len(SHAPES)).float()
    objects = torch.where(object_mask[..., None], junk, objects)
    inputs = {"objects": objects.numpy(), "question": question.numpy(),
              "object_mask": object_mask.numpy(), "question_mask": question_mask.numpy()}
    return inputs, answer.numpy()


def binding_score(trained: dict, labels) -> dict | str:
    """The accuracy of the trained model's answers (``trained["logits"]``)."""
    from fusionlab.part2.scenes import NUM_ANSWERS

    what = "SceneCrossAttention trained on your attention"
    logits = trained.get("logits")
    if logits is None or np.shape(logits) != (len(labels), NUM_ANSWERS):
        return (f"{what} gave no answer logits of shape ({len(labels)}, {NUM_ANSWERS}) for the "
                f"grader's questions, got {None if logits is None else np.shape(logits)}")
    acc = float((np.argmax(logits, axis=1) == labels).mean()) if np.isfinite(
        logits).all() else float("nan")
    return {"accuracy": acc, "threshold": CONFIG.accuracy_threshold, "what": what,
            "data": f'"what shape is X" questions ({CONFIG.eval_objects[1]} objects in '
                    f"{CONFIG.eval_slots} slots, junk in the padded ones)"}


register(
    Reference("attention", attention_facts, Evaluation(binding_evaluation, binding_score),
              ATTENTION_MISTAKES, attention_known_weights),
    Reference("coattention", coattention_facts, variants=COATTENTION_MISTAKES),
    Reference("pairs", pairs_facts, variants=PAIRS_MISTAKES),
)
