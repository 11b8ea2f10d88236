"""Part 4's graded exercises, one ``Exercise`` each (``fusionlab.grading.registry``; the graded
cells in ``exercises.toml``):

1. ``clip_loss``: CLIP's symmetric InfoNCE with a learnable temperature;
2. ``recall_at_k``: retrieval recall@K in both directions, ties counted against the match;
3. ``zero_shot_scores``: the zero-shot classifier with prompt ensembling;
4. ``siglip_loss``: SigLIP's pairwise sigmoid loss with its learnable bias.

Each TODO is a function, so the evidence is what the function returns on inputs drawn from the
seed (``<exercise>_inputs``), and for the two losses the gradients it sends back and, for the
accuracy cells, a dual encoder trained with it (``train_*``). The checks' facts are the
reference's outputs on the same inputs: stored known answers in the self-check (computed by
``python -m autograder.authoring.known_answers`` at ``SELF_CHECK_SEED``), recomputed by the grader
(``autograder.hidden.part4``) from the grading seed. Every facts dict has the same keys:

- ``variants``: ``{variant: {output key: array}}``, the reference (``"reference"``) and each
  known mistake (worded in ``MISTAKES``), so that a verdict can name the mistake;
- ``grads``: ``{variant: {input: gradient}}`` of the loss exercises;
- ``accuracy``: the grader's zero-shot measurement (accuracy cells only).

Some checks need no reference at all: a symmetric loss gives the same value with the images
and captions swapped, and a zero-shot score cannot depend on the lengths of the embeddings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..grading.checks import accuracy, identified
from ..grading.known import KnownAnswers
from ..grading.registry import Declarations, register
from ..grading.results import (
    CheckResult,
    Skip,
    close,
    function_implemented,
    output,
    prefixed,
    shape_text,
    text,
)
from ..grading.seeds import Stream, derive, generator
from ..grading.toolkit import (
    describe_error,
    function_collector,
    function_status,
    isolated,
    record,
    to_array,
)

ASSIGNMENT = "part4_align_before_fuse"


@dataclass(frozen=True)
class Part4Config:
    """The sizes and settings the grader and the self-checks use for Part 4's exercises."""

    # (B, E) of the loss shape cases
    loss_shape_cases: tuple = ((1, 4), (3, 8), (6, 16))
    # (B, classes, prompts, E) of the zero-shot shape cases
    zero_shot_shape_cases: tuple = ((1, 2, 1, 4), (5, 10, 3, 8), (4, 3, 7, 16))
    recall_cases: tuple = ((9, 1), (9, 3), (12, 2), (10, 5))  # (N, k), random, without ties
    tie_cases: tuple = ((8, 1), (8, 2), (10, 3), (7, 2))  # (N, k), symmetric, with ties
    # the accuracy cells: a DualEncoder trained with the loss, zero-shot on held-out digits
    training: dict = field(default_factory=lambda: dict(epochs=15, lr=1e-3, batch_size=64))
    clip_threshold: float = 0.75  # measured: python -m autograder.authoring.thresholds part4
    siglip_threshold: float = 0.75


CONFIG = Part4Config()
KNOWN = KnownAnswers(__package__)
TOLERANCE = 1e-4  # a loss sums many exponentials: float32 rounding reaches 1e-5 relative

# The worked examples of the notebook: the visible tests' inputs.
WORKED_IMAGES = ((1.0, 0.0), (0.0, 1.0))
WORKED_TEXTS = ((0.8, 0.6), (0.0, 1.0))
WORKED_LOGIT_SCALE = math.log(2.0)  # a temperature of 0.5
WORKED_LOGIT_BIAS = -1.0
WORKED_SIMILARITY = ((0.9, 0.2, 0.9), (0.1, 0.5, 0.7), (0.3, 0.4, 0.8))

