"""Part 2's graded exercises: masked multi-head attention (TODO 1), the co-attention block
(TODO 2) and the Relation Network's pair sum (TODO 3).

Each exercise is one ``Exercise`` (``fusionlab.grading.registry``): its table row in
``exercises.toml`` (target, self-check order, graded cells), and here how its behaviour is
recorded and the checks that judge the record. What the student
built is what gets judged:

- **attention**: the outputs are compared with the reference formula on the module's own
  weights (stored known answers in the self-check, recomputed by the grader from the exported
  weights: ``autograder.hidden.part2``), and with each known mistake (``MISTAKES``), so that a
  verdict names it; the property checks (padding, mask polarity, order, the weights) read only
  what the module did. The accuracy cell trains ``SceneCrossAttention`` on the student's class,
  whatever it computes, and the grader scores its answers to questions of its own.
- **coattention**: the block's formula applied to the student's *own* two blocks (built on the
  student's attention, right or wrong): a mistake in TODO 1 costs TODO 1's cells only.
- **pairs**: properties of the function on the inputs of the seed.

Facts (``facts``) of the attention: ``variants`` (``{variant: {output key: array}}``),
``grads`` (``{variant: {parameter: gradient}}``), ``qperm`` (the query permutation of the
inputs), ``unavailable`` (why the weights do not fit), ``accuracy`` (the grader's only). The
pair sum's: ``relations`` (its inputs). The co-attention needs none.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..grading import results
from ..grading.checks import accuracy, gradient_problems, gradients_verdict, identified, shapes
from ..grading.known import KnownAnswers
from ..grading.registry import Declarations, register
from ..grading.results import CheckResult, Skip
from ..grading.seeds import Stream, derive, generator
from ..grading.toolkit import (
    build_module,
    class_name,
    fit_quietly,
    guarded_module_state,
    isolated,
    other_size,
    projection_loss,
    record,
    record_pair,
    stored_attribute,
    to_array,
)
from ..grading.toolkit import gradients as record_gradients

ASSIGNMENT = "part2_attention_that_selects"


@dataclass(frozen=True)
class Part2Config:
    """The sizes and settings the grader and the self-checks use for Part 2's exercises."""

    dim: int = 32
    heads: int = 4
    # (dim, heads, B, N_q, N_kv) of the attention shape cases; another dim builds a second module
    attention_shape_cases: tuple = ((32, 4, 1, 1, 1), (32, 4, 2, 3, 5), (16, 2, 2, 2, 3))
    coattention_shape_cases: tuple = ((2, 7, 5), (1, 1, 1))  # (B, L, N)
    pairs_shape_cases: tuple = ((1, 1, 4), (2, 4, 16))  # (B, N, H)
    junk_scale: float = 100.0  # what the padded slots hold in the padding tests
    # the accuracy cell: SceneCrossAttention(attention=<the student's class>) trained with
    # fusionlab.train.fit on the "what shape is X" questions of n_scenes Sort-of-CLEVR scenes
    # (3 to 6 objects in 6 slots: about 1000 questions), as the notebook's binding experiment
    # (section 6.1) trains it; shorter or faster training is not stable on every CPU kernel path
    # (autograder/README.md, "Accuracy threshold of Part 2")
    training: dict = field(default_factory=lambda: dict(n_scenes=6000, embed_dim=64,
                                                       num_heads=4, epochs=20, lr=3e-3,
                                                       batch_size=64))
    training_objects: tuple = (3, 6)  # objects per training scene, min and max
    # the grader's questions: eval_objects objects in eval_slots slots, junk in the padding
    eval_scenes: int = 3000  # about 500 "what shape is X" questions
    eval_objects: tuple = (2, 2)
    eval_slots: int = 8
    accuracy_threshold: float = 0.90  # measured: python -m autograder.authoring.thresholds part2


CONFIG = Part2Config()
KNOWN = KnownAnswers(__package__)

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")
ATTENTION_KEYS = tuple(f"{p}.{w}" for p in PROJECTIONS for w in ("weight", "bias"))
DIRECTIONS = ("words_read_objects", "objects_read_words")
# implementations of the same computation that a TODO cell must not use (the scan flags them)
BORROWED = ("CrossAttentionLayer", "MultiheadAttention", "scaled_dot_product_attention")
BORROWED_TYPES = ("CrossAttentionLayer", "MultiheadAttention")

# What each known mistake looks like, in words (the grader holds the formulas).
MISTAKES = {
    "no_scaling": "the scores are not divided by sqrt(head_dim): scores = q @ k.transpose(-2, "
                  "-1) / head_dim**0.5",
    "sqrt_dim": "the scores are divided by sqrt(dim) instead of sqrt(head_dim): each head's dot "
                "products have head_dim = dim // num_heads terms",
    "ignores_mask": "the key_padding_mask is ignored: set the scores of the padded keys (True) "
                    "to a very large negative number before the softmax",
    "inverted_mask": "the mask is inverted: True marks padding, and padded keys get weight 0",
    "mask_after_softmax": "the mask is applied after the softmax only, so the padded keys still "
                          "take part in the normalisation: set their scores to a very large "
                          "negative number before the softmax",
    "softmax_over_queries": "the softmax runs over the queries: each query's weights must sum "
                            "to 1 over the keys, torch.softmax(scores, dim=-1)",
    "heads_not_transposed": "the heads are split wrongly: reshaping (B, N, dim) straight to "
                            "(B, heads, N, head_dim) mixes the features of different tokens; "
                            "reshape to (B, N, heads, head_dim), then transpose(1, 2) (and "
                            "back the same way)",
    "sequential": "the objects read the updated words: both directions read the block's inputs, "
                  "objects_read_words(objects, words, word_padding_mask)",
    "no_masks": "the padding masks are not passed on: words_read_objects(words, objects, "
                "object_padding_mask), objects_read_words(objects, words, word_padding_mask)",
    "swapped_masks": "the two padding masks are swapped: words_read_objects reads the objects, "
                     "so it takes object_padding_mask, and objects_read_words takes "
                     "word_padding_mask",
}


