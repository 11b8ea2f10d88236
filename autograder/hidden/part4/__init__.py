"""The trusted side of Part 4's exercises (``fusionlab.part4.exercises``).

Every TODO of Part 4 is a function, so ``facts`` run the reference formulas (and each known
mistake's, ``formulas.*_VARIANTS``) on the inputs the grading seed draws: the outputs
(``variants``) and, for the losses, the gradients each formula sends back (``grads``). The
accuracy cells are scored on the grader's own split of the digits: the clean room trains a
dual encoder with the student's loss on the grader's pairs and embeds the held-out images and
the prompts; the labels stay here. ``*_MISTAKES`` are the known mistakes, as a student would
write them.

The self-checks' known answers are these facts at ``SELF_CHECK_SEED`` (a function has no
weights to load: ``known_weights`` is empty).
"""

from __future__ import annotations

import numpy as np
import torch

from fusionlab.part4.exercises import (
    CONFIG,
    LOSS_INPUTS,
    WORKED_IMAGES,
    WORKED_LOGIT_BIAS,
    WORKED_LOGIT_SCALE,
    WORKED_SIMILARITY,
    WORKED_TEXTS,
    clip_inputs,
    recall_inputs,
    siglip_inputs,
    training_pairs,
    zero_shot_inputs,
)

from ..references import Evaluation, Reference, Variant, register
from . import formulas as F


def _array(value) -> np.ndarray:
    return np.asarray(value.detach().numpy() if isinstance(value, torch.Tensor) else value,
                      dtype=np.float32)


# ----------------------------------------------------------------------------- facts

def _loss_facts(x: dict, variants: dict, names: tuple[str, ...]) -> dict:
    bias = len(names) == 4

    def args(case, requires_grad=False):
        keys = ("image", "text", "scale") + (("bias",) if bias else ())
        return [x[f"{case}/{k}"].clone().requires_grad_(requires_grad) for k in keys]

    worked = [torch.tensor(WORKED_IMAGES), torch.tensor(WORKED_TEXTS),
              torch.tensor(WORKED_LOGIT_SCALE)] + ([torch.tensor(WORKED_LOGIT_BIAS)] if bias
                                                   else [])
    facts: dict = {"variants": {}, "grads": {}}
    for name, f in variants.items():
        with torch.no_grad():
            facts["variants"][name] = {"out/worked": _array(f(*worked)),
                                       **{f"out/{c}": _array(f(*args(c))) for c in ("eq0", "eq1")}}
        inputs = args("eq1", requires_grad=True)
        f(*inputs).backward()
        facts["grads"][name] = {n: _array(a.grad) for n, a in zip(names, inputs)}
    return facts


def clip_facts(ev: dict, seed: int) -> dict:
    return _loss_facts(clip_inputs(seed), F.CLIP_VARIANTS, LOSS_INPUTS["clip_loss"])


def siglip_facts(ev: dict, seed: int) -> dict:
    return _loss_facts(siglip_inputs(seed), F.SIGLIP_VARIANTS, LOSS_INPUTS["siglip_loss"])


def recall_facts(ev: dict, seed: int) -> dict:
    x = recall_inputs(seed)
    variants = {}
    for name, f in F.RECALL_VARIANTS.items():
        outs = {"out/worked": np.array(f(torch.tensor(WORKED_SIMILARITY), 1))}
        for i, (_, k) in enumerate(CONFIG.recall_cases):
            outs[f"out/rand{i}"] = np.array(f(x[f"rand{i}"], k))
        for i, (_, k) in enumerate(CONFIG.tie_cases):
            outs[f"out/ties{i}"] = np.array(f(x[f"ties{i}"], k))
        variants[name] = outs
    return {"variants": variants}


def zero_shot_facts(ev: dict, seed: int) -> dict:
    x = zero_shot_inputs(seed)
    return {"variants": {name: {f"out/{key}": _array(f(x[f"{key}/image"], x[f"{key}/prompts"]))
                                for key in ("eq", "pred")}
                         for name, f in F.ZERO_SHOT_VARIANTS.items()}}


# ----------------------------------------------------------------------------- accuracy