# What each known mistake looks like, in words (the grader holds the formulas).
MISTAKES = {
    "image_to_text_only": "the loss has the image-to-text direction only: add the "
                          "text-to-image cross-entropy (over the columns, logits.T) and take the "
                          "mean of the two",
    "text_to_image_only": "the loss has the text-to-image direction only: add the "
                          "image-to-text cross-entropy (over the rows) and take the mean of the "
                          "two",
    "temperature_twice": "the scale is applied twice: multiply the cosine similarities by "
                         "logit_scale.exp() once",
    "no_exp": "logit_scale is used as the scale itself: it is the log of the scale, so "
              "multiply by logit_scale.exp()",
    "divides_by_scale": "the similarities are divided by the scale: exp(logit_scale) is 1 / "
                        "temperature, so multiply by it",
    "not_normalized": "the embeddings are not normalised: divide each row by its length "
                      "(F.normalize(x, dim=-1)) before the dot products",
    "summed_directions": "the two directions are added: take their mean, (loss_i + loss_t) / 2",
    "summed_over_batch": "the cross-entropies are summed over the batch: take the mean over "
                         "the pairs",
    "swapped_directions": "the two recalls are swapped: image_to_text ranks the captions of each "
                          "image (a row), text_to_image the images of each caption (a column)",
    "optimistic_ties": "a tie counts for the match: a candidate with the same similarity as the "
                       "true match ranks above it (count similarities >= the match's)",
    "off_by_one": "the rank is off by one: the true match is found when its rank is at most k "
                  "(rank 1 is the best)",
    "ignores_k": "k is ignored: a query is a hit when its true match is among its k best "
                 "candidates, not only the best one",
    "same_direction_twice": "both numbers are the image-to-text recall: text_to_image ranks the "
                            "images of each caption (a column)",
    "index_ties": "ties are broken by position (a sort or topk): a candidate with the same "
                  "similarity as the true match counts as ranked above it, wherever it is",
    "image_not_normalized": "the image embeddings are not normalised: the scores must be cosine "
                            "similarities",
    "prompts_not_normalized": "the prompt embeddings are averaged before they are normalised: "
                              "normalise each prompt, then average, then normalise the mean",
    "class_not_renormalized": "the mean of the normalised prompts is not normalised again: a "
                              "class whose prompts agree would get a longer vector",
    "first_prompt_only": "only the first prompt of each class is used: average all of them",
    "max_over_prompts": "the best prompt per class is taken: average the normalised prompts "
                        "into one class embedding",
    "dot_product": "nothing is normalised: normalise the images, each prompt and each class "
                   "mean",
    "pairs_mean": "the loss is averaged over all B * B pairs: SigLIP sums over the pairs and "
                  "divides by the batch size B",
    "no_bias": "the bias is missing: logits = exp(logit_scale) * cos + logit_bias",
    "zero_one_labels": "the labels are 0 and 1: in -log sigmoid(z * logits) the label z is +1 "
                       "for a pair and -1 for every other image-caption combination",
    "siglip_no_exp": "logit_scale is used as the scale itself: multiply by logit_scale.exp()",
}


# ----------------------------------------------------------------------------- inputs

def _uneven(g: torch.Generator, *shape) -> torch.Tensor:
    """Random vectors of uneven lengths (0.1 to 5): normalising them matters."""
    x = torch.randn(*shape, generator=g)
    return x * (0.1 + 4.9 * torch.rand(*shape[:-1], 1, generator=g))


def _loss_inputs(seed: int, exercise: str) -> dict[str, torch.Tensor]:
    g = generator(seed, exercise, Stream.INPUTS)
    x: dict[str, torch.Tensor] = {}
    for i, (B, E) in enumerate(CONFIG.loss_shape_cases):
        x[f"shape{i}/image"], x[f"shape{i}/text"] = torch.randn(B, E, generator=g), \
            torch.randn(B, E, generator=g)
        x[f"shape{i}/scale"] = torch.tensor(math.log(1 / 0.07))
        x[f"shape{i}/bias"] = torch.tensor(-10.0)
    x["eq0/image"], x["eq0/text"] = _uneven(g, 8, 16), _uneven(g, 8, 16)
    x["eq0/scale"] = torch.tensor(math.log(1 / 0.07))
    x["eq1/image"], x["eq1/text"] = _uneven(g, 5, 8), _uneven(g, 5, 8)
    x["eq1/scale"] = 0.5 + 2.0 * torch.rand((), generator=g)
    # at the clamp, exp(logit_scale) = 100: a naive softmax or sigmoid overflows there
    unit = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    x["stable/image"], x["stable/text"] = 5.0 * unit, 0.2 * unit
    x["stable/scale"] = torch.tensor(math.log(100.0))
    for key in ("eq0", "eq1", "stable"):
        x[f"{key}/bias"] = -10.0 + 12.0 * torch.rand((), generator=g)
    x["stable/bias"] = torch.tensor(-10.0)
    x["stable_neg/image"], x["stable_neg/text"] = 5.0 * unit, -0.2 * unit  # anti-aligned pairs
    x["stable_neg/scale"], x["stable_neg/bias"] = torch.tensor(math.log(100.0)), \
        torch.tensor(-10.0)
    return x


