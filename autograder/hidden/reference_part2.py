"""The grader-only part of Part 2's verdicts (``autograder.hidden.part2``): the accuracy of the
weights trained in the kernel, measured on questions the kernel never saw.

The accuracy cell trains ``SceneCrossAttention(attention=<the student's class>)`` on the "what
shape is X" questions of the grading seed (``fusionlab.evidence_part2.TRAINING``) and exports
the trained ``state_dict``. Here those weights are loaded into the same architecture built on
the attention variant the student's outputs match (``fusionlab.check_part2``'s reference
``CrossAttentionLayer``, or a known mistake such as the ignored mask), never on the student's
class, and evaluated on ``EVAL_SCENES`` scenes of the grader's own seed (``eval_seed``): 2
objects (``EVAL_OBJECTS``; the training scenes hold 3 to 6 in 6 slots) in 8 slots, and junk in
every padded slot: the token of a random object (a colour, a position, a shape), as a stale
buffer would hold. A layer that masks its padding does not notice; one that reads the padding
is misled by objects that are not in the scene.

The threshold is measured by ``python -m autograder.measure_part2_thresholds``
(autograder/README.md, "Accuracy thresholds").
"""

from __future__ import annotations

import numpy as np
import torch

from fusionlab import check_part2 as C
from fusionlab import evidence_part2 as E
from fusionlab.check import text
from fusionlab.scene_models import SceneCrossAttention
from fusionlab.train import accuracy as model_accuracy

ACCURACY_THRESHOLD = 0.90
EVAL_SCENES = 3000  # about 500 "what shape is X" questions
EVAL_OBJECTS = (2, 2)  # objects per scene, min and max
EVAL_SLOTS = 8  # so 6 padded slots, each holding junk


def eval_data(eval_seed: int):
    """The grader's questions: ``(objects, question, object_mask, question_mask, answer)``,
    the padded slots filled with random object tokens."""
    from fusionlab.scenes import COLORS, OBJECT_DIM, SHAPES, X_FEATURE

    objects, *rest = E.binding_data(eval_seed, EVAL_SCENES, EVAL_OBJECTS, EVAL_SLOTS)
    g = torch.Generator().manual_seed(eval_seed)
    n, slots = objects.shape[:2]
    junk = torch.zeros(n, slots, OBJECT_DIM)
    colour = torch.randint(len(COLORS), (n, slots), generator=g)
    shape = torch.randint(len(SHAPES), (n, slots), generator=g)
    junk[..., : len(COLORS)] = torch.nn.functional.one_hot(colour, len(COLORS)).float()
    junk[..., X_FEATURE : X_FEATURE + 2] = torch.rand(n, slots, 2, generator=g)
    junk[..., X_FEATURE + 2 :] = torch.nn.functional.one_hot(shape, len(SHAPES)).float()
    object_mask = rest[1]
    objects = torch.where(object_mask[..., None], junk, objects)
    return (objects, *rest)


def trained_model(ev: dict, variant: str) -> SceneCrossAttention:
    """``SceneCrossAttention`` on the attention ``variant``, loaded with the trained weights;
    raises ValueError when they do not fit."""
    t = E.TRAINING
    model = SceneCrossAttention(embed_dim=t["embed_dim"], num_heads=t["num_heads"],
                                attention=C.ATTENTION_VARIANTS[variant])
    weights = {k[len("trained/"):]: torch.as_tensor(np.asarray(v, dtype=np.float32))
               for k, v in ev.items() if k.startswith("trained/")}
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as error:
        raise ValueError(" ".join(str(error).split())[:300]) from None
    return model.eval()


def accuracy(ev: dict, facts: dict, eval_seed: int):
    """(accuracy, threshold, what), or the reason the trained weights cannot be evaluated."""
    if "error/trained" in ev:
        return f"SceneCrossAttention on your attention could not be trained: " \
               f"{text(ev, 'error/trained')}"
    if "unavailable" in facts:
        return f"the trained model cannot be evaluated: {facts['unavailable']}"
    variant = facts.get("identified")
    if variant is None:
        return ("your attention's output matches neither the reference nor a known mistake, so "
                "the grader cannot evaluate its trained weights (see attn_equivalence)")
    try:
        model = trained_model(ev, variant)
    except ValueError as error:
        return f"the trained weights do not fit SceneCrossAttention: {error}"
    acc = model_accuracy(model, eval_data(eval_seed))
    return acc, ACCURACY_THRESHOLD, "SceneCrossAttention trained on your attention"
