"""Part 4's measurements, shared by the notebook, the claim tests and their measurement script.

Every function that needs a loss, recall@K or the zero-shot classifier takes it as an
argument: in the notebook those are the student's own TODOs, in the tests the master's
solutions. Nothing here computes them itself.

Settings (``MAIN``, ``SWEEP``, ...) are plain ``ContrastiveConfig``s, so that the notebook, the
tests and ``tests/part4/measure.py`` train exactly the same runs.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..train import TrainConfig, accuracy, fit
from ..utils import seed_everything
from .data import DigitCaptions, matching_pairs, prompt_tokens
from .models import (
    SIGLIP_BIAS,
    SIGLIP_TEMPERATURE,
    DualEncoder,
    ImageEncoder,
    MatchingModel,
    TextEncoder,
)
from .train import ContrastiveConfig, embed, fit_contrastive

MAIN = ContrastiveConfig(epochs=20, lr=1e-3, batch_size=64, progress=False)
# the number of negatives: batches of 128, the loss over groups of each size
SWEEP = ContrastiveConfig(epochs=20, lr=1e-3, batch_size=128, progress=False)
GROUP_SIZES = (2, 4, 8, 16, 32, 64, 128)
SIGLIP = dict(temperature=SIGLIP_TEMPERATURE, bias=SIGLIP_BIAS)  # SigLIP's initial t and b
GALLERY = 100  # retrieval among this many pairs at a time
KS = (1, 5)
PROBE = TrainConfig(epochs=60, lr=1e-2, batch_size=64, progress=False)
MATCHING = TrainConfig(epochs=30, lr=1e-3, batch_size=32, progress=False)
MATCHING_TEST_PAIRS = 1000
CLAMP_PAIRS = 64  # the clamp's demonstration: this many pairs with different captions ...
MEMORIZE = ContrastiveConfig(epochs=300, lr=1e-3, batch_size=CLAMP_PAIRS, progress=False)


def train_dual_encoder(loss_fn: Callable, train: DigitCaptions, seed: int,
                       config: ContrastiveConfig = MAIN, **model_kwargs):
    """A ``DualEncoder(**model_kwargs)`` built after ``seed_everything(seed)`` and trained on
    ``train`` with ``loss_fn``; returns ``(model, history)``."""
    seed_everything(seed)
    model = DualEncoder(**model_kwargs)
    history = fit_contrastive(model, train, loss_fn, config, seed=seed)
    return model, history


# ----------------------------------------------------------------------------- evaluation

def zero_shot_accuracy(model: DualEncoder, data: DigitCaptions, zero_shot_fn: Callable,
                       prompts: torch.Tensor | None = None) -> float:
    """Accuracy of ``zero_shot_fn(image_emb, prompt_emb).argmax(1)`` on ``data``'s images;
    ``prompts``: word ids ``(10, P, L)`` (default: every prompt of ``data.PROMPTS``)."""
    prompts = prompt_tokens() if prompts is None else prompts
    image_emb, prompt_emb = embed(model, data.images, prompts)
    scores = zero_shot_fn(image_emb, prompt_emb)  # (N, 10)
    return (scores.argmax(dim=1) == data.labels).float().mean().item()


def prompt_accuracies(model: DualEncoder, data: DigitCaptions, zero_shot_fn: Callable):
    """(accuracy with each single prompt ``(P,)``, with their ensemble)."""
    prompts = prompt_tokens()
    image_emb, prompt_emb = embed(model, data.images, prompts)
    single = torch.tensor([
        (zero_shot_fn(image_emb, prompt_emb[:, p:p + 1]).argmax(1) == data.labels).float().mean()
        for p in range(prompt_emb.shape[1])])
    ensemble = (zero_shot_fn(image_emb, prompt_emb).argmax(1) == data.labels).float().mean()
    return single, ensemble.item()


def similarity(model: DualEncoder, data: DigitCaptions, rows=slice(None)) -> torch.Tensor:
    """Cosine similarities ``(n, n)`` of ``data``'s images (rows) and captions (columns)."""
    image_emb, text_emb = embed(model, data.images[rows], data.tokens[rows], normalize=True)
    return image_emb @ text_emb.T