def clip_inputs(seed: int) -> dict[str, torch.Tensor]:
    """The inputs the ``clip_loss`` evidence is collected on (the grader recomputes them)."""
    return _loss_inputs(seed, "clip_loss")


def siglip_inputs(seed: int) -> dict[str, torch.Tensor]:
    """The inputs the ``siglip_loss`` evidence is collected on."""
    return _loss_inputs(seed, "siglip_loss")


def _random_similarity(g: torch.Generator, n: int, k: int, directions_differ: bool = False):
    """Random similarities without ties, rows of different levels (so that the two directions
    differ), and image 0 whose caption ranks exactly k in its row, caption 0 whose image ranks
    exactly k in its column: recall@k counts them, a rule that counts rank < k or rank 1 only
    does not. With ``directions_differ`` every image's caption is the best of its row while
    caption 1's image is not the best of its column, so that recall@1 differs between the two
    directions whatever the draw."""
    s = torch.randn(n, n, generator=g) + 0.8 * torch.randn(n, 1, generator=g)
    s = s + torch.diag(0.5 * torch.randn(n, generator=g))
    others = -10.0 - torch.rand(n, generator=g)  # below any match
    above = torch.zeros(n, dtype=torch.bool)
    above[2:k + 1] = True  # k - 1 candidates above the match (none of them is 1)
    s[0, :] = torch.where(above, torch.tensor(20.0), others)
    s[:, 0] = s[0, :]
    s[0, 0] = 10.0
    if directions_differ:
        def best_of_its_row(i):
            s[i, i] = torch.cat([s[i, :i], s[i, i + 1:]]).max() + 0.5

        for i in range(1, n):  # each image's own caption is the best of its row
            best_of_its_row(i)
        s[2, 1] = s[1, 1] + 1.0  # image 2 beats image 1 for caption 1 ...
        best_of_its_row(2)  # ... and its own caption still beats caption 1 for image 2
    return s


def _tie_similarity(g: torch.Generator, n: int, k: int) -> torch.Tensor:
    """A symmetric matrix of quarters (exact ties everywhere; both directions agree), with two
    witnesses: image 0's caption ties with the k captions after it, so it ranks k + 1 when a
    tie counts against the match and 1 otherwise; image n - 1's caption ties with the k - 1
    captions before it, so it ranks exactly k."""
    s = torch.randint(0, 4, (n, n), generator=g).float() / 4  # 0, 0.25, 0.5, 0.75
    s = torch.maximum(s, s.T)
    s[0, 0], s[0, 1:k + 1], s[1:k + 1, 0] = 1.0, 1.0, 1.0
    last = n - 1
    s[last, last], s[last, n - k:last], s[n - k:last, last] = 1.0, 1.0, 1.0
    return s


def recall_inputs(seed: int) -> dict[str, torch.Tensor]:
    """The similarity matrices the ``recall_at_k`` evidence is collected on."""
    g = generator(seed, "recall_at_k", Stream.INPUTS)
    x = {f"rand{i}": _random_similarity(g, n, k, directions_differ=i == 0)
         for i, (n, k) in enumerate(CONFIG.recall_cases)}
    x.update({f"ties{i}": _tie_similarity(g, n, k) for i, (n, k) in enumerate(CONFIG.tie_cases)})
    return x


def zero_shot_inputs(seed: int) -> dict[str, torch.Tensor]:
    """The embeddings the ``zero_shot_scores`` evidence is collected on. The prompts of a class
    have very uneven lengths and directions, so that each normalisation step changes the
    decisions."""
    g = generator(seed, "zero_shot_scores", Stream.INPUTS)
    x = {}
    for i, (B, C, P, E) in enumerate(CONFIG.zero_shot_shape_cases):
        x[f"shape{i}/image"] = torch.randn(B, E, generator=g)
        x[f"shape{i}/prompts"] = torch.randn(C, P, E, generator=g)
    x["visible/image"], x["visible/prompts"] = torch.randn(2, 16, generator=g), \
        torch.randn(10, 4, 16, generator=g)
    for key, (B, C, P, E) in (("eq", (6, 4, 5, 8)), ("pred", (60, 6, 4, 3))):
        x[f"{key}/image"] = _uneven(g, B, E)
        centre = torch.randn(C, 1, E, generator=g)
        spread = torch.rand(C, 1, 1, generator=g) * 3  # some classes' prompts disagree
        prompts = centre + spread * torch.randn(C, P, E, generator=g)
        lengths = torch.exp(2.5 * torch.randn(C, P, 1, generator=g))  # 0.01 to 100
        x[f"{key}/prompts"] = prompts * lengths
        x[f"{key}/image_scale"] = torch.exp(torch.randn(B, 1, generator=g))
        x[f"{key}/prompt_scale"] = torch.exp(torch.randn(C, P, 1, generator=g))
    return x