# ----------------------------------------------------------------------------- inputs

def attention_mask() -> torch.Tensor:
    """The padding of the attention inputs (the same for every seed): three samples of 6 keys,
    no padding, the last two keys padded, and keys 1 and 4 padded (a mask that only works for
    trailing padding shows)."""
    mask = torch.zeros(3, 6, dtype=torch.bool)
    mask[1, 4:] = True
    mask[2, [1, 4]] = True
    return mask


def attention_inputs(seed: int) -> dict[str, torch.Tensor]:
    """The inputs the attention evidence is collected on (the grader recomputes them): three
    samples of 4 queries and 6 keys, padded as ``attention_mask``."""
    g = generator(seed, "attention", Stream.INPUTS)
    d = CONFIG.dim
    x = {"query": torch.randn(3, 4, d, generator=g), "kv": torch.randn(3, 6, d, generator=g),
         "mask": attention_mask()}
    junk = CONFIG.junk_scale * torch.randn(3, 6, d, generator=g)
    x["kv_junk"] = torch.where(x["mask"][..., None], junk, x["kv"])
    x["perm"] = torch.randperm(6, generator=g)
    x["qperm"] = torch.randperm(4, generator=g)
    for i, (dim, _, B, n_q, n_kv) in enumerate(CONFIG.attention_shape_cases):
        x[f"shape{i}/query"] = torch.randn(B, n_q, dim, generator=g)
        x[f"shape{i}/kv"] = torch.randn(B, n_kv, dim, generator=g)
    x["grad/projection"] = torch.randn(3, 4, d, generator=g)
    return x


def coattention_inputs(seed: int) -> dict[str, torch.Tensor]:
    """The inputs the co-attention evidence is collected on: 5 words and 6 objects (so that
    swapped masks do not even fit), padded differently in each sample."""
    g = generator(seed, "coattention", Stream.INPUTS)
    d = CONFIG.dim
    x = {"words": torch.randn(3, 5, d, generator=g), "objects": torch.randn(3, 6, d, generator=g)}
    word_mask = torch.zeros(3, 5, dtype=torch.bool)
    word_mask[1, 3:] = True
    word_mask[2, 4] = True
    object_mask = torch.zeros(3, 6, dtype=torch.bool)
    object_mask[0, 3:] = True
    object_mask[2, [2, 5]] = True
    x["word_mask"], x["object_mask"] = word_mask, object_mask
    junk = CONFIG.junk_scale
    x["words_junk"] = torch.where(word_mask[..., None],
                                  junk * torch.randn(3, 5, d, generator=g), x["words"])
    x["objects_junk"] = torch.where(object_mask[..., None],
                                    junk * torch.randn(3, 6, d, generator=g), x["objects"])
    for i, (B, L, N) in enumerate(CONFIG.coattention_shape_cases):
        x[f"shape{i}/words"] = torch.randn(B, L, d, generator=g)
        x[f"shape{i}/objects"] = torch.randn(B, N, d, generator=g)
    x["grad/words"] = torch.randn(3, 5, d, generator=g)
    x["grad/objects"] = torch.randn(3, 6, d, generator=g)
    return x


def pairs_inputs(seed: int) -> dict[str, torch.Tensor]:
    """The inputs the pair-sum evidence is collected on: the relations ``g(o_i, o_j)``
    ``(3, 5, 5, 8)`` of every ordered pair of 5 slots; sample 0 has no padding, sample 1 its
    last two slots, sample 2 slot 1."""
    g = generator(seed, "pairs", Stream.INPUTS)
    x = {"relations": torch.randn(3, 5, 5, 8, generator=g)}
    mask = torch.zeros(3, 5, dtype=torch.bool)
    mask[1, 3:] = True
    mask[2, 1] = True
    x["mask"] = mask
    pair_padding = (mask[:, :, None] | mask[:, None, :])[..., None]  # (3, 5, 5, 1)
    x["relations_junk"] = torch.where(
        pair_padding, CONFIG.junk_scale * torch.randn(3, 5, 5, 8, generator=g), x["relations"])
    for i, (B, N, H) in enumerate(CONFIG.pairs_shape_cases):
        x[f"shape{i}"] = torch.randn(B, N, N, H, generator=g)
    return x