def zero_shot_score(what: str, threshold: float):
    def score(trained: dict, labels) -> dict | str:
        image_emb, prompt_emb = trained.get("image_emb"), trained.get("prompt_emb")
        if image_emb is None or prompt_emb is None or len(image_emb) != len(labels) or \
                np.ndim(prompt_emb) != 3:
            return f"{what} gave no embeddings of the grader's images and prompts"
        if not (np.isfinite(image_emb).all() and np.isfinite(prompt_emb).all()):
            acc = float("nan")
        else:
            predicted = F.zero_shot_predictions(image_emb, prompt_emb).numpy()
            acc = float((predicted == labels).mean())
        return {"accuracy": acc, "threshold": threshold, "what": what,
                "data": "held-out digits (zero-shot)"}

    return score


# ----------------------------------------------------------------------------- known mistakes

def _filler(template: str, **defaults: str):
    """``source(**parts)``: ``template`` written with ``defaults``, any of them replaced by a
    keyword of ``parts`` (the reference's source, or a mistake's)."""

    def source(**parts: str) -> str:
        unknown = set(parts) - set(defaults)
        if unknown:
            raise TypeError(f"no part named {', '.join(sorted(unknown))}")
        return template.format(**{**defaults, **parts})

    return source


def _declarer(exercise: str, write):
    """``declare(name, description, loses, example=False, threshold=False, source=None,
    **parts)``: a known mistake of ``exercise`` (the TODO defines a function of the same name),
    its source given whole or written by ``write(**parts)``."""

    def declare(name, description, loses, example=False, threshold=False, source=None,
                **parts) -> Variant:
        return Variant(name, exercise, {exercise: source or write(**parts)}, tuple(loses),
                       description, example, threshold)

    return declare


_CLIP = '''\
def clip_loss(image_emb, text_emb, logit_scale):
    image_emb = {image}
    text_emb = {text}
    logits = {logits}
    targets = torch.arange(len(logits))
    image_to_text = F.cross_entropy(logits, targets{reduction})
    text_to_image = F.cross_entropy(logits.T, targets{reduction})
    return {result}
'''
_NORMALIZED = ("F.normalize(image_emb, dim=-1)", "F.normalize(text_emb, dim=-1)")


def clip_src(logits="logit_scale.exp() * image_emb @ text_emb.T",
             result="(image_to_text + text_to_image) / 2", normalized=True,
             reduction="") -> str:
    image, text = _NORMALIZED if normalized else ("image_emb", "text_emb")
    return _CLIP.format(image=image, text=text, logits=logits, result=result,
                        reduction=reduction)


_NAIVE_CLIP = '''\
def clip_loss(image_emb, text_emb, logit_scale):
    image_emb = F.normalize(image_emb, dim=-1)
    text_emb = F.normalize(text_emb, dim=-1)
    logits = logit_scale.exp() * image_emb @ text_emb.T
    diagonal = torch.exp(logits.diagonal())
    image_to_text = -torch.log(diagonal / torch.exp(logits).sum(dim=1)).mean()
    text_to_image = -torch.log(diagonal / torch.exp(logits).sum(dim=0)).mean()
    return (image_to_text + text_to_image) / 2
'''

_CLIP_CELLS = ("clip_visible_value", "clip_equivalence")


_clip = _declarer("clip_loss", clip_src)