# ----------------------------------------------------------------------------- collectors

def _loss_args(x: dict, case: str, exercise: str, requires_grad: bool = False):
    args = [x[f"{case}/image"].clone(), x[f"{case}/text"].clone(), x[f"{case}/scale"].clone()]
    if exercise == "siglip_loss":
        args.append(x[f"{case}/bias"].clone())
    return [a.requires_grad_(requires_grad) for a in args]


LOSS_INPUTS = {"clip_loss": ("image_emb", "text_emb", "logit_scale"),
               "siglip_loss": ("image_emb", "text_emb", "logit_scale", "logit_bias")}


def _collect_loss(fn, seed: int, exercise: str, inputs: dict) -> dict:
    """Evidence on a loss function ``fn(image_emb, text_emb, logit_scale[, logit_bias])``."""
    ev = function_status(fn)
    if not callable(fn):
        return ev
    worked = [torch.tensor(WORKED_IMAGES), torch.tensor(WORKED_TEXTS),
              torch.tensor(WORKED_LOGIT_SCALE)]
    if exercise == "siglip_loss":
        worked.append(torch.tensor(WORKED_LOGIT_BIAS))
    with isolated(seed), torch.no_grad():
        for i in range(len(CONFIG.loss_shape_cases)):
            record(ev, f"out/shape{i}", lambda i=i: fn(*_loss_args(inputs, f"shape{i}", exercise)))
        record(ev, "out/worked", lambda: fn(*[w.clone() for w in worked]))
        for case in ("eq0", "eq1", "stable", "stable_neg"):
            record(ev, f"out/{case}", lambda case=case: fn(*_loss_args(inputs, case, exercise)))
        for case in ("eq0", "eq1"):  # the images and the captions swap roles
            def swapped(case=case):
                image, text_, *rest = _loss_args(inputs, case, exercise)
                return fn(text_, image, *rest)
            record(ev, f"out/swapped_{case}", swapped)
    with isolated(seed):
        _loss_gradients(ev, fn, _loss_args(inputs, "eq1", exercise, requires_grad=True),
                        LOSS_INPUTS[exercise])
    return ev


def _loss_gradients(ev: dict, fn, args, names) -> None:
    """``grad/<input>``: the gradient of the loss with respect to each input (zeros for none),
    or ``error/grad`` saying why there is none."""
    try:
        loss = fn(*args)
    except Exception as error:  # noqa: BLE001 (the student's code can raise anything)
        ev["error/grad"] = np.array(f"calling it raised {describe_error(error)}")
        return
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        ev["error/grad"] = np.array("it did not return a single number as a tensor")
        return
    if not loss.requires_grad:
        ev["error/grad"] = np.array("the loss is detached from its inputs: no gradient reaches "
                                    "the embeddings or the logit scale (.item(), .detach() or "
                                    "torch.no_grad()?)")
        return
    try:
        loss.reshape(()).backward()
    except Exception as error:  # noqa: BLE001
        ev["error/grad"] = np.array(f"the backward pass raised {describe_error(error)}")
        return
    for name, arg in zip(names, args):
        ev[f"grad/{name}"] = to_array(arg.grad) if arg.grad is not None else \
            np.zeros(tuple(arg.shape), dtype=np.float32)


def collect_clip(fn, seed: int, weights=None) -> dict:
    """Evidence on a ``clip_loss`` function; never raises."""
    return _collect_loss(fn, seed, "clip_loss", clip_inputs(seed))


def collect_siglip(fn, seed: int, weights=None) -> dict:
    """Evidence on a ``siglip_loss`` function; never raises."""
    return _collect_loss(fn, seed, "siglip_loss", siglip_inputs(seed))


def _record_pair(ev: dict, key: str, compute) -> None:
    """``ev[key] = [image_to_text, text_to_image]`` of a recall call, or ``error/key``."""
    try:
        out = compute()
    except NotImplementedError:
        ev[f"error/{key}"] = np.array("NotImplementedError: not implemented yet")
        return
    except Exception as error:  # noqa: BLE001
        ev[f"error/{key}"] = np.array(describe_error(error))
        return
    try:
        if isinstance(out, torch.Tensor):
            out = out.detach().cpu().reshape(-1).tolist()
        first, second = out
        ev[key] = np.array([float(first), float(second)], dtype=np.float64)
    except Exception:  # noqa: BLE001 (anything but a pair of numbers)
        ev[f"error/{key}"] = np.array(f"returned {type(out).__name__}, not a pair of numbers "
                                      "(image_to_text, text_to_image)")