def binding_data(seed: int, n_scenes: int, objects: tuple[int, int] = CONFIG.training_objects,
                 num_slots: int | None = None):
    """The "what shape is X" questions of ``n_scenes`` Sort-of-CLEVR scenes drawn from
    ``seed``, with ``objects`` = (min, max) objects in ``num_slots`` slots (default: max):
    ``(objects, question, object_mask, question_mask, answer)``."""
    from .scenes import QUESTION_TYPES, SortOfClevr

    ds = SortOfClevr(n_samples=n_scenes, seed=seed, min_objects=objects[0],
                     max_objects=objects[1], num_slots=num_slots)
    return ds.subset(ds.question_type == QUESTION_TYPES.index("shape"))


def training_data(seed: int):
    """The training questions of the accuracy cell (the grader asks questions of its own)."""
    return binding_data(derive(seed, "attention", Stream.TRAINING) % 2**31,
                        CONFIG.training["n_scenes"])


# ----------------------------------------------------------------------------- collectors

def _last_weights(module: nn.Module):
    weights = stored_attribute(module, "last_attn_weights")
    return weights if isinstance(weights, torch.Tensor) else None


def collect_attention(cls, seed: int, weights=None) -> dict:
    """Evidence on a ``MaskedMultiHeadAttention`` class; never raises."""
    d, h = CONFIG.dim, CONFIG.heads
    ev: dict = {}
    x = attention_inputs(seed)
    q, kv, mask = x["query"], x["kv"], x["mask"]
    with isolated(seed):
        module = build_module(ev, seed, cls, d, num_heads=h)
        if module is None:
            return ev

        def sizes():
            ev["attrs"] = np.array(json.dumps(
                {a: stored_attribute(module, a) for a in ("num_heads", "head_dim")}, default=str))

        guarded_module_state(ev, module, weights, seed, "attention", first=sizes)
        module.eval()
        with torch.no_grad():
            for i, (dim, heads, *_) in enumerate(CONFIG.attention_shape_cases):
                m = module if (dim, heads) == (d, h) else other_size(
                    ev, f"out/shape{i}", seed, cls, dim, num_heads=heads)
                if m is None:
                    continue
                if record(ev, f"out/shape{i}", lambda m=m, i=i: m(
                        x[f"shape{i}/query"], x[f"shape{i}/kv"])) is not None:
                    if _last_weights(m) is not None:
                        ev[f"weights/shape{i}"] = to_array(_last_weights(m))
            record(ev, "out/plain", lambda: module(q, kv))
            if record(ev, "out/mask", lambda: module(q, kv, mask)) is not None:
                if _last_weights(module) is not None:
                    ev["weights/mask"] = to_array(_last_weights(module))
            record(ev, "out/junk", lambda: module(q, x["kv_junk"], mask))
            perm, qperm = x["perm"], x["qperm"]
            record(ev, "out/perm", lambda: module(q, kv[:, perm], mask[:, perm]))
            record(ev, "out/qperm", lambda: module(q[:, qperm], kv, mask))
            # sample 1 with its padded keys left out, and with only them
            record(ev, "out/kept", lambda: module(q[1:2], kv[1:2, :4]))
            record(ev, "out/pads_only", lambda: module(q[1:2], kv[1:2, 4:]))
        module.train()

        def loss():
            out = module(q, kv, mask)
            if _last_weights(module) is not None:
                ev["weights_requires_grad"] = np.array(bool(_last_weights(module).requires_grad))
            return projection_loss(out, x["grad/projection"], seed, "attention")

        record_gradients(ev, module, loss)
    return ev


def collect_coattention(cls, seed: int, weights=None) -> dict:
    """Evidence on a ``CoAttentionBlock`` class; never raises. Beside the block's outputs it
    records what the formula gives with the block's own two directions (``sub/...``): each
    direction called on the block's inputs with its keys' mask."""
    from .models import CrossAttentionBlock

    d, h = CONFIG.dim, CONFIG.heads
    ev: dict = {}
    x = coattention_inputs(seed)
    w, o, wm, om = x["words"], x["objects"], x["word_mask"], x["object_mask"]
    pair = ("words", "objects")
    with isolated(seed):
        module = build_module(ev, seed, cls, d, num_heads=h)
        if module is None:
            return ev

        def directions():
            blocks = {}
            for attr in DIRECTIONS:
                block = stored_attribute(module, attr)
                if isinstance(block, nn.Module):
                    attention = stored_attribute(block, "attn")
                    blocks[attr] = {
                        "type": class_name(type(block)),
                        "given": type(block) is CrossAttentionBlock,
                        "attention": class_name(type(attention)),
                        "heads": stored_attribute(attention, "num_heads")
                        if isinstance(attention, nn.Module) else None}
            ev["blocks"] = np.array(json.dumps(blocks, default=str))

        guarded_module_state(ev, module, weights, seed, "coattention", first=directions)
        wro, orw = (stored_attribute(module, a) for a in DIRECTIONS)

        def formula(case, words, objects, word_mask, object_mask):
            record(ev, f"sub/{case}/words", lambda: wro(words, objects, object_mask))
            record(ev, f"sub/{case}/objects", lambda: orw(objects, words, word_mask))
            # a known mistake: the objects read the updated words
            record(ev, f"sub/{case}/objects_read_new_words",
                   lambda: orw(objects, wro(words, objects, object_mask), word_mask))

        module.eval()
        with torch.no_grad():
            for i, _ in enumerate(CONFIG.coattention_shape_cases):
                record_pair(ev, f"out/shape{i}", lambda i=i: module(x[f"shape{i}/words"],
                                                                    x[f"shape{i}/objects"]), pair)
            cases = {"plain": (w, o, None, None), "mask": (w, o, wm, om),
                     "junk_objects": (w, x["objects_junk"], wm, om),
                     "junk_words": (x["words_junk"], o, wm, om)}
            for case, args in cases.items():
                record_pair(ev, f"out/{case}", lambda args=args: module(*args), pair)
                formula(case, *args)
            # a known mistake: the block called with its masks in the other order computes the
            # formula when it swaps them
            record_pair(ev, "out/masks_swapped", lambda: module(w, o, om, wm), pair)
        module.train()  # the gradients of the unmasked call: a mask mistake costs no more here
        gw, go = x["grad/words"], x["grad/objects"]
        record_gradients(ev, module, lambda: _pair_loss(module(w, o), gw, go))
        record_gradients(ev, module, lambda: _pair_loss((wro(w, o), orw(o, w)), gw, go),
                         prefix="grad_formula/")  # the formula's failure: error/grad_formula
    return ev