CLIP_MISTAKES = (
    _clip("image_to_text_only", "one direction only: the image-to-text cross-entropy",
          _CLIP_CELLS + ("clip_symmetric",), example=True, threshold=True,
          result="image_to_text"),
    _clip("text_to_image_only", "one direction only: the text-to-image cross-entropy",
          _CLIP_CELLS + ("clip_symmetric",), result="text_to_image"),
    _clip("temperature_twice", "the scale applied twice", _CLIP_CELLS, example=True,
          threshold=True, logits="logit_scale.exp() * (logit_scale.exp() * image_emb @ "
                                 "text_emb.T)"),
    _clip("no_exp", "logit_scale used as the scale, without exp", _CLIP_CELLS, threshold=True,
          logits="logit_scale * image_emb @ text_emb.T"),
    _clip("not_normalized", "the embeddings are not normalised (the worked example's are unit "
          "vectors already)", ("clip_equivalence",), threshold=True, normalized=False),
    _clip("summed_directions", "the two directions added, not averaged", _CLIP_CELLS,
          result="image_to_text + text_to_image"),
    _clip("summed_over_batch", "the cross-entropies summed over the batch", _CLIP_CELLS,
          reduction=', reduction="sum"'),
    _clip("naive_softmax", "softmax written with exp and log: overflows at a scale of 100",
          ("clip_stable",), source=_NAIVE_CLIP),
    _clip("scale_detached", "the scale taken out of the graph with .item()",
          ("clip_gradients",), threshold=True,
          logits="logit_scale.exp().item() * image_emb @ text_emb.T"),
    _clip("returns_none", "computes the loss but does not return it",
          ("clip_visible_value", "clip_equivalence", "clip_symmetric", "clip_stable",
           "clip_gradients", "clip_accuracy"), result="None"),
)

_SIGLIP = '''\
def siglip_loss(image_emb, text_emb, logit_scale, logit_bias):
    image_emb = F.normalize(image_emb, dim=-1)
    text_emb = F.normalize(text_emb, dim=-1)
    logits = {logits}
    labels = {labels}
    return {result}
'''


siglip_src = _filler(_SIGLIP, logits="logit_scale.exp() * image_emb @ text_emb.T + logit_bias",
                     labels="2 * torch.eye(len(logits)) - 1",
                     result="-F.logsigmoid(labels * logits).sum() / len(logits)")


_SIGLIP_CELLS = ("siglip_visible_value", "siglip_equivalence")


_siglip = _declarer("siglip_loss", siglip_src)


# Two mistakes are recognised by name (formulas.CLIP_VARIANTS, SIGLIP_VARIANTS) but declared
# nowhere here: a CLIP loss that divides by the scale, and a sigmoid loss without its bias, train
# to 0.54-0.87 and 0.26-0.95 over 20 grading seeds (python -m autograder.authoring.thresholds
# part4): which side of the threshold they land on depends on the seed, so no declaration of
# their lost cells could hold. The equivalence cells (and, without the bias, the gradients)
# catch them always.
SIGLIP_MISTAKES = (
    _siglip("pairs_mean", "the mean over all B * B pairs", _SIGLIP_CELLS, threshold=True,
            result="-F.logsigmoid(labels * logits).mean()"),
    _siglip("zero_one_labels", "labels 0 and 1 in the +-1 formula: the negatives teach nothing",
            _SIGLIP_CELLS + ("siglip_accuracy",), threshold=True,
            labels="torch.eye(len(logits))"),
    _siglip("siglip_no_exp", "logit_scale used as the scale, without exp: a scale of 2.3 "
            "against a bias of -10", _SIGLIP_CELLS + ("siglip_accuracy",), threshold=True,
            logits="logit_scale * image_emb @ text_emb.T + logit_bias"),
    _siglip("naive_log_sigmoid", "log(sigmoid(x)): -inf for a logit of -110",
            ("siglip_stable",), result="-torch.log(torch.sigmoid(labels * logits)).sum() / "
                                       "len(logits)"),
)

_RECALL = '''\
def recall_at_k(similarity, k):
    true = similarity.diagonal()
    image_rank = {image_rank}
    text_rank = {text_rank}
    image_to_text = {hit_i}.float().mean().item()
    text_to_image = {hit_t}.float().mean().item()
    return {result}
'''
_RANK_I = "(similarity >= true[:, None]).sum(dim=1)"
_RANK_T = "(similarity >= true[None, :]).sum(dim=0)"


recall_src = _filler(_RECALL, image_rank=_RANK_I, text_rank=_RANK_T, hit_i="(image_rank <= k)",
                     hit_t="(text_rank <= k)", result="image_to_text, text_to_image")


_INDEX_TIES = '''\
def recall_at_k(similarity, k):
    n = len(similarity)
    target = torch.arange(n)[:, None]
    best_texts = similarity.argsort(dim=1, descending=True, stable=True)[:, :k]
    best_images = similarity.T.argsort(dim=1, descending=True, stable=True)[:, :k]
    image_to_text = (best_texts == target).any(dim=1).float().mean().item()
    text_to_image = (best_images == target).any(dim=1).float().mean().item()
    return image_to_text, text_to_image
'''