@function_collector(recall_inputs)
def collect_recall(ev: dict, fn, x: dict) -> None:
    """Evidence on a ``recall_at_k`` function; never raises."""
    _record_pair(ev, "out/worked", lambda: fn(torch.tensor(WORKED_SIMILARITY), 1))
    for i, (_, k) in enumerate(CONFIG.recall_cases):
        _record_pair(ev, f"out/rand{i}", lambda i=i, k=k: fn(x[f"rand{i}"].clone(), k))
    for i, (_, k) in enumerate(CONFIG.tie_cases):
        _record_pair(ev, f"out/ties{i}", lambda i=i, k=k: fn(x[f"ties{i}"].clone(), k))


@function_collector(zero_shot_inputs)
def collect_zero_shot(ev: dict, fn, x: dict) -> None:
    """Evidence on a ``zero_shot_scores`` function; never raises."""
    for i in range(len(CONFIG.zero_shot_shape_cases)):
        record(ev, f"out/shape{i}", lambda i=i: fn(x[f"shape{i}/image"].clone(),
                                                   x[f"shape{i}/prompts"].clone()))
    record(ev, "out/visible", lambda: fn(x["visible/image"].clone(),
                                         x["visible/prompts"].clone()))
    for key in ("eq", "pred"):
        record(ev, f"out/{key}", lambda key=key: fn(x[f"{key}/image"].clone(),
                                                    x[f"{key}/prompts"].clone()))
    record(ev, "out/rescaled", lambda: fn(x["eq/image"] * x["eq/image_scale"],
                                          x["eq/prompts"] * x["eq/prompt_scale"]))


# ----------------------------------------------------------------------------- training

def training_pairs(seed: int):
    """The grader's contrastive training pairs and held-out images (for the accuracy cells):
    ``({"train_images", "train_tokens", "images"}, labels of "images")``, split and captioned
    with ``seed``. The labels stay with the grader."""
    from .data import make_splits

    train, test = make_splits(seed)
    return ({"train_images": train.images.numpy(), "train_tokens": train.tokens.numpy(),
             "images": test.images.numpy()}, test.labels.numpy())


def _train_dual_encoder(fn, seed: int, inputs: dict, exercise: str, **model_kwargs) -> dict:
    """A ``DualEncoder`` trained on the grader's pairs with the loss ``fn``, as the notebook
    trains it; its embeddings of the grader's held-out images and of every zero-shot prompt."""
    from .data import prompt_tokens
    from .models import DualEncoder
    from .train import ContrastiveConfig, embed, fit_contrastive

    pairs = (torch.as_tensor(inputs["train_images"]), torch.as_tensor(inputs["train_tokens"]))
    torch.manual_seed(derive(seed, exercise, Stream.MODEL) % 2**31)
    model = DualEncoder(**model_kwargs)
    fit_contrastive(model, pairs, fn, ContrastiveConfig(**CONFIG.training, seed=seed,
                                                        progress=False, num_threads=1))
    image_emb, prompt_emb = embed(model, torch.as_tensor(inputs["images"]), prompt_tokens())
    return {"image_emb": image_emb, "prompt_emb": prompt_emb}


def train_clip(fn, seed: int, inputs: dict) -> dict:
    return _train_dual_encoder(fn, seed, inputs, "clip_loss")


def train_siglip(fn, seed: int, inputs: dict) -> dict:
    from .models import SIGLIP_BIAS, SIGLIP_TEMPERATURE

    return _train_dual_encoder(fn, seed, inputs, "siglip_loss", temperature=SIGLIP_TEMPERATURE,
                               bias=SIGLIP_BIAS)


# ----------------------------------------------------------------------------- shared checks

def _number(ev, key: str, what: str) -> float:
    out = output(ev, key, what)
    if out.size != 1:
        raise AssertionError(f"{what} returned a tensor of shape {shape_text(out.shape)}, not "
                             "a single number: average the loss over the batch")
    return float(out.reshape(()))


# the outputs that tell the known mistakes apart, per exercise
IDENTIFY = {
    "loss": ("out/worked", "out/eq0", "out/eq1"),
    "recall": ("out/worked",) + tuple(f"out/rand{i}" for i in range(len(CONFIG.recall_cases)))
    + tuple(f"out/ties{i}" for i in range(len(CONFIG.tie_cases))),
    "zero_shot": ("out/eq", "out/pred"),
}