def _pair_loss(out, grad_words, grad_objects) -> torch.Tensor:
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise TypeError(f"the output is a {type(out).__name__}, not a tuple (words', objects')")
    return (out[0] * grad_words).sum() + (out[1] * grad_objects).sum()


def collect_pairs(fn, seed: int, weights=None) -> dict:
    """Evidence on a ``relation_pair_sum`` function; never raises."""
    ev: dict = {"status": np.array("ok")}
    x = pairs_inputs(seed)
    rel, mask = x["relations"], x["mask"]
    with isolated(seed), torch.no_grad():
        for i, (B, N, _) in enumerate(CONFIG.pairs_shape_cases):
            shape_mask = torch.zeros(B, N, dtype=torch.bool)
            shape_mask[:, N - 1:] = N > 1
            record(ev, f"out/shape{i}", lambda i=i, m=shape_mask: fn(x[f"shape{i}"].clone(), m))
        record(ev, "out/plain", lambda: fn(rel.clone(), None))
        record(ev, "out/mask", lambda: fn(rel.clone(), mask))
        record(ev, "out/junk", lambda: fn(x["relations_junk"].clone(), mask))
        record(ev, "out/kept", lambda: fn(rel[1:2, :3, :3].clone(), None))  # sample 1, no pads
    return ev


# ----------------------------------------------------------------------------- training

def train_attention(cls, seed: int, inputs: dict) -> dict:
    """``SceneCrossAttention(attention=cls)`` trained on "what shape is X" as the notebook
    trains it; its answer logits for the grader's questions ``inputs`` (objects, question,
    object_mask, question_mask)."""
    from .models import SceneCrossAttention

    t = CONFIG.training
    torch.manual_seed(derive(seed, "attention", Stream.MODEL))
    model = SceneCrossAttention(embed_dim=t["embed_dim"], num_heads=t["num_heads"],
                                attention=cls)
    fit_quietly(model, training_data(seed), t, seed)
    names = ("objects", "question", "object_mask", "question_mask")
    with torch.no_grad():
        return {"logits": model(*(torch.as_tensor(np.asarray(inputs[n])) for n in names))}


# ----------------------------------------------------------------------------- attention

def _mistake(ev, facts, keys=("out/plain", "out/mask")) -> str | None:
    """The known mistake whose outputs the evidence matches (None: the reference, or none)."""
    name = identified(ev, facts, keys)
    return None if name == "reference" else name


def _why(ev, facts, otherwise: str) -> str:
    """What is wrong: the known mistake the outputs match, in words, or ``otherwise``."""
    mistake = _mistake(ev, facts)
    return f"it looks like {MISTAKES[mistake]}" if mistake else otherwise


def _error_words(error: str) -> str:
    """A recorded error as the rest of a sentence ("returned ...", "raised ...")."""
    return error if error.startswith(("returned", "failed")) else f"raised {error}"


def _no_output(ev, key: str, where: str, caller: str = "forward") -> CheckResult:
    """The shapes verdict when a shape case produced no output: why, from its recorded error."""
    error = results.text(ev, f"error/{key}", "failed")
    if "returned a NoneType" in error:
        return CheckResult("shapes", False, f"{where} {caller} returned None: did you forget "
                           "`return`?")
    return CheckResult("shapes", False, f"{where} it {_error_words(error)}")