def oracle_similarity(data: DigitCaptions, rows=slice(None), seed: int = 0) -> torch.Tensor:
    """What a perfect reader of the captions could do: 1 where an image has the digit and the
    stroke width a caption states, 0 elsewhere, plus a tiny random number that breaks the
    ties (a caption cannot tell apart the images it fits)."""
    cell = data.labels[rows] * 2 + data.thick[rows].long()
    g = torch.Generator().manual_seed(seed)
    same = (cell[:, None] == cell[None, :]).float()
    return same + 1e-3 * torch.rand(same.shape, generator=g)


def retrieval(sim_of: Callable, data: DigitCaptions, recall_fn: Callable,
              gallery: int = GALLERY, ks: Sequence[int] = KS) -> dict[str, float]:
    """Recall@K in both directions among galleries of ``gallery`` pairs (the first
    ``len(data) // gallery`` of them), averaged: ``{"image→text R@1": ..., ...}``.
    ``sim_of(rows)`` gives the similarity matrix of those pairs."""
    out = {f"{d} R@{k}": 0.0 for k in ks for d in ("image→text", "text→image")}
    count = len(data) // gallery
    for g in range(count):
        sim = sim_of(slice(g * gallery, (g + 1) * gallery))
        for k in ks:
            i2t, t2i = recall_fn(sim, k)
            out[f"image→text R@{k}"] += float(i2t) / count
            out[f"text→image R@{k}"] += float(t2i) / count
    return out


def linear_probe(model: DualEncoder, train: DigitCaptions, test: DigitCaptions,
                 seed: int, config: TrainConfig = PROBE) -> float:
    """Test accuracy of a linear classifier trained on the labelled, normalised image
    embeddings of ``train`` (the supervised baseline of zero-shot)."""
    train_emb = embed(model, train.images, normalize=True)
    test_emb = embed(model, test.images, normalize=True)
    seed_everything(seed)
    probe = nn.Linear(train_emb.shape[1], 10)
    history = fit(probe, (train_emb, train.labels), (test_emb, test.labels), config, seed=seed)
    return history.final_acc


def modality_gap(model: DualEncoder, data: DigitCaptions) -> float:
    """Liang et al.'s gap: the distance between the centres of the normalised image and text
    embeddings, ``|| mean(x_i) - mean(y_i) ||`` (0 when the clouds share a centre, at most 2)."""
    image_emb, text_emb = embed(model, data.images, data.tokens, normalize=True)
    return (image_emb.mean(0) - text_emb.mean(0)).norm().item()


def mean_similarity(model: DualEncoder, data: DigitCaptions) -> dict[str, float]:
    """Mean cosine similarity of the matching pairs, and of all image-caption pairs."""
    sim = similarity(model, data)
    return {"pairs": sim.diagonal().mean().item(), "all": sim.mean().item()}


# ----------------------------------------------------------------------------- sweeps

def negatives_sweep(loss_fn: Callable, train: DigitCaptions, test: DigitCaptions,
                    recall_fn: Callable, zero_shot_fn: Callable, seeds: Sequence[int],
                    group_sizes: Sequence[int] = GROUP_SIZES,
                    config: ContrastiveConfig = SWEEP, progress=None, **model_kwargs) -> dict:
    """For each group size (each pair's negatives + 1): per seed, the mean recall@5 of both
    directions and the zero-shot accuracy after training with ``loss_fn``. Returns
    ``{group_size: {"recall@5": [...], "zero-shot": [...]}}``; ``progress(done)`` is called
    after each run."""
    results = {}
    for group in group_sizes:
        runs = {"recall@5": [], "zero-shot": []}
        for seed in seeds:
            model, _ = train_dual_encoder(loss_fn, train, seed, replace(config, group_size=group),
                                          **model_kwargs)
            r = retrieval(lambda rows, m=model: similarity(m, test, rows), test, recall_fn,
                          ks=(5,))
            runs["recall@5"].append((r["image→text R@5"] + r["text→image R@5"]) / 2)
            runs["zero-shot"].append(zero_shot_accuracy(model, test, zero_shot_fn))
            if progress is not None:
                progress(1)
        results[group] = runs
    return results