def _mistake_words(ev, facts, keys) -> str:
    """"it looks like <the mistake>" when the outputs ``keys`` are a known mistake's, else ""."""
    mistake = identified(ev, facts, keys)
    return f"it looks like {MISTAKES[mistake]}" if mistake in MISTAKES else ""


def _reference(facts) -> dict:
    """The reference's outputs, or a Skip saying why the facts have none."""
    expected = facts.get("variants", {}).get("reference")
    if expected is None:
        raise Skip(facts.get("unavailable", "no reference values"))
    return expected


def _compare(ev, facts, keys, name: str, formula: str, what: str = "the loss",
             tolerance: float = TOLERANCE, identify: str = "loss") -> CheckResult:
    """``keys`` equal the reference's outputs, or the failed verdict naming the mistake (told
    apart on the outputs ``IDENTIFY[identify]``)."""
    expected = _reference(facts)
    for key in keys:
        out = output(ev, key, what)
        want = np.asarray(expected[key])
        if out.shape != want.shape and out.size == want.size == 1:
            out = out.reshape(want.shape)
        if out.shape != want.shape:
            return CheckResult(name, False, f"{what} has shape {shape_text(out.shape)}, expected "
                               f"{shape_text(want.shape)}")
        if not close(out, want, tolerance):
            words = _mistake_words(ev, facts, IDENTIFY[identify]) or f"check {formula}"
            diff = float(np.max(np.abs(out - want))) if np.isfinite(out).all() else float("nan")
            verb = "differ" if what.endswith("scores") else "differs"
            return CheckResult(name, False, f"{what} {verb} from the reference by up to "
                               f"{diff:.3g}: {words}")
    return CheckResult(name, True, "")


def _visible_value(key: str, what: str, identify: str = "loss"):
    def check(ev, facts) -> CheckResult:
        result = _compare(ev, facts, (key,), "visible_value", "the worked example", what,
                          identify=identify)
        if result.passed:
            value = np.asarray(ev[key]).reshape(-1)
            result.message = f"the worked example gives {', '.join(f'{v:.4f}' for v in value)}"
        return result
    return check


# ----------------------------------------------------------------------------- the losses

CLIP_FORMULA = ("logits = logit_scale.exp() * normalize(image_emb) @ normalize(text_emb).T, then "
                "the mean of the cross-entropies over the rows and over the columns, with the "
                "pairs on the diagonal")
SIGLIP_FORMULA = ("logits = logit_scale.exp() * normalize(image_emb) @ normalize(text_emb).T + "
                  "logit_bias, z = +1 on the diagonal and -1 elsewhere, loss = "
                  "-logsigmoid(z * logits).sum() / B")
EQ_KEYS = ("out/eq0", "out/eq1")


def loss_scalar(ev, facts) -> CheckResult:
    for i, (B, E) in enumerate(CONFIG.loss_shape_cases):
        _number(ev, f"out/shape{i}", f"for embeddings of shape {(B, E)} it")
    return CheckResult("scalar", True, "one number per batch, for several batch sizes")


def clip_equivalence(ev, facts) -> CheckResult:
    result = _compare(ev, facts, EQ_KEYS, "equivalence", CLIP_FORMULA)
    return result if not result.passed else CheckResult(
        "equivalence", True, "equals the symmetric InfoNCE loss on batches of embeddings of "
        "uneven lengths, at two temperatures")


def clip_symmetric(ev, facts) -> CheckResult:
    for key in EQ_KEYS:
        mine = _number(ev, key, "the loss")
        swapped = _number(ev, key.replace("out/", "out/swapped_"),
                          "the loss with images and captions swapped")
        if not np.isclose(mine, swapped, atol=TOLERANCE, rtol=TOLERANCE):
            return CheckResult("symmetric", False, f"swapping the images and the captions changes "
                               f"the loss ({mine:.4f} -> {swapped:.4f}): a symmetric loss averages "
                               "the image-to-text and the text-to-image directions")
    return CheckResult("symmetric", True, "images and captions play the same role: both "
                       "directions count")


STABLE_CASES = {"out/stable": "perfectly aligned pairs", "out/stable_neg": "pairs whose "
                "embeddings point in opposite directions"}


def _stable(hint: str):
    def check(ev, facts) -> CheckResult:
        for key, pairs in STABLE_CASES.items():
            value = _number(ev, key, f"the loss for {pairs}")
            if not np.isfinite(value):
                return CheckResult("stable", False, f"at exp(logit_scale) = 100, for {pairs}, "
                                   f"the loss is {value}: {hint}")
        return CheckResult("stable", True, "finite at exp(logit_scale) = 100 (the clamp), for "
                           "aligned and for opposite pairs")
    return check