def attention_attributes(ev, facts) -> CheckResult:
    d, h = CONFIG.dim, CONFIG.heads
    state = results.prefixed(ev, "state/")
    if not state and "error/state" in ev:
        return CheckResult("attributes", False, f"reading the weights raised "
                           f"{results.text(ev, 'error/state')}")
    types = results.json_value(ev, "types", {})
    problems = []
    for proj in PROJECTIONS:
        weight, bias = state.get(f"{proj}.weight"), state.get(f"{proj}.bias")
        if types.get(proj) != "Linear" or weight is None or bias is None:
            problems.append(f"self.{proj} should be an nn.Linear({d}, {d}), found "
                            f"{types.get(proj, 'nothing')}")
        elif weight.shape != (d, d) or bias.shape != (d,):
            problems.append(f"self.{proj} should be nn.Linear({d}, {d}), found "
                            f"nn.Linear({weight.shape[-1]}, {weight.shape[0]})")
    extra = sorted(set(state) - set(ATTENTION_KEYS))
    if extra and not problems:
        problems.append(f"unexpected weights {', '.join(extra[:4])}: the layer has exactly the "
                        "four projections")
    attrs = results.json_value(ev, "attrs", {})
    if attrs.get("num_heads") != h or attrs.get("head_dim") != d // h:
        problems.append(f"with dim={d}, num_heads={h} expected self.num_heads = {h} and "
                        f"self.head_dim = {d // h}, found {attrs.get('num_heads')} and "
                        f"{attrs.get('head_dim')}")
    used = set(results.json_value(ev, "bases", [])[1:]) | set(results.json_value(ev, "modules", []))
    borrowed = sorted(used & set(BORROWED_TYPES))
    if borrowed:
        problems.append(f"it uses {', '.join(borrowed)}: write the attention yourself")
    return CheckResult("attributes", not problems, "; ".join(problems) or
                       f"q_proj, k_proj, v_proj, out_proj are nn.Linear({d}, {d}); num_heads = "
                       f"{h}, head_dim = {d // h}")


def attention_shapes(ev, facts) -> CheckResult:
    for i, (d, h, B, n_q, n_kv) in enumerate(CONFIG.attention_shape_cases):
        where = f"with dim={d}, num_heads={h}, query {(B, n_q, d)} and kv {(B, n_kv, d)}"
        key = f"out/shape{i}"
        if key not in ev:
            return _no_output(ev, key, where)
        shape = tuple(np.asarray(ev[key]).shape)
        if shape != (B, n_q, d):
            return CheckResult("shapes", False, f"{where}: expected output shape "
                               f"{(B, n_q, d)}, got {shape}")
        weights = ev.get(f"weights/shape{i}")
        if weights is None:
            return CheckResult("shapes", False, f"{where}: self.last_attn_weights is not a "
                               "tensor after the call")
        if tuple(weights.shape) != (B, h, n_q, n_kv):
            return CheckResult("shapes", False, f"{where}: expected last_attn_weights of shape "
                               f"{(B, h, n_q, n_kv)} (B, heads, N_q, N_kv), got "
                               f"{tuple(weights.shape)}")
    return CheckResult("shapes", True, "output (B, N_q, dim) and last_attn_weights (B, heads, "
                       "N_q, N_kv) for several sizes")


def attention_equivalence(ev, facts) -> CheckResult:
    if facts.get("unavailable"):
        return CheckResult("equivalence", False, "cannot compare with the reference: "
                           f"{facts['unavailable']}")
    keys = ("out/plain", "out/mask")
    outs = {key: results.output(ev, key, "the " + ("masked" if key == "out/mask" else "unmasked")
                        + " call") for key in keys}
    expected = facts["variants"]["reference"]
    wrong = [key for key in keys if not results.close(outs[key], expected[key])]
    if not wrong:
        return CheckResult("equivalence", True, "equals masked multi-head attention with your "
                           "weights, with and without a padding mask")
    if outs[wrong[0]].shape != expected[wrong[0]].shape:
        return CheckResult("equivalence", False, f"the output has shape "
                           f"{results.shape_text(outs[wrong[0]].shape)}, expected "
                           f"{results.shape_text(expected[wrong[0]].shape)}: fix the shapes first")
    diff = max(float(np.max(np.abs(outs[k] - expected[k]))) for k in wrong)
    generic = ("check the projections, the split into heads, the scaling by sqrt(head_dim) "
               "and the softmax over the keys")
    if wrong == ["out/mask"] and not _mistake(ev, facts):
        generic = ("without a mask it equals the reference, with a mask it does not: check "
                   "the masking (True = padding, weight 0 on the padded keys)")
    return CheckResult("equivalence", False, f"the output differs from the reference by up to "
                       f"{diff:.3g}: " + _why(ev, facts, generic))


def attention_weights(ev, facts) -> CheckResult:
    h = CONFIG.heads
    if "weights/mask" not in ev:
        results.output(ev, "out/mask", "the masked call")  # raises with the call's error
        raise AssertionError("self.last_attn_weights is not a tensor after a masked call: keep "
                             "the weights, detached, in self.last_attn_weights")
    weights = np.asarray(ev["weights/mask"])
    mask = attention_mask().numpy()
    if weights.shape != (3, h, 4, 6):
        raise AssertionError(f"last_attn_weights should be (B, heads, N_q, N_kv) = (3, {h}, 4, "
                             f"6), got {results.shape_text(weights.shape)}")
    if bool(ev.get("weights_requires_grad", False)):
        raise AssertionError("last_attn_weights should be detached: self.last_attn_weights = "
                             "weights.detach()")
    padded = np.broadcast_to(mask[:, None, None, :], weights.shape)
    if not (weights[padded] == 0).all():
        raise AssertionError(
            f"padded keys get weight up to {float(np.abs(weights[padded]).max()):.3g}, not "
            "exactly 0: " + _why(ev, facts, "mask the scores of the padded keys (True) before "
                                 "the softmax"))
    sums = weights.sum(-1)  # (B, H, N_q)
    unpadded = ~mask.any(-1)  # samples without padding
    if np.allclose(sums[unpadded], 1.0, atol=1e-5) and (sums[~unpadded] < 1 - 1e-5).any():
        raise AssertionError(
            f"with padded keys a query's weights sum to less than 1 (down to "
            f"{float(sums.min()):.3f}): " + _why(ev, facts, "mask the scores before the "
                                                 "softmax, so that the real keys' weights "
                                                 "renormalise"))
    if not np.allclose(sums, 1.0, atol=1e-5):
        raise AssertionError(
            f"a query's weights should sum to 1 over the keys, found sums from "
            f"{float(sums.min()):.3f} to {float(sums.max()):.3f}: "
            + _why(ev, facts, "take the softmax over the last axis, the keys"))
    return CheckResult("weights", True, "last_attn_weights is detached, 0 on padded keys, and "
                       "each query's weights sum to 1")