_recall = _declarer("recall_at_k", recall_src)


RECALL_MISTAKES = (
    _recall("swapped_directions", "image_to_text and text_to_image swapped",
            ("recall_visible_value", "recall_image_to_text", "recall_text_to_image"),
            result="text_to_image, image_to_text"),
    _recall("optimistic_ties", "a tie counts for the true match (> instead of >=)",
            ("recall_visible_value", "recall_ties"),
            image_rank="(similarity > true[:, None]).sum(dim=1) + 1",
            text_rank="(similarity > true[None, :]).sum(dim=0) + 1"),
    _recall("index_ties", "ties broken by position (a stable sort)",
            ("recall_visible_value", "recall_ties"), source=_INDEX_TIES),
    _recall("off_by_one", "rank < k instead of rank <= k",
            ("recall_visible_value", "recall_image_to_text", "recall_text_to_image",
             "recall_ties"), hit_i="(image_rank < k)", hit_t="(text_rank < k)"),
    _recall("ignores_k", "a hit only when the true match is the best",
            ("recall_image_to_text", "recall_text_to_image", "recall_ties"),
            hit_i="(image_rank <= 1)", hit_t="(text_rank <= 1)"),
    _recall("same_direction_twice", "the image-to-text recall returned twice",
            ("recall_visible_value", "recall_text_to_image"),
            result="image_to_text, image_to_text"),
)

_ZERO_SHOT = '''\
def zero_shot_scores(image_emb, prompt_emb):
    prompts = {prompts}
    classes = {classes}
    return {scores}
'''


zero_shot_src = _filler(_ZERO_SHOT, prompts="F.normalize(prompt_emb, dim=-1)",
                        classes="F.normalize(prompts.mean(dim=1), dim=-1)",
                        scores="F.normalize(image_emb, dim=-1) @ classes.T")


_zero_shot = _declarer("zero_shot_scores", zero_shot_src)


ZERO_SHOT_MISTAKES = (
    _zero_shot("image_not_normalized", "the image embeddings not normalised",
               ("zeroshot_equivalence", "zeroshot_invariance"),
               scores="image_emb @ classes.T"),
    _zero_shot("prompts_not_normalized", "the prompts averaged before they are normalised",
               ("zeroshot_equivalence", "zeroshot_invariance", "zeroshot_predictions"),
               prompts="prompt_emb"),
    _zero_shot("class_not_renormalized", "the mean of the prompts not normalised again",
               ("zeroshot_equivalence", "zeroshot_predictions"),
               classes="prompts.mean(dim=1)"),
    _zero_shot("first_prompt_only", "only the first prompt of each class",
               ("zeroshot_equivalence", "zeroshot_predictions"), classes="prompts[:, 0]"),
    _zero_shot("dot_product", "nothing normalised",
               ("zeroshot_equivalence", "zeroshot_invariance", "zeroshot_predictions"),
               prompts="prompt_emb", classes="prompts.mean(dim=1)",
               scores="image_emb @ classes.T"),
)


def _no_weights() -> dict:
    return {}


_CLIP_EVALUATION = Evaluation(training_pairs, zero_shot_score(
    "a dual encoder trained with your clip_loss", CONFIG.clip_threshold))
_SIGLIP_EVALUATION = Evaluation(training_pairs, zero_shot_score(
    "a dual encoder trained with your siglip_loss", CONFIG.siglip_threshold))

register(
    Reference("clip_loss", clip_facts, _CLIP_EVALUATION, CLIP_MISTAKES, _no_weights),
    Reference("recall_at_k", recall_facts, None, RECALL_MISTAKES, _no_weights),
    Reference("zero_shot_scores", zero_shot_facts, None, ZERO_SHOT_MISTAKES, _no_weights),
    Reference("siglip_loss", siglip_facts, _SIGLIP_EVALUATION, SIGLIP_MISTAKES, _no_weights),
)
