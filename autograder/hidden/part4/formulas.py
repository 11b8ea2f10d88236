"""Part 4's reference formulas, run only by the grader (and by the tool that writes the
self-checks' known answers). Never shipped in ``fusionlab``: a student could call them.

Each ``*_VARIANTS`` table holds the reference (``"reference"``) and each known mistake (named as
in ``fusionlab.part4.exercises.MISTAKES``), so that a verdict can say which one a submission's
outputs match.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=-1)


# ----------------------------------------------------------------------------- InfoNCE

def _clip(image, text, logit_scale, *, directions="both", scale="exp", normalize=True,
          combine="mean", reduction="mean"):
    if normalize:
        image, text = _unit(image), _unit(text)
    factor = {"exp": logit_scale.exp(), "twice": logit_scale.exp() ** 2, "raw": logit_scale,
              "divide": 1 / logit_scale.exp()}[scale]
    logits = factor * image @ text.T  # (B, B)
    targets = torch.arange(len(logits))
    image_to_text = F.cross_entropy(logits, targets, reduction=reduction)
    text_to_image = F.cross_entropy(logits.T, targets, reduction=reduction)
    if directions == "image":
        return image_to_text
    if directions == "text":
        return text_to_image
    total = image_to_text + text_to_image
    return total / 2 if combine == "mean" else total


CLIP_VARIANTS = {
    "reference": lambda i, t, s: _clip(i, t, s),
    "image_to_text_only": lambda i, t, s: _clip(i, t, s, directions="image"),
    "text_to_image_only": lambda i, t, s: _clip(i, t, s, directions="text"),
    "temperature_twice": lambda i, t, s: _clip(i, t, s, scale="twice"),
    "no_exp": lambda i, t, s: _clip(i, t, s, scale="raw"),
    "divides_by_scale": lambda i, t, s: _clip(i, t, s, scale="divide"),
    "not_normalized": lambda i, t, s: _clip(i, t, s, normalize=False),
    "summed_directions": lambda i, t, s: _clip(i, t, s, combine="sum"),
    "summed_over_batch": lambda i, t, s: _clip(i, t, s, reduction="sum"),
}


# ----------------------------------------------------------------------------- sigmoid

def _siglip(image, text, logit_scale, logit_bias, *, divide="batch", bias=True, labels="signs",
            scale="exp"):
    image, text = _unit(image), _unit(text)
    factor = logit_scale.exp() if scale == "exp" else logit_scale
    logits = factor * image @ text.T + (logit_bias if bias else 0.0)  # (B, B)
    eye = torch.eye(len(logits))
    z = 2 * eye - 1 if labels == "signs" else eye
    total = -F.logsigmoid(z * logits).sum()
    return total / (len(logits) if divide == "batch" else logits.numel())


SIGLIP_VARIANTS = {
    "reference": lambda i, t, s, b: _siglip(i, t, s, b),
    "pairs_mean": lambda i, t, s, b: _siglip(i, t, s, b, divide="pairs"),
    "no_bias": lambda i, t, s, b: _siglip(i, t, s, b, bias=False),
    "zero_one_labels": lambda i, t, s, b: _siglip(i, t, s, b, labels="zero_one"),
    "siglip_no_exp": lambda i, t, s, b: _siglip(i, t, s, b, scale="raw"),
}


# ----------------------------------------------------------------------------- recall@K

def _ranks(similarity: torch.Tensor, ties: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(rank of each image's caption in its row, of each caption's image in its column)."""
    true = similarity.diagonal()
    if ties == "against":
        return (similarity >= true[:, None]).sum(1), (similarity >= true[None, :]).sum(0)
    if ties == "for":
        return (similarity > true[:, None]).sum(1) + 1, (similarity > true[None, :]).sum(0) + 1
    # "index": a stable sort, the lower index first among equal similarities
    n = len(similarity)
    rows = torch.argsort(similarity, dim=1, descending=True, stable=True)
    cols = torch.argsort(similarity.T, dim=1, descending=True, stable=True)
    target = torch.arange(n)[:, None]
    return (rows == target).float().argmax(1) + 1, (cols == target).float().argmax(1) + 1


def _recall(similarity, k, *, ties="against", swap=False, strict=False, same=False,
            ignore_k=False):
    rank_i, rank_t = _ranks(similarity, ties)
    k = 1 if ignore_k else k
    hit = (lambda r: r < k) if strict else (lambda r: r <= k)
    i2t, t2i = hit(rank_i).float().mean().item(), hit(rank_t).float().mean().item()
    if same:
        t2i = i2t
    return (t2i, i2t) if swap else (i2t, t2i)


RECALL_VARIANTS = {
    "reference": lambda s, k: _recall(s, k),
    "swapped_directions": lambda s, k: _recall(s, k, swap=True),
    "optimistic_ties": lambda s, k: _recall(s, k, ties="for"),
    "index_ties": lambda s, k: _recall(s, k, ties="index"),
    "off_by_one": lambda s, k: _recall(s, k, strict=True),
    "ignores_k": lambda s, k: _recall(s, k, ignore_k=True),
    "same_direction_twice": lambda s, k: _recall(s, k, same=True),
}


# ----------------------------------------------------------------------------- zero-shot

def _zero_shot(image, prompts, *, image_unit=True, prompt_unit=True, class_unit=True,
               pool="mean"):
    if prompt_unit:
        prompts = _unit(prompts)  # (C, P, E)
    if image_unit:
        image = _unit(image)
    if pool == "first":
        classes = prompts[:, 0]
    elif pool == "max":
        return torch.einsum("be,cpe->bcp", image, _unit(prompts)).amax(dim=-1)
    else:
        classes = prompts.mean(dim=1)
    if class_unit:
        classes = _unit(classes)
    return image @ classes.T  # (B, C)


ZERO_SHOT_VARIANTS = {
    "reference": lambda i, p: _zero_shot(i, p),
    "image_not_normalized": lambda i, p: _zero_shot(i, p, image_unit=False),
    "prompts_not_normalized": lambda i, p: _zero_shot(i, p, prompt_unit=False),
    "class_not_renormalized": lambda i, p: _zero_shot(i, p, class_unit=False),
    "first_prompt_only": lambda i, p: _zero_shot(i, p, pool="first"),
    "max_over_prompts": lambda i, p: _zero_shot(i, p, pool="max"),
    "dot_product": lambda i, p: _zero_shot(i, p, image_unit=False, prompt_unit=False,
                                           class_unit=False),
}


def zero_shot_predictions(image_emb, prompt_emb) -> torch.Tensor:
    """The reference classifier's predicted classes (what the accuracy cells score)."""
    return _zero_shot(torch.as_tensor(image_emb), torch.as_tensor(prompt_emb)).argmax(dim=1)