CLIP_STABLE = ("a logit of 100 overflows float32 in exp (e^100 > 3.4e38): use F.cross_entropy "
               "(or torch.logsumexp), which subtracts the largest logit first")
SIGLIP_STABLE = ("a logit of -110 makes sigmoid round to 0 in float32, and log(0) = -inf: use "
                 "F.logsigmoid, which never forms the sigmoid itself")


def _gradients(inputs: tuple[str, ...], what: str):
    """The gradients of the loss reach every input as the formula sends them: the reference's
    (or the recognised mistake's) on the same inputs, or at least non-zero."""

    def check(ev, facts) -> CheckResult:
        if "error/grad" in ev:
            return CheckResult("gradients", False, text(ev, "error/grad"))
        grads = prefixed(ev, "grad/")
        if not grads:
            raise Skip("no gradients were recorded")
        variant = identified(ev, facts, ("out/eq1",))
        expected = facts.get("grads", {}).get(variant) if variant else None
        none = [n for n in inputs if not (np.isfinite(grads.get(n, np.zeros(1))).all()
                                          and np.abs(grads.get(n, np.zeros(1))).sum() > 0)]
        differs = [n for n in inputs if expected is not None and n not in none and
                   not close(grads[n], expected[n], 1e-3)]
        if none:
            return CheckResult("gradients", False, f"no gradient reaches {', '.join(none)}: is it "
                               "detached (.item(), .detach(), float(...)) on the way?")
        if differs:
            return CheckResult("gradients", False, f"the gradient of {', '.join(differs)} is not "
                               "what your loss sends back: is part of it detached?")
        return CheckResult("gradients", True, f"gradients reach {', '.join(inputs)}, {what}")

    return check


def siglip_equivalence(ev, facts) -> CheckResult:
    result = _compare(ev, facts, EQ_KEYS, "equivalence", SIGLIP_FORMULA)
    return result if not result.passed else CheckResult(
        "equivalence", True, "equals SigLIP's sigmoid loss on batches of embeddings of uneven "
        "lengths, at two temperatures and biases")


# ----------------------------------------------------------------------------- recall@K

RECALL_FORMULA = ("rank of the true match = the number of candidates whose similarity is >= "
                  "its own; a hit when that rank is <= k; the recall is the share of hits")


def _recall_direction(index: int, name: str, words: str):
    keys = tuple(f"out/rand{i}" for i in range(len(CONFIG.recall_cases)))

    def check(ev, facts) -> CheckResult:
        expected = _reference(facts)
        for i, (n, k) in enumerate(CONFIG.recall_cases):
            out = output(ev, keys[i], "the recall")
            want = np.asarray(expected[keys[i]])
            if not np.isclose(out[index], want[index], atol=1e-6):
                hint = _mistake_words(ev, facts, IDENTIFY["recall"]) or \
                    f"check: {RECALL_FORMULA}"
                return CheckResult(name, False, f"{words} recall@{k} of a {n} x {n} similarity "
                                   f"matrix is {out[index]:.4f}, expected {want[index]:.4f}: "
                                   f"{hint}")
        return CheckResult(name, True, f"{words} recall@K is right for several N and K")

    return check


def recall_ties(ev, facts) -> CheckResult:
    keys = tuple(f"out/ties{i}" for i in range(len(CONFIG.tie_cases)))
    expected = _reference(facts)
    for i, (n, k) in enumerate(CONFIG.tie_cases):
        out = output(ev, keys[i], "the recall")
        want = np.asarray(expected[keys[i]])
        if not np.allclose(out, want, atol=1e-6):
            hint = _mistake_words(ev, facts, IDENTIFY["recall"]) or f"check: {RECALL_FORMULA}"
            return CheckResult("ties", False, f"with ties, recall@{k} of a {n} x {n} matrix is "
                               f"({out[0]:.4f}, {out[1]:.4f}), expected ({want[0]:.4f}, "
                               f"{want[1]:.4f}): {hint}")
    return CheckResult("ties", True, "a tie with the true match counts against it, as documented")


# ----------------------------------------------------------------------------- zero-shot

ZERO_SHOT_FORMULA = ("class = normalize(normalize(prompt_emb).mean(dim=1)), scores = "
                     "normalize(image_emb) @ class.T")


