"""Self-checks of Part 2's TODOs: masked multi-head attention and the co-attention block. The
design of ``fusionlab.check``: a collector (``fusionlab.evidence_part2``) runs the student's
class on inputs drawn from a seed and records what it did as plain arrays, and each check is a
small function ``check(evidence, facts) -> CheckResult``; ``fusionlab.check.run`` executes them
(``implemented`` first) and ``fusionlab.check.report`` prints the verdicts. The notebook's
self-check cells::

    check_part2.attention(MaskedMultiHeadAttention)
    check_part2.coattention(CoAttentionBlock)
    check_part2.pairs(relation_pair_sum)

**Facts.** The reference of TODO 1 is the package's ``fusionlab.models.CrossAttentionLayer``
(the same formula, given since Part 1) and the reference of TODO 2 is
``fusionlab.scene_models.CoAttentionBlock``: ``attention_facts`` and ``coattention_facts``
load the student's *exported weights* into fresh reference layers and run them on the inputs
derived from the seed, never on the evidence's own inputs or outputs. The known mistakes are
the reference layer with one thing changed (``ATTENTION_VARIANTS``: no scaling, one head, the
mask ignored or inverted), so that a verdict can say what a wrong output looks like. The
grader (``autograder.hidden.part2``) calls the same functions in its own process with its own
seed, and adds the accuracy of the trained weights, which only it measures.

The property checks (padding, mask polarity, order) compare outputs of the student's module on
related inputs. When its outputs match the reference or a known mistake, the recorded outputs
must also equal what that variant computes from the exported weights: a kernel cannot report
outputs that its weights do not produce. A self-check runs in the student's kernel: it is a
hint, never a grade.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from . import evidence_part2 as E
from .check import CheckResult, Skip, accuracy_on, close, implemented_check, report, run, text
from .models import CrossAttentionLayer
from .scene_models import CoAttentionBlock as ReferenceCoAttentionBlock

ATTENTION_CHECKS = ("implemented", "attributes", "shapes", "equivalence", "weights", "padding",
                    "mask_polarity", "order", "gradients", "bad_input")
COATTENTION_CHECKS = ("implemented", "attributes", "shapes", "equivalence", "padding",
                      "gradients")
CROSS_KEYS = tuple(f"{p}_proj.{w}" for p in ("q", "k", "v", "out") for w in ("weight", "bias"))
FORBIDDEN = ("CrossAttentionLayer", "MultiheadAttention")  # the exercise is to write it

# what each known mistake looks like, in words
MISTAKES = {
    "no_scaling": "the scores are not divided by sqrt(head_dim)",
    "one_head": "the heads are not split: every head must have its own softmax over "
                "head_dim = dim // num_heads features",
    "ignores_mask": "the key_padding_mask is ignored: set the scores of padded keys to a very "
                    "large negative number before the softmax",
    "inverted_mask": "the mask is inverted: True marks padding, and padded keys get weight 0",
    "sequential": "the objects read the *updated* words: both directions read the block's "
                  "inputs",
    "no_masks": "the padding masks are not passed on: words_read_objects(words, objects, "
                "object_padding_mask), objects_read_words(objects, words, word_padding_mask)",
}


# ----------------------------------------------------------------------------- reference variants

class _NoScaling(CrossAttentionLayer):
    def __init__(self, dim, num_heads=4):
        super().__init__(dim, num_heads)
        self.scale = 1.0


class _OneHead(CrossAttentionLayer):
    def __init__(self, dim, num_heads=4):
        super().__init__(dim, 1)


class _IgnoresMask(CrossAttentionLayer):
    def forward(self, query, kv, key_padding_mask=None):
        return super().forward(query, kv, None)


class _InvertedMask(CrossAttentionLayer):
    def forward(self, query, kv, key_padding_mask=None):
        return super().forward(query, kv, None if key_padding_mask is None
                               else ~key_padding_mask)


# name -> the attention layer, as a factory (dim, num_heads) like the models take
ATTENTION_VARIANTS = {"reference": CrossAttentionLayer, "no_scaling": _NoScaling,
                      "one_head": _OneHead, "ignores_mask": _IgnoresMask,
                      "inverted_mask": _InvertedMask}


def _sequential(block, words, objects, wm=None, om=None):
    new_words = block.words_read_objects(words, objects, om)
    return new_words, block.objects_read_words(objects, new_words, wm)


COATTENTION_VARIANTS = {
    "reference": lambda b, w, o, wm=None, om=None: b(w, o, wm, om),
    "sequential": _sequential,
    "no_masks": lambda b, w, o, wm=None, om=None: b(w, o),
}


# ----------------------------------------------------------------------------- facts

def _weights(ev: dict, prefix: str = "state/") -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: torch.as_tensor(np.asarray(v, dtype=np.float32))
            for k, v in ev.items() if k.startswith(prefix)}


def load_attention(weights: dict, factory=CrossAttentionLayer, dim: int = E.DIM,
                   heads: int = E.HEADS):
    """A fresh attention layer from ``factory`` loaded with ``weights`` (the interface's eight
    tensors, nothing else); raises ValueError naming what does not fit."""
    layer = factory(dim, heads)
    extra = sorted(set(weights) - set(CROSS_KEYS))
    if extra:
        raise ValueError(f"unexpected weights {', '.join(extra[:4])}")
    try:
        layer.load_state_dict(weights, strict=True)
    except RuntimeError as error:
        raise ValueError(" ".join(str(error).split())) from None
    return layer.eval()


def attention_outputs(layer, x: dict) -> dict[str, np.ndarray]:
    """What ``layer`` computes on every case of ``attention_inputs`` that the checks read."""
    q, kv, mask, perm, qperm = x["query"], x["kv"], x["mask"], x["perm"], x["qperm"]
    with torch.no_grad():
        out = {"out/plain": layer(q, kv), "out/mask": layer(q, kv, mask)}
        out["weights/mask"] = layer.last_attn_weights
        out["out/junk"] = layer(q, x["kv_junk"], mask)
        out["out/perm"] = layer(q, kv[:, perm], mask[:, perm])
        out["out/qperm"] = layer(q[:, qperm], kv, mask)
        out["out/kept"] = layer(q[1:2], kv[1:2, :4])
        out["out/pads_only"] = layer(q[1:2], kv[1:2, 4:])
    return {k: v.numpy() for k, v in out.items()}


def _identify(ev: dict, outputs: dict[str, dict], keys) -> str | None:
    for name, outs in outputs.items():
        if all(k in ev and close(ev[k], outs[k]) for k in keys):
            return name
    return None


def attention_facts(ev: dict, seed: int) -> dict:
    """The expected outputs of every attention variant on the exported weights, and which one
    the recorded outputs match (``identified``)."""
    x = E.attention_inputs(seed)
    facts: dict = {"checked": True, "qperm": x["qperm"].numpy()}
    try:
        weights = _weights(ev)
        layers = {name: load_attention(weights, f) for name, f in ATTENTION_VARIANTS.items()}
    except ValueError as error:
        facts["unavailable"] = f"your weights do not fit CrossAttentionLayer(32, 4): {error}"
        return facts
    outputs = {name: attention_outputs(layer, x) for name, layer in layers.items()}
    facts["expected"] = outputs["reference"]
    facts["variants"] = outputs
    facts["identified"] = _identify(ev, outputs, ("out/plain", "out/mask"))
    return facts


def load_coattention(weights: dict, attention=CrossAttentionLayer):
    block = ReferenceCoAttentionBlock(E.DIM, E.HEADS, attention=attention)
    try:
        block.load_state_dict(weights, strict=True)
    except RuntimeError as error:
        raise ValueError(" ".join(str(error).split())) from None
    return block.eval()


def coattention_outputs(block, variant, x: dict) -> dict[str, np.ndarray]:
    w, o, wm, om = x["words"], x["objects"], x["word_mask"], x["object_mask"]
    out = {}
    with torch.no_grad():
        for key, args in (("out/plain", (w, o)), ("out/mask", (w, o, wm, om)),
                          ("out/junk_objects", (w, x["objects_junk"], wm, om)),
                          ("out/junk_words", (x["words_junk"], o, wm, om))):
            new_words, new_objects = variant(block, *args)
            out[f"{key}/words"], out[f"{key}/objects"] = new_words.numpy(), new_objects.numpy()
    return out


def coattention_facts(ev: dict, seed: int) -> dict:
    """The expected outputs of the co-attention variants on the exported weights, each built on
    every attention variant (a mistake in TODO 1 is not counted again in TODO 2)."""
    facts: dict = {"checked": True}
    try:
        blocks = {name: load_coattention(_weights(ev), f)
                  for name, f in ATTENTION_VARIANTS.items()}
    except ValueError as error:
        facts["unavailable"] = ("your weights do not fit fusionlab.scene_models.CoAttentionBlock"
                                f"(32, 4): {error}")
        return facts
    x = E.coattention_inputs(seed)
    # the attention the block is built on, from its first layer's output on the grader's inputs
    inner = None
    if "sub/attn" in ev:
        with torch.no_grad():
            inner = next((name for name, block in blocks.items() if close(
                ev["sub/attn"], block.words_read_objects.attn(x["words"], x["objects"],
                                                             x["object_mask"]).numpy())), None)
    keys = ("out/plain/words", "out/plain/objects", "out/mask/words", "out/mask/objects")
    outputs = {}
    for name, variant in COATTENTION_VARIANTS.items():
        for attention_name, block in blocks.items():
            if inner is None or attention_name == inner:
                outputs[(name, attention_name)] = coattention_outputs(block, variant, x)
    facts["expected"] = outputs[("reference", inner or "reference")]
    facts["variants"] = outputs
    facts["identified"] = _identify(ev, outputs, keys)
    return facts


def _recorded(ev: dict, facts: dict, key: str, what: str) -> np.ndarray:
    """The recorded output ``key``; when the module was identified, it must also be what the
    identified variant computes from the exported weights."""
    if key not in ev:
        error = text(ev, f"error/{key}")
        if error:
            raise AssertionError(f"{what} " + (error if error.startswith("returned")
                                               else f"raised {error}"))
        raise Skip(f"no evidence for {what}")
    identified = facts.get("identified")
    if identified is not None:
        expected = facts["variants"][identified].get(key)
        if expected is not None and np.shape(ev[key]) == np.shape(expected) \
                and not close(ev[key], expected):  # (another shape: the check says so)
            raise AssertionError(f"the output recorded for {what} is not what your exported "
                                 "weights compute")
    return np.asarray(ev[key])


def _facts_needed(facts: dict) -> None:
    if not facts.get("checked"):
        raise Skip("the facts were not computed")
    if "unavailable" in facts:
        raise AssertionError(f"cannot compare with the reference: {facts['unavailable']}")


# ----------------------------------------------------------------------------- attention checks

implemented = implemented_check("error/out/shape0", wrong_return_is_implemented=True)


def attention_attributes(ev, facts) -> CheckResult:
    if "error/state" in ev:
        raise AssertionError(f"reading the weights raised {text(ev, 'error/state')}")
    types = json.loads(text(ev, "types", "{}"))
    weights = {k[len("state/"):]: np.asarray(v) for k, v in ev.items() if k.startswith("state/")}
    problems = []
    for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
        w, b = weights.get(f"{proj}.weight"), weights.get(f"{proj}.bias")
        if types.get(proj) != "Linear" or w is None or b is None:
            problems.append(f"self.{proj} should be an nn.Linear(dim, dim), found "
                            f"{types.get(proj, 'nothing')}")
        elif w.shape != (E.DIM, E.DIM) or b.shape != (E.DIM,):
            problems.append(f"{proj} should be nn.Linear({E.DIM}, {E.DIM}), found "
                            f"nn.Linear({w.shape[-1]}, {w.shape[0]})")
    extra = sorted(set(weights) - set(CROSS_KEYS))
    if extra and not problems:
        problems.append(f"unexpected weights {', '.join(extra[:4])}: the layer has exactly the "
                        "four projections")
    attrs = json.loads(text(ev, "attrs", "{}"))
    if attrs.get("num_heads") != E.HEADS or attrs.get("head_dim") != E.DIM // E.HEADS:
        problems.append(f"with dim={E.DIM}, num_heads={E.HEADS} expected self.num_heads = "
                        f"{E.HEADS} and self.head_dim = {E.DIM // E.HEADS}, found "
                        f"{attrs.get('num_heads')} and {attrs.get('head_dim')}")
    used = set(json.loads(text(ev, "bases", "[]"))[1:]) | set(
        json.loads(text(ev, "modules", "[]")))
    borrowed = sorted(used & set(FORBIDDEN))
    if borrowed:
        problems.append(f"it uses {', '.join(borrowed)}: write the attention yourself")
    assert not problems, "; ".join(problems)
    return CheckResult("attributes", True, "q_proj, k_proj, v_proj, out_proj are "
                       f"nn.Linear({E.DIM}, {E.DIM}); num_heads = {E.HEADS}, head_dim = "
                       f"{E.DIM // E.HEADS}")


def attention_shapes(ev, facts) -> CheckResult:
    for i, (d, h, B, n_q, n_kv) in enumerate(E.ATTENTION_SHAPE_CASES):
        where = f"with dim={d}, num_heads={h}, query {(B, n_q, d)} and kv {(B, n_kv, d)}"
        key = f"out/shape{i}"
        if key not in ev:
            raise AssertionError(f"{where} it raised {text(ev, f'error/{key}', 'an error')}")
        shape = tuple(np.asarray(ev[key]).shape)
        assert shape == (B, n_q, d), f"{where}: expected output shape {(B, n_q, d)}, got {shape}"
        weights = ev.get(f"weights/shape{i}")
        assert weights is not None, (f"{where}: self.last_attn_weights is not a tensor after the "
                                     "call")
        assert weights.shape == (B, h, n_q, n_kv), (
            f"{where}: expected last_attn_weights of shape {(B, h, n_q, n_kv)} (B, heads, N_q, "
            f"N_kv), got {tuple(weights.shape)}")
    return CheckResult("shapes", True, "output (B, N_q, dim) and last_attn_weights (B, heads, "
                       "N_q, N_kv) for several sizes")


def attention_equivalence(ev, facts) -> CheckResult:
    _facts_needed(facts)
    outs = {k: _recorded(ev, {}, k, "the output") for k in ("out/plain", "out/mask")}
    expected = facts["expected"]
    if facts.get("identified") == "reference":
        return CheckResult("equivalence", True, "equals CrossAttentionLayer with your weights, "
                           "with and without a padding mask")
    for key, out in outs.items():
        if out.shape != expected[key].shape:
            raise AssertionError(f"the output has shape {out.shape}, expected "
                                 f"{expected[key].shape}: fix the shapes first")
    mistake = facts.get("identified")
    diff = max(float(np.max(np.abs(outs[k] - expected[k]))) for k in outs)
    if mistake is None and close(outs["out/plain"], expected["out/plain"]):
        raise AssertionError("without a mask it equals the reference, with a mask it does not: "
                             "check the masking (True = padding, weight 0 on padded keys)")
    raise AssertionError(f"the output differs from the reference by up to {diff:.3g}: " + (
        f"it looks like {MISTAKES[mistake]}" if mistake else
        "check the projections, the split into heads, the scaling by sqrt(head_dim) and the "
        "softmax over the keys"))


def attention_weights(ev, facts) -> CheckResult:
    weights = _recorded(ev, facts, "weights/mask", "last_attn_weights after a masked call")
    mask = E.attention_inputs(E.SEED)["mask"].numpy()  # the same padding for every seed
    assert weights.shape == (3, E.HEADS, 4, 6), (
        f"last_attn_weights should be (B, heads, N_q, N_kv) = (3, 4, 4, 6), got "
        f"{tuple(weights.shape)}")
    assert not bool(ev.get("weights_requires_grad", False)), \
        "last_attn_weights should be detached: self.last_attn_weights = weights.detach()"
    padded = np.broadcast_to(mask[:, None, None, :], weights.shape)
    assert (weights[padded] == 0).all(), (
        f"padded keys get weight up to {float(np.abs(weights[padded]).max()):.3g}, not exactly "
        "0: mask the scores before the softmax (True = padding)")
    sums = weights.sum(-1)  # (B, H, N_q)
    unpadded = ~mask.any(-1)  # samples without padding
    if np.allclose(sums[unpadded], 1.0, atol=1e-5) and (sums[~unpadded] < 1 - 1e-5).any():
        raise AssertionError("with padded keys the weights of a query sum to less than 1: mask "
                             "the scores before the softmax, so that the real keys' weights "
                             "renormalise")
    assert np.allclose(sums, 1.0, atol=1e-5), (
        f"the weights of a query should sum to 1 over the keys, found sums from "
        f"{float(sums.min()):.3f} to {float(sums.max()):.3f}: softmax over the last axis")
    return CheckResult("weights", True, "last_attn_weights is detached, 0 on padded keys, and "
                       "each row sums to 1")


def attention_padding(ev, facts) -> CheckResult:
    out = _recorded(ev, facts, "out/mask", "the masked call")
    junk = _recorded(ev, facts, "out/junk", "the call with junk in the padded slots")
    assert close(out, junk), (
        f"junk (x{E.JUNK_SCALE:g}) in the padded slots changes the output by up to "
        f"{float(np.max(np.abs(out - junk))):.3g}: padded keys must get weight exactly 0")
    return CheckResult("padding", True, "junk in the padded slots changes nothing")


def attention_mask_polarity(ev, facts) -> CheckResult:
    out = _recorded(ev, facts, "out/mask", "the masked call")[1:2]
    kept = _recorded(ev, facts, "out/kept", "the call without the padded keys")
    if close(out, kept):
        return CheckResult("mask_polarity", True, "masking the padded keys (True) equals "
                           "leaving them out")
    pads_only = ev.get("out/pads_only")
    if pads_only is not None and close(out, pads_only):
        raise AssertionError("the output reads only the padded keys: the mask is inverted, "
                             "True marks padding")
    plain = ev.get("out/plain")
    if plain is not None and close(out, plain[1:2]):
        raise AssertionError("the mask changes nothing: it is ignored")
    raise AssertionError("masking the padded keys (True = padding) should equal leaving them "
                         "out of kv")


def attention_order(ev, facts) -> CheckResult:
    out = _recorded(ev, facts, "out/mask", "the masked call")
    perm = _recorded(ev, facts, "out/perm", "the call with the keys reordered")
    qperm = _recorded(ev, facts, "out/qperm", "the call with the queries reordered")
    assert close(out, perm), ("reordering the keys (with their mask) changes the output: "
                              "attention over a set must not depend on the order of the objects")
    if "qperm" in facts:  # each query reads on its own: reordering them reorders the output
        assert close(qperm, out[:, facts["qperm"]]), (
            "reordering the queries should reorder the output the same way, and change nothing "
            "else: every query reads the keys on its own")
    return CheckResult("order", True, "reordering the objects changes nothing")


def _recorded_gradients(ev) -> tuple[list[str], dict[str, np.ndarray]]:
    """The parameter names and their recorded gradients (fails on the kernel's error)."""
    if "error/grad" in ev:
        raise AssertionError(text(ev, "error/grad"))
    params = json.loads(text(ev, "params", "[]"))
    grads = {p: np.asarray(ev[f"grad/{p}"]) for p in params if f"grad/{p}" in ev}
    if not grads:
        raise Skip("no gradients were recorded")
    return params, grads


def attention_gradients(ev, facts) -> CheckResult:
    params, grads = _recorded_gradients(ev)
    if facts.get("identified") is not None:  # computed by the known variant: the grader's fact
        missing = [p for p in params if p not in CROSS_KEYS]
    else:
        missing = [p for p, g in grads.items()
                   if not (np.isfinite(g).all() and np.abs(g).sum() > 0)]
    assert not missing, (f"no gradient reaches {', '.join(missing)}: is it part of the output?")
    return CheckResult("gradients", True, "every parameter receives a gradient")


def attention_bad_input(ev, facts) -> CheckResult:
    outcome = text(ev, "bad_input")
    assert outcome.startswith("ValueError"), (
        f"query and kv of width {E.DIM - 1} should raise a ValueError (keep the given "
        f"check_attention_inputs line); got {outcome}")
    return CheckResult("bad_input", True, "a wrong input shape raises a ValueError")


def accuracy(ev, facts) -> CheckResult:
    """The grader's accuracy verdict on its "what shape is X" questions (``check.accuracy_on``)."""
    return accuracy_on(facts, '"what shape is X" questions')


ATTENTION = {"implemented": implemented, "attributes": attention_attributes,
             "shapes": attention_shapes, "equivalence": attention_equivalence,
             "weights": attention_weights, "padding": attention_padding,
             "mask_polarity": attention_mask_polarity, "order": attention_order,
             "gradients": attention_gradients, "bad_input": attention_bad_input,
             "accuracy": accuracy}


# ----------------------------------------------------------------------------- co-attention

co_implemented = implemented_check("error/out/shape0", wrong_return_is_implemented=True)
_BLOCK_KEYS = tuple(sorted(ReferenceCoAttentionBlock(E.DIM, E.HEADS).state_dict()))


def coattention_attributes(ev, facts) -> CheckResult:
    if "error/state" in ev:
        raise AssertionError(f"reading the weights raised {text(ev, 'error/state')}")
    types = json.loads(text(ev, "types", "{}"))
    problems = []
    for attr in ("words_read_objects", "objects_read_words"):
        if attr not in types:
            problems.append(f"missing attribute self.{attr} (a CrossAttentionBlock(dim, "
                            "num_heads, attention=MaskedMultiHeadAttention))")
    weights = {k[len("state/"):]: np.asarray(v) for k, v in ev.items() if k.startswith("state/")}
    reference = ReferenceCoAttentionBlock(E.DIM, E.HEADS).state_dict()
    if not problems:
        missing = [k for k in reference if k not in weights]
        extra = [k for k in weights if k not in reference]
        wrong = [k for k in reference if k in weights
                 and tuple(weights[k].shape) != tuple(reference[k].shape)]
        for label, keys in (("missing weights", missing), ("unexpected weights", extra),
                            ("weights of another shape", wrong)):
            if keys:
                problems.append(f"{label}: {', '.join(keys[:3])}" + (" ..." if len(keys) > 3
                                                                      else ""))
    attention = json.loads(text(ev, "attention_types", "{}"))
    borrowed = sorted({t for t in attention.values() if t in FORBIDDEN})
    if borrowed and not problems:
        problems.append("the blocks use fusionlab's CrossAttentionLayer: pass "
                        "attention=MaskedMultiHeadAttention, your own")
    assert not problems, "; ".join(problems)
    return CheckResult("attributes", True, "words_read_objects and objects_read_words have the "
                       "weights of fusionlab's CoAttentionBlock, built on your attention")


def coattention_shapes(ev, facts) -> CheckResult:
    for i, (B, L, N) in enumerate(E.COATTENTION_SHAPE_CASES):
        where = f"for words {(B, L, E.DIM)} and objects {(B, N, E.DIM)}"
        if f"out/shape{i}/words" not in ev:
            raise AssertionError(f"{where} it {text(ev, f'error/out/shape{i}', 'failed')}")
        got = (tuple(ev[f"out/shape{i}/words"].shape), tuple(ev[f"out/shape{i}/objects"].shape))
        want = ((B, L, E.DIM), (B, N, E.DIM))
        assert got == want, f"{where} expected (words', objects') of shapes {want}, got {got}"
    return CheckResult("shapes", True, "(words', objects') have the shapes of (words, objects)")


def coattention_equivalence(ev, facts) -> CheckResult:
    _facts_needed(facts)
    keys = ("out/plain/words", "out/plain/objects", "out/mask/words", "out/mask/objects")
    outs = {k: _recorded(ev, {}, k, "the output") for k in keys}
    identified = facts.get("identified")
    on = "" if identified is None or identified[1] == "reference" else (
        f" (on your attention, which looks like: {MISTAKES[identified[1]]})")
    if identified is not None and identified[0] == "reference":
        return CheckResult("equivalence", True, "equals fusionlab's CoAttentionBlock with your "
                           f"weights, with both masks{on}")
    expected = facts["expected"]
    for key in keys:
        if outs[key].shape != expected[key].shape:
            raise AssertionError(f"{key.split('/')[-1]}' has shape {outs[key].shape}, expected "
                                 f"{expected[key].shape}")
    if identified is not None:
        raise AssertionError(f"it looks like {MISTAKES[identified[0]]}{on}")
    raise AssertionError("the output differs from fusionlab's CoAttentionBlock with your "
                         "weights: each direction is a CrossAttentionBlock reading the other "
                         "stream's input, with that stream's padding mask")


def coattention_padding(ev, facts) -> CheckResult:
    identified = facts.get("identified")
    if identified is not None and identified[0] == "reference":  # each mask reaches its keys
        note = "" if identified[1] == "reference" else (
            f" (your attention itself does not mask, see TODO 1: {MISTAKES[identified[1]]})")
        return CheckResult("padding", True, "each direction passes on its keys' padding mask"
                           + note)
    words = _recorded(ev, facts, "out/mask/words", "the masked call")
    objects = _recorded(ev, facts, "out/mask/objects", "the masked call")
    junk_objects = _recorded(ev, facts, "out/junk_objects/words",
                             "the call with junk in the padded objects")
    junk_words = _recorded(ev, facts, "out/junk_words/objects",
                           "the call with junk in the padded words")
    assert close(words, junk_objects), ("junk in the padded object slots changes words': the "
                                        "words reading the objects need object_padding_mask")
    assert close(objects, junk_words), ("junk in the padded word slots changes objects': the "
                                        "objects reading the words need word_padding_mask")
    return CheckResult("padding", True, "junk in padded objects or words changes nothing the "
                       "other stream reads")


def coattention_gradients(ev, facts) -> CheckResult:
    params, grads = _recorded_gradients(ev)
    if facts.get("identified") is not None:
        missing = [p for p in params if p not in _BLOCK_KEYS]
    else:
        missing = [p for p, g in grads.items()
                   if not (np.isfinite(g).all() and np.abs(g).sum() > 0)]
    assert not missing, f"no gradient reaches {', '.join(missing[:4])}: is it part of the output?"
    return CheckResult("gradients", True, "every parameter receives a gradient")


COATTENTION = {"implemented": co_implemented, "attributes": coattention_attributes,
               "shapes": coattention_shapes, "equivalence": coattention_equivalence,
               "padding": coattention_padding, "gradients": coattention_gradients}

# ----------------------------------------------------------------------------- pair sum

pairs_implemented = implemented_check("error/out/shape0", wrong_return_is_implemented=True)


def pairs_facts(ev: dict, seed: int) -> dict:
    """The inputs of the pair-sum evidence, from the seed (the checks need no reference: the
    sum over every pair, and over the real objects' pairs only, are properties)."""
    x = E.pairs_inputs(seed)
    return {"checked": True, "relations": x["relations"].numpy()}


def pairs_shapes(ev, facts) -> CheckResult:
    for i, (B, N, H) in enumerate(E.PAIRS_SHAPE_CASES):
        key = f"out/shape{i}"
        if key not in ev:
            error = text(ev, f"error/{key}", "an error")
            raise AssertionError(f"for relations {(B, N, N, H)} it "
                                 + (error if error.startswith("returned") else f"raised {error}")
                                 + ("" if "NoneType" not in error else ": did you forget return?"))
        shape = tuple(np.asarray(ev[key]).shape)
        assert shape == (B, H), (f"for relations {(B, N, N, H)} expected shape {(B, H)}, got "
                                 f"{shape}: sum over both object axes")
    return CheckResult("shapes", True, "(B, N, N, H) gives (B, H)")


def pairs_sum(ev, facts) -> CheckResult:
    if "relations" not in facts:
        raise Skip("the inputs were not recomputed")
    plain = _recorded(ev, {}, "out/plain", "the call without a mask")
    assert close(plain, facts["relations"].sum(axis=(1, 2))), (
        "without a mask the result should be the sum of relations over every pair (i, j): "
        "relations.sum(dim=(1, 2))")
    masked = _recorded(ev, {}, "out/mask", "the masked call")[1:2]
    kept = _recorded(ev, {}, "out/kept", "the call on the real objects only")
    assert close(masked, kept), (
        "with padding the result should be the sum over the pairs of two real objects: a pair "
        "(i, j) is padding when object i or object j is (mask[:, :, None] | mask[:, None, :])")
    return CheckResult("sum", True, "the sum over every pair of real objects")


def pairs_padding(ev, facts) -> CheckResult:
    out = _recorded(ev, {}, "out/mask", "the masked call")
    junk = _recorded(ev, {}, "out/junk", "the call with junk in the padded pairs")
    assert close(out, junk), (
        f"junk in the pairs with a padded object changes the result by up to "
        f"{float(np.max(np.abs(out - junk))):.3g}: leave every such pair out of the sum")
    return CheckResult("padding", True, "junk in the pairs with a padded object changes nothing")


def pairs_bad_input(ev, facts) -> CheckResult:
    outcome = text(ev, "bad_input")
    assert outcome.startswith("ValueError"), (f"relations of shape (2, 3, 4, 8) should raise a "
                                              f"ValueError (keep the given checks); got "
                                              f"{outcome}")
    return CheckResult("bad_input", True, "a wrong input shape raises a ValueError")


PAIRS_CHECKS = ("implemented", "shapes", "sum", "padding", "bad_input")
PAIRS = {"implemented": pairs_implemented, "shapes": pairs_shapes, "sum": pairs_sum,
         "padding": pairs_padding, "bad_input": pairs_bad_input}

# exercise -> (checks, facts)
EXERCISES = {"attention": (ATTENTION, attention_facts),
             "coattention": (COATTENTION, coattention_facts),
             "pairs": (PAIRS, pairs_facts)}


def _facts(exercise: str, ev: dict, seed: int) -> dict:
    if str(ev.get("status", "")) != "ok":
        return {}
    try:
        return EXERCISES[exercise][1](ev, seed)
    except Exception as error:  # noqa: BLE001 (evidence of an unexpected form)
        return {"checked": True, "unavailable": f"{type(error).__name__}: {error}"}


# ----------------------------------------------------------------------------- entry points

def attention_results(cls):
    ev = E.collect_attention(cls, E.SEED)
    return run(ATTENTION, ATTENTION_CHECKS, ev, _facts("attention", ev, E.SEED))


def coattention_results(cls):
    ev = E.collect_coattention(cls, E.SEED)
    return run(COATTENTION, COATTENTION_CHECKS, ev, _facts("coattention", ev, E.SEED))


def pairs_results(fn):
    ev = E.collect_pairs(fn, E.SEED)
    return run(PAIRS, PAIRS_CHECKS, ev, _facts("pairs", ev, E.SEED))


def pairs(fn) -> None:
    """Print the self-check of a ``relation_pair_sum`` function."""
    report(getattr(fn, "__name__", repr(fn)), pairs_results(fn))


def attention(cls) -> None:
    """Print the self-check of a ``MaskedMultiHeadAttention`` class."""
    report(getattr(cls, "__name__", repr(cls)), attention_results(cls))


def coattention(cls) -> None:
    """Print the self-check of a ``CoAttentionBlock`` class."""
    report(getattr(cls, "__name__", repr(cls)), coattention_results(cls))