def attention_padding(ev, facts) -> CheckResult:
    out = results.output(ev, "out/mask", "the masked call")
    junk = results.output(ev, "out/junk", "the call with junk in the padded slots")
    if results.close(out, junk):
        return CheckResult("padding", True, "junk in the padded slots changes nothing")
    diff = float(np.max(np.abs(out - junk))) if out.shape == junk.shape else float("nan")
    raise AssertionError(
        f"junk (x{CONFIG.junk_scale:g}) in the padded slots changes the output by up to "
        f"{diff:.3g}: " + _why(ev, facts, "the output must not depend on what the padded "
                               "slots (True in key_padding_mask) hold"))


def attention_mask_polarity(ev, facts) -> CheckResult:
    out = results.output(ev, "out/mask", "the masked call")[1:2]
    kept = results.output(ev, "out/kept", "the call without the padded keys")
    if results.close(out, kept):
        return CheckResult("mask_polarity", True, "masking the padded keys (True) equals "
                           "leaving them out")
    pads_only = ev.get("out/pads_only")
    if pads_only is not None and results.close(out, pads_only):
        raise AssertionError("the output reads only the padded keys: the mask is inverted, "
                             "True marks padding")
    plain = ev.get("out/plain")
    if plain is not None and results.close(out, plain[1:2]):
        raise AssertionError("the mask changes nothing: it is ignored")
    raise AssertionError("masking the padded keys (True = padding) should equal leaving them "
                         "out of kv: " + _why(ev, facts, "padded keys must get weight 0, and "
                                              "the real keys' weights sum to 1"))


def attention_order(ev, facts) -> CheckResult:
    out = results.output(ev, "out/mask", "the masked call")
    perm = results.output(ev, "out/perm", "the call with the keys reordered")
    qperm = results.output(ev, "out/qperm", "the call with the queries reordered")
    if not results.close(out, perm):
        raise AssertionError("reordering the keys (with their mask) changes the output: "
                             + _why(ev, facts, "attention over a set must not depend on the "
                                    "order of the objects"))
    if "qperm" in facts and not results.close(qperm, out[:, np.asarray(facts["qperm"])]):
        raise AssertionError("reordering the queries should reorder the output the same way, "
                             "and change nothing else: " + _why(
                                 ev, facts, "every query reads the keys on its own"))
    return CheckResult("order", True, "reordering the keys changes nothing, reordering the "
                       "queries reorders the output")


def attention_gradients(ev, facts) -> CheckResult:
    problems = gradient_problems(ev, facts, {p: f"{p}." for p in PROJECTIONS},
                                 ("out/plain", "out/mask"))
    return gradients_verdict(problems, "every projection receives the gradient the output "
                             "sends back")


# ----------------------------------------------------------------------------- co-attention

def coattention_attributes(ev, facts) -> CheckResult:
    d, h = CONFIG.dim, CONFIG.heads
    if "error/state" in ev:
        return CheckResult("attributes", False, f"reading the block raised "
                           f"{results.text(ev, 'error/state')}")
    blocks = results.json_value(ev, "blocks", {})
    state = results.prefixed(ev, "state/")
    problems = []
    for a, b in results.json_value(ev, "shared", []):
        if {a, b} == set(DIRECTIONS):
            problems.append(f"{a} and {b} are the same block: create two")
    for attr in DIRECTIONS:
        found = blocks.get(attr)
        if found is None:
            problems.append(f"missing attribute self.{attr} (a CrossAttentionBlock({d}, "
                            "num_heads, attention=MaskedMultiHeadAttention))")
        elif not found["given"]:
            problems.append(f"self.{attr} is a {found['type']}, not fusionlab's "
                            "CrossAttentionBlock")
        elif found["attention"] in BORROWED_TYPES:
            problems.append(f"self.{attr} is built on {found['attention']}: pass "
                            "attention=MaskedMultiHeadAttention, your own from TODO 1")
        elif found["attention"] != "MaskedMultiHeadAttention":  # (what it is: TODO 1's cells)
            problems.append(f"self.{attr}'s attention is a {found['attention']}: pass "
                            "attention=MaskedMultiHeadAttention, your own from TODO 1")
        elif np.shape(state.get(f"{attr}.norm_attn.weight")) != (d,) or found["heads"] != h:
            problems.append(f"self.{attr} should be CrossAttentionBlock({d}, {h}, ...): built "
                            "with the block's dim and num_heads")
    return CheckResult("attributes", not problems, "; ".join(problems) or
                       "words_read_objects and objects_read_words are two CrossAttentionBlocks "
                       "built on your MaskedMultiHeadAttention")