# ----------------------------------------------------------------------------- the clamp

def distinct_pairs(data: DigitCaptions, count: int) -> DigitCaptions:
    """The first ``count`` pairs of ``data`` whose captions all differ (no two alike)."""
    first = {}
    for i, caption in enumerate(data.captions):
        first.setdefault(caption, i)
    rows = sorted(first.values())[:count]
    if len(rows) < count:
        raise ValueError(f"only {len(rows)} different captions, {count} requested")
    return data.subset(rows)


def separated(image_emb: torch.Tensor, text_emb: torch.Tensor) -> bool:
    """Whether every pair is the most similar entry of its row and of its column."""
    sim = F.normalize(image_emb, dim=-1) @ F.normalize(text_emb, dim=-1).T
    target = torch.arange(len(sim))
    return bool((sim.argmax(1) == target).all() and (sim.argmax(0) == target).all())


SCALES = tuple(float(v) for v in torch.logspace(0, 3, 31))  # 1 to 1000


@torch.no_grad()
def loss_against_scale(loss_fn: Callable, image_emb: torch.Tensor, text_emb: torch.Tensor,
                       scales: Sequence[float] = SCALES) -> list[float]:
    """The loss of fixed embeddings at each scale ``exp(logit_scale)`` of ``scales``, computed
    in float64 (float32 rounds a loss below about 1e-38 to 0, and the curve would stop)."""
    image_emb, text_emb = image_emb.double(), text_emb.double()
    return [float(loss_fn(image_emb, text_emb, torch.tensor(math.log(s), dtype=torch.float64)))
            for s in scales]


# ----------------------------------------------------------------------------- align, then fuse

def matching_model(aligned: DualEncoder | None, seed: int) -> MatchingModel:
    """A ``MatchingModel`` built after ``seed_everything(seed)``: on copies of ``aligned``'s
    encoders, kept frozen (only the fusion block and the head learn), or, with ``None``, on new
    encoders that learn with it (from scratch)."""
    seed_everything(seed)
    if aligned is None:
        return MatchingModel(ImageEncoder(), TextEncoder())
    model = MatchingModel(copy.deepcopy(aligned.image_encoder),
                          copy.deepcopy(aligned.text_encoder))
    for encoder in (model.image_encoder, model.text_encoder):
        encoder.requires_grad_(False)
    return model


def matching_accuracy(model: MatchingModel, train: DigitCaptions, test: DigitCaptions,
                      labelled: int, seed: int, config: TrainConfig = MATCHING) -> float:
    """Train ``model`` on ``labelled`` matching pairs drawn from ``train`` (with ``seed``);
    its accuracy on ``MATCHING_TEST_PAIRS`` pairs of ``test`` (always the same ones)."""
    fit(model, matching_pairs(train, labelled, seed), None, config, seed=seed)
    return accuracy(model, matching_pairs(test, MATCHING_TEST_PAIRS, seed=12345))


def align_before_fuse(aligned: Sequence[DualEncoder], train: DigitCaptions,
                      test: DigitCaptions, labelled: Sequence[int], seeds: Sequence[int],
                      config: TrainConfig = MATCHING, progress=None) -> dict:
    """``{(start, labelled): [accuracy per seed]}`` for ``start`` in ``"aligned"`` (the frozen
    encoders of ``aligned[i]`` for ``seeds[i]``) and ``"scratch"`` (new encoders, trained)."""
    results = {}
    for n in labelled:
        for start in ("aligned", "scratch"):
            runs = []
            for seed, dual in zip(seeds, aligned):
                model = matching_model(dual if start == "aligned" else None, seed)
                runs.append(matching_accuracy(model, train, test, n, seed, config))
                if progress is not None:
                    progress(1)
            results[(start, n)] = runs
    return results