def zero_shot_shapes(ev, facts) -> CheckResult:
    for i, (B, C, P, E) in enumerate(CONFIG.zero_shot_shape_cases):
        out = output(ev, f"out/shape{i}", f"for images {(B, E)} and prompts {(C, P, E)} it")
        if out.shape != (B, C):
            return CheckResult("shapes", False, f"for images {(B, E)} and prompts {(C, P, E)} "
                               f"the scores have shape {shape_text(out.shape)}, expected "
                               f"{(B, C)}: one score per image and class")
    return CheckResult("shapes", True, "(B, C) scores for several B, C, P and E")


def zero_shot_equivalence(ev, facts) -> CheckResult:
    result = _compare(ev, facts, ("out/eq",), "equivalence", ZERO_SHOT_FORMULA, "the scores",
                      tolerance=1e-5, identify="zero_shot")
    return result if not result.passed else CheckResult(
        "equivalence", True, "cosine similarities with the normalised mean of the normalised "
        "prompts")


def zero_shot_invariance(ev, facts) -> CheckResult:
    mine = output(ev, "out/eq", "the scores")
    rescaled = output(ev, "out/rescaled", "the scores of rescaled embeddings")
    if mine.shape != rescaled.shape or not close(mine, rescaled, 1e-5):
        return CheckResult("invariance", False, "the scores change when the embeddings are made "
                           "longer or shorter (each image and each prompt by its own factor): "
                           "normalise the images and every prompt, so that only directions count")
    return CheckResult("invariance", True, "only the directions of the embeddings count")


def zero_shot_predictions(ev, facts) -> CheckResult:
    expected = _reference(facts)
    mine = output(ev, "out/pred", "the scores")
    want = np.asarray(expected["out/pred"])
    if mine.shape != want.shape:
        return CheckResult("predictions", False, f"the scores have shape "
                           f"{shape_text(mine.shape)}, expected {shape_text(want.shape)}")
    agree = float((mine.argmax(1) == want.argmax(1)).mean())
    if agree < 1:
        hint = _mistake_words(ev, facts, IDENTIFY["zero_shot"]) or f"check {ZERO_SHOT_FORMULA}"
        return CheckResult("predictions", False, f"the predicted class (argmax) differs from the "
                           f"reference's for {1 - agree:.0%} of {len(mine)} images: {hint}")
    return CheckResult("predictions", True, f"the same predicted class as the reference for all "
                       f"{len(mine)} images")


def zero_shot_visible(ev, facts) -> CheckResult:
    out = output(ev, "out/visible", "the call on 2 images and 10 classes of 4 prompts")
    ok = out.shape == (2, 10)
    return CheckResult("visible_shape", ok, "shape (2, 10)" if ok else
                       f"expected shape (2, 10), got {shape_text(out.shape)}")


# ----------------------------------------------------------------------------- declarations

DECLARED = Declarations(__file__, ASSIGNMENT, CONFIG, implemented=function_implemented)

CLIP = register(DECLARED.exercise(
    "clip_loss", collect=collect_clip, train=train_clip, known=KNOWN,
    checks={"scalar": loss_scalar, "equivalence": clip_equivalence,
            "symmetric": clip_symmetric, "stable": _stable(CLIP_STABLE),
            "gradients": _gradients(LOSS_INPUTS["clip_loss"], "as the formula sends them back"),
            "accuracy": accuracy, "visible_value": _visible_value("out/worked", "the loss")},
    borrowed=("clip_loss", "ClipLoss", "contrastive_loss")))

RECALL = register(DECLARED.exercise(
    "recall_at_k", collect=collect_recall, known=KNOWN,
    checks={"visible_value": _visible_value("out/worked", "recall@1 of the worked example",
                                            identify="recall"),
            "image_to_text": _recall_direction(0, "image_to_text", "image-to-text"),
            "text_to_image": _recall_direction(1, "text_to_image", "text-to-image"),
            "ties": recall_ties}))

ZERO_SHOT = register(DECLARED.exercise(
    "zero_shot_scores", collect=collect_zero_shot, known=KNOWN,
    checks={"visible_shape": zero_shot_visible,
            "shapes": zero_shot_shapes, "equivalence": zero_shot_equivalence,
            "invariance": zero_shot_invariance, "predictions": zero_shot_predictions}))

SIGLIP = register(DECLARED.exercise(
    "siglip_loss", collect=collect_siglip, train=train_siglip, known=KNOWN,
    checks={"scalar": loss_scalar,
            "equivalence": siglip_equivalence, "stable": _stable(SIGLIP_STABLE),
            "gradients": _gradients(LOSS_INPUTS["siglip_loss"], "as the formula sends them back"),
            "accuracy": accuracy, "visible_value": _visible_value("out/worked", "the loss")}))