def coattention_shapes(ev, facts) -> CheckResult:
    d = CONFIG.dim
    for i, (B, L, N) in enumerate(CONFIG.coattention_shape_cases):
        where = f"for words {(B, L, d)} and objects {(B, N, d)}"
        if f"out/shape{i}/words" not in ev:
            return _no_output(ev, f"out/shape{i}", where)
        got = (tuple(ev[f"out/shape{i}/words"].shape), tuple(ev[f"out/shape{i}/objects"].shape))
        want = ((B, L, d), (B, N, d))
        if got != want:
            return CheckResult("shapes", False, f"{where} expected (words', objects') of shapes "
                               f"{want}, got {got}")
    return CheckResult("shapes", True, "(words', objects') have the shapes of (words, objects)")


_CALLS = {"plain": "without masks", "mask": "with both padding masks",
          "junk_objects": "with junk in the padded objects",
          "junk_words": "with junk in the padded words"}
_FORMULA = {"words": "words_read_objects(words, objects, object_padding_mask)",
            "objects": "objects_read_words(objects, words, word_padding_mask)"}
_DIRECTION = {"words": DIRECTIONS[0], "objects": DIRECTIONS[1]}


def _formula(ev, case: str, stream: str) -> np.ndarray:
    """What the formula gives on the block's own directions for ``stream`` (``words``,
    ``objects`` or ``objects_read_new_words``) in call ``case``."""
    key = f"sub/{case}/{stream}"
    if key not in ev:
        attr = DIRECTIONS[0] if stream == "words" else DIRECTIONS[1]
        if attr not in results.json_value(ev, "blocks", {}):
            raise Skip(f"cannot apply the formula: the block has no self.{attr}")
        raise Skip(f"cannot apply the formula: your self.{attr} "
                   f"{_error_words(results.text(ev, 'error/' + key, 'failed'))} on its own")
    return np.asarray(ev[key])


def _co_mistake(ev) -> str | None:
    """The known co-attention mistake the block's outputs show, or None."""
    def same(key, other):
        return key in ev and other in ev and results.close(ev[key], ev[other])

    if "error/out/mask" in ev and same("out/masks_swapped/words", "sub/mask/words") and \
            same("out/masks_swapped/objects", "sub/mask/objects"):
        return "swapped_masks"
    if same("out/plain/words", "sub/plain/words") and same("out/mask/words", "sub/mask/words") \
            and same("out/mask/objects", "sub/mask/objects_read_new_words") \
            and not same("out/mask/objects", "sub/mask/objects"):
        return "sequential"
    if same("out/mask/words", "sub/plain/words") and same("out/mask/objects", "sub/plain/objects") \
            and not (same("out/mask/words", "sub/mask/words")
                     and same("out/mask/objects", "sub/mask/objects")):
        return "no_masks"
    return None


def _co_output(ev, case: str, stream: str) -> np.ndarray:
    key = f"out/{case}/{stream}"
    if key in ev:
        return np.asarray(ev[key])
    mistake = _co_mistake(ev)
    why = f": it looks like {MISTAKES[mistake]}" if mistake else ""
    raise AssertionError(f"the call {_CALLS[case]} "
                         f"{_error_words(results.text(ev, f'error/out/{case}', 'failed'))}{why}")


def coattention_equivalence(ev, facts) -> CheckResult:
    for case in ("plain", "mask"):
        for stream in ("words", "objects"):
            expected = _formula(ev, case, stream)
            out = _co_output(ev, case, stream)
            if results.close(out, expected):
                continue
            if out.shape != expected.shape:
                raise AssertionError(f"{stream}' has shape {results.shape_text(out.shape)} "
                                     f"{_CALLS[case]}, expected "
                                     f"{results.shape_text(expected.shape)}")
            mistake = _co_mistake(ev)
            raise AssertionError(
                f"{stream}' differs from the formula on your own blocks by up to "
                f"{float(np.max(np.abs(out - expected))):.3g} {_CALLS[case]}: "
                + (f"it looks like {MISTAKES[mistake]}" if mistake else
                   f"each direction reads the other stream's input with that stream's mask, "
                   f"{stream}' = {_FORMULA[stream]}"))
    return CheckResult("equivalence", True, "words' and objects' are your two blocks, each "
                       "reading the other stream's input with its mask")


def coattention_padding(ev, facts) -> CheckResult:
    # objects that read the updated words are equivalence's mistake; here only whether each
    # direction gets its own keys' mask counts, so the formula follows the block's wiring
    wiring = "objects_read_new_words" if _co_mistake(ev) == "sequential" else "objects"
    for junk, stream, formula, what in (("junk_objects", "words", "words", "objects"),
                                        ("junk_words", "objects", wiring, "words")):
        # what the junk changes: in the block's output, and in the formula on its own blocks
        # (nothing, when the student's attention masks; as much, when it does not)
        out, clean = _co_output(ev, junk, stream), _co_output(ev, "mask", stream)
        changed = out - clean if out.shape == clean.shape else out
        expected = _formula(ev, junk, formula) - _formula(ev, "mask", formula)
        if results.close(changed, expected):
            continue
        mistake = _co_mistake(ev)
        raise AssertionError(
            f"junk in the padded {what} changes {stream}' by up to "
            f"{float(np.max(np.abs(changed))):.3g}, unlike your own {_DIRECTION[stream]} with "
            f"{what[:-1]}_padding_mask: "
            + (f"it looks like {MISTAKES[mistake]}" if mistake else
               f"pass {what[:-1]}_padding_mask to the direction that reads the {what}"))
    return CheckResult("padding", True, "each direction masks its keys: junk in padded objects "
                       "or words changes nothing your own blocks do not let through")


def coattention_gradients(ev, facts) -> CheckResult:
    formula = {"variants": {"formula": {f"out/plain/{s}": ev[f"sub/plain/{s}"]
                                        for s in ("words", "objects") if f"sub/plain/{s}" in ev}},
               "grads": {"formula": results.prefixed(ev, "grad_formula/")}}
    if not formula["grads"]["formula"]:
        formula = {}  # the formula could not run: every direction needs a gradient
    # one block used for both directions has its parameters once, under the first name (the
    # attributes cell says so); its gradients are checked there
    aliases = {b for a, b in results.json_value(ev, "shared", []) if {a, b} == set(DIRECTIONS)}
    problems = gradient_problems(ev, formula, {a: f"{a}." for a in DIRECTIONS
                                               if a not in aliases},
                                 ("out/plain/words", "out/plain/objects"))
    return gradients_verdict(problems, "both directions receive the gradient the output "
                             "sends back")


# ----------------------------------------------------------------------------- pair sum

def pairs_facts(ev: dict, seed: int) -> dict:
    """The pair sum's facts: its inputs, from the seed (its checks are properties)."""
    return {"relations": pairs_inputs(seed)["relations"].numpy()}


def pairs_shapes(ev, facts) -> CheckResult:
    def case(i, B, N, H):
        where = f"for relations {(B, N, N, H)}"
        return (f"out/shape{i}", where, (B, H), lambda shape: f"{where} expected shape {(B, H)}, "
                f"got {shape}: sum over both object axes")

    return shapes(ev, (case(i, *c) for i, c in enumerate(CONFIG.pairs_shape_cases)),
                  "(B, N, N, H) gives (B, H)",
                  missing=lambda ev, key, where: _no_output(ev, key, where, caller="it"))


def pairs_sum(ev, facts) -> CheckResult:
    if "relations" not in facts:
        raise Skip("the inputs were not recomputed")
    plain = results.output(ev, "out/plain", "the call without a mask")
    if not results.close(plain, np.asarray(facts["relations"]).sum(axis=(1, 2))):
        raise AssertionError("without a mask the result should be the sum of relations over "
                             "every pair (i, j): relations.sum(dim=(1, 2))")
    masked = results.output(ev, "out/mask", "the masked call")[1:2]
    kept = results.output(ev, "out/kept", "the call on the real objects only")
    if not results.close(masked, kept):
        raise AssertionError("with padding the result should be the sum over the pairs of two "
                             "real objects: a pair (i, j) is padding when object i or object j "
                             "is (mask[:, :, None] | mask[:, None, :])")
    return CheckResult("sum", True, "the sum over every pair of real objects")


def pairs_padding(ev, facts) -> CheckResult:
    out = results.output(ev, "out/mask", "the masked call")
    junk = results.output(ev, "out/junk", "the call with junk in the padded pairs")
    if not results.close(out, junk):
        diff = float(np.max(np.abs(out - junk))) if out.shape == junk.shape else float("nan")
        raise AssertionError(f"junk in the pairs with a padded object changes the result by up "
                             f"to {diff:.3g}: leave every such pair out of the sum")
    return CheckResult("padding", True, "junk in the pairs with a padded object changes nothing")


# ----------------------------------------------------------------------------- declarations

DECLARED = Declarations(__file__, ASSIGNMENT, CONFIG)

ATTENTION = register(DECLARED.exercise(
    "attention", collect=collect_attention, train=train_attention, known=KNOWN,
    checks={"attributes": attention_attributes, "shapes": attention_shapes,
            "equivalence": attention_equivalence, "weights": attention_weights,
            "padding": attention_padding, "mask_polarity": attention_mask_polarity,
            "order": attention_order, "gradients": attention_gradients, "accuracy": accuracy},
    borrowed=BORROWED))

COATTENTION = register(DECLARED.exercise(
    "coattention", collect=collect_coattention, borrowed=BORROWED,
    checks={"attributes": coattention_attributes, "shapes": coattention_shapes,
            "equivalence": coattention_equivalence, "padding": coattention_padding,
            "gradients": coattention_gradients}))

PAIRS = register(DECLARED.exercise(
    "pairs", collect=collect_pairs, self_check_facts=pairs_facts,
    checks={"shapes": pairs_shapes, "sum": pairs_sum, "padding": pairs_padding}))
