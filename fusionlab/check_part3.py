"""Self-checks of Part 3's TODOs: the GMU, the tanh-gated cross-attention block and modality
dropout. The same design as ``fusionlab.check``: a collector (``fusionlab.evidence_part3``)
runs the student's code on inputs drawn from a seed and records what it did as plain arrays (an
evidence dict), and each check is a small function ``check(evidence, facts) -> CheckResult``
on that evidence; ``fusionlab.check.run`` executes them (``implemented`` first) and
``fusionlab.check.report`` prints the verdicts. The notebook's self-check cells::

    check_part3.gmu(GatedMultimodalUnit)
    check_part3.tanh_gated_block(TanhGatedCrossAttention)
    check_part3.modality_dropout(modality_dropout)

(A module of its own, next to ``fusionlab.check``: the package has no import cycles.) The
equivalence
checks compare the output with the exercise's formula evaluated on the outputs of the student's
own submodules, after every parameter was moved off its initial value; no implementation of a
TODO lives in the package. In the self-check those submodule outputs and inputs come from the
evidence itself; in the grader (``autograder.hidden.part3``) ``facts`` holds them recomputed
from the exported weights and the seed (``facts["grader"]``), and the evidence's own copies are
never read. A self-check runs in the student's kernel: it is a hint, never a grade.
"""

from __future__ import annotations

import json

import numpy as np

from .check import CheckResult, Skip, close, implemented_check, report, run, text
from .evidence_part3 import (
    BLOCK_DIM,
    DROPOUT_RATES,
    OPEN_ALPHA,
    RATE_SAMPLES,
    collect_block,
    collect_dropout,
    collect_gmu,
)
from .models import CrossAttentionLayer

GMU_CHECKS = ("implemented", "attributes", "shapes", "equivalence", "last_gate", "bad_input")
BLOCK_CHECKS = ("implemented", "attributes", "identity_at_init", "alpha_gradient", "equivalence",
                "mask")
DROPOUT_CHECKS = ("implemented", "returns", "rule", "rate", "replacement", "tokens", "bad_p")


def value(ev: dict, facts: dict, key: str):
    """``key`` from the grader's facts when a grader decides, else from the evidence."""
    return facts.get(key) if facts.get("grader") else ev.get(key)


implemented = implemented_check("error/out")


# ----------------------------------------------------------------------------- the GMU

def gmu_attributes(ev, facts) -> CheckResult:
    types = json.loads(text(ev, "types", "{}"))
    # the shapes of the exported weights, which the grader computes with, not a list the
    # kernel reports beside them
    shapes = {k[len("state/"):]: list(np.shape(v)) for k, v in ev.items()
              if k.startswith("state/")}
    wanted = {"img_proj": [32, 32], "txt_proj": [32, 16], "gate_proj": [32, 48]}
    for name, shape in wanted.items():
        assert types.get(name) == "Linear", (f"self.{name} should be an nn.Linear, found "
                                             f"{types.get(name, 'nothing')}")
        found = shapes.get(f"{name}.weight")
        assert found == shape, (f"{name}.weight should have shape {tuple(shape)} (out, in), "
                                f"found {tuple(found) if found else None}")
    return CheckResult("attributes", True, "img_proj, txt_proj and gate_proj are nn.Linear "
                       "layers of the right sizes (gate_proj reads [x_v; x_t])")


def gmu_shapes(ev, facts) -> CheckResult:
    for B in (1, 5):
        out = ev.get(f"shape{B}")
        if out is None:
            raise AssertionError(f"with B = {B} it raised {text(ev, f'error/shape{B}')}"
                                 if f"error/shape{B}" in ev else "the output is not a tensor")
        assert out.shape == (B, 32), f"expected h of shape ({B}, 32), got {tuple(out.shape)}"
    return CheckResult("shapes", True, "h has shape (B, hidden_dim)")


def gmu_equivalence(ev, facts) -> CheckResult:
    sub = {n: value(ev, facts, f"sub/{n}") for n in ("img_proj", "txt_proj", "gate_proj")}
    if any(v is None for v in sub.values()):
        raise Skip("img_proj, txt_proj or gate_proj is missing or of the wrong size")
    out = ev.get("eq/out")
    if out is None:
        raise AssertionError("the output is not a tensor")
    h_v, h_t = np.tanh(sub["img_proj"]), np.tanh(sub["txt_proj"])
    z = 1 / (1 + np.exp(-sub["gate_proj"]))
    if close(out, z * h_v + (1 - z) * h_t):
        return CheckResult("equivalence", True, "h = z * h_v + (1 - z) * h_t with your layers")
    if close(out, (1 - z) * h_v + z * h_t):
        raise AssertionError("z weights the wrong modality: h = z * h_v + (1 - z) * h_t "
                             "(z = 1: the image speaks)")
    if close(out, z * sub["img_proj"] + (1 - z) * sub["txt_proj"]):
        raise AssertionError("the tanh is missing: h_v = tanh(img_proj(x_v)), "
                             "h_t = tanh(txt_proj(x_t))")
    raise AssertionError("h does not follow h = z * h_v + (1 - z) * h_t with "
                         "z = sigmoid(gate_proj([x_v; x_t]))")


def gmu_last_gate(ev, facts) -> CheckResult:
    if "eq/last_gate" not in ev:
        raise AssertionError("self.last_gate is not a tensor after a forward call: keep z, "
                             "detached, in self.last_gate")
    gate = ev["eq/last_gate"]
    assert gate.shape == (6, 32), f"last_gate should be (B, hidden_dim) = (6, 32), got {gate.shape}"
    gate_proj = value(ev, facts, "sub/gate_proj")
    if gate_proj is not None:
        assert close(gate, 1 / (1 + np.exp(-gate_proj))), \
            "last_gate should be z = sigmoid(gate_proj([x_v; x_t])) of the last call"
    assert not bool(ev.get("last_gate_requires_grad", False)), \
        "last_gate should be detached: self.last_gate = z.detach()"
    return CheckResult("last_gate", True, "last_gate holds z (B, hidden_dim), detached")


def gmu_bad_input(ev, facts) -> CheckResult:
    outcome = text(ev, "bad_input")
    assert outcome.startswith("ValueError"), (f"a (3, 16) image should raise a ValueError "
                                              f"(keep the given check_pair line); got {outcome}")
    return CheckResult("bad_input", True, "a wrong input shape raises a ValueError")


GMU = {"implemented": implemented, "attributes": gmu_attributes, "shapes": gmu_shapes,
       "equivalence": gmu_equivalence, "last_gate": gmu_last_gate, "bad_input": gmu_bad_input}


# ----------------------------------------------------------------------------- the gated block

def block_attributes(ev, facts) -> CheckResult:
    types = json.loads(text(ev, "types", "{}"))
    assert types.get("cross_attn") == CrossAttentionLayer.__name__, (
        f"self.cross_attn should be a CrossAttentionLayer(dim, num_heads), found "
        f"{types.get('cross_attn', 'nothing')}")
    assert bool(ev.get("alpha_is_parameter", False)), \
        "self.alpha should be an nn.Parameter (a plain tensor is never trained)"
    alpha = ev.get("init/alpha")
    assert alpha is not None and alpha.shape == (1,), (
        f"alpha should have shape (1,), got {None if alpha is None else tuple(alpha.shape)}")
    assert float(alpha[0]) == 0.0, f"alpha should start at 0, it starts at {float(alpha[0]):.4g}"
    # alpha's initial value as the block used it: at alpha = 0 the output is y (or 0, when the
    # residual is missing), whatever the cross-attention says
    out, y = ev.get("out"), value(ev, facts, "eq/y")
    assert out is not None and y is not None and out.shape == y.shape, (
        "alpha's initial value cannot be confirmed: the block gave no output shaped like y at "
        "initialisation")
    assert close(out, y) or close(out, np.zeros_like(y)), (
        "alpha is reported at 0, but the output at initialisation is neither y nor 0: the "
        "block did not use alpha = 0 (is the update multiplied by tanh(alpha)?)")
    return CheckResult("attributes", True, "cross_attn is a CrossAttentionLayer, alpha an "
                       "nn.Parameter of shape (1,) at 0")


def block_identity(ev, facts) -> CheckResult:
    out = ev.get("out")
    assert out is not None, "the output is not a tensor"
    assert out.shape == (3, 4, BLOCK_DIM), f"expected the shape of y, (3, 4, 32), got {out.shape}"
    assert np.array_equal(out, value(ev, facts, "eq/y")), (
        "at initialisation the output should be y exactly (tanh(0) = 0): is alpha at 0, and is "
        "the update multiplied by tanh(alpha)?")
    return CheckResult("identity_at_init", True, "at initialisation the block returns y exactly")


def block_alpha_gradient(ev, facts) -> CheckResult:
    if "error/grad" in ev:
        raise AssertionError(text(ev, "error/grad"))
    grad = ev.get("grad/alpha")
    assert grad is not None and np.isfinite(grad).all() and np.abs(grad).sum() > 0, (
        "alpha received no gradient at initialisation: the output must depend on alpha "
        "through tanh(alpha) * cross_attn(y, x)")
    return CheckResult("alpha_gradient", True, "alpha receives a gradient at initialisation")


def _gated(ev, facts, prefix):
    sub, y = value(ev, facts, f"{prefix}/sub"), value(ev, facts, "eq/y")
    if f"{prefix}/out" not in ev or sub is None:
        raise Skip("cross_attn or alpha is missing, or the block raised "
                   + text(ev, f"error/{prefix}/out"))
    return ev[f"{prefix}/out"], y + np.tanh(OPEN_ALPHA) * sub, sub, y


def block_equivalence(ev, facts) -> CheckResult:
    out, expected, sub, y = _gated(ev, facts, "eq")
    if close(out, expected):
        return CheckResult("equivalence", True, "y + tanh(alpha) * cross_attn(y, x) with alpha "
                           f"= {OPEN_ALPHA}")
    if close(out, y + OPEN_ALPHA * sub):
        raise AssertionError("the tanh is missing: the update is tanh(alpha) * cross_attn(y, x)")
    if close(out, np.tanh(OPEN_ALPHA) * sub):
        raise AssertionError("the residual is missing: y + tanh(alpha) * cross_attn(y, x)")
    raise AssertionError("with alpha = 0.7 the output is not y + tanh(alpha) * cross_attn(y, x)")


def block_mask(ev, facts) -> CheckResult:
    out, expected, _, _ = _gated(ev, facts, "mask")
    assert close(out, expected), ("key_padding_mask is not passed on: call "
                                  "self.cross_attn(y, x, key_padding_mask)")
    return CheckResult("mask", True, "key_padding_mask reaches the cross-attention")


BLOCK = {"implemented": implemented, "attributes": block_attributes,
         "identity_at_init": block_identity, "alpha_gradient": block_alpha_gradient,
         "equivalence": block_equivalence, "mask": block_mask}


# ----------------------------------------------------------------------------- modality dropout

def dropout_returns(ev, facts) -> CheckResult:
    assert text(ev, "returns") == "ok", (f"modality_dropout should return a tuple (x_dropped, "
                                         f"dropped) of two tensors; it {text(ev, 'returns')}")
    for p in DROPOUT_RATES:
        if f"dropped{p}" in ev:
            assert ev[f"x{p}"].shape == (64, 8), "x_dropped should have x's shape (64, 8)"
            assert ev[f"dropped{p}"].shape == (64,), "dropped should have shape (B,)"
            assert text(ev, f"dtype{p}") == "torch.bool", (f"dropped should be a bool tensor, "
                                                           f"got {text(ev, f'dtype{p}')}")
    return CheckResult("returns", True, "(x_dropped, dropped): x's shape and a bool (B,)")


def dropout_rule(ev, facts) -> CheckResult:
    u = value(ev, facts, "u")
    expected = {p: u < p for p in DROPOUT_RATES}
    for p, want in expected.items():
        got = ev.get(f"dropped{p}")
        if got is None:
            raise Skip(f"no result for p = {p}")
        assert np.array_equal(got.astype(bool), want), (
            f"with p = {p} the dropped samples are not those with u < p for u = torch.rand(B, "
            f"generator=generator): draw exactly one number per sample from the generator")
    return CheckResult("rule", True, "drops exactly the samples with u < p, one draw per sample")


def dropout_rate(ev, facts) -> CheckResult:
    if "rate" not in ev:
        raise AssertionError(f"without a generator it raised {text(ev, 'error/rate')}")
    dropped = np.asarray(ev["rate"])  # the returned mask itself: its mean is computed here
    assert dropped.shape == (RATE_SAMPLES,) and np.isin(dropped, (0.0, 1.0)).all(), (
        f"without a generator, dropped should be a bool tensor ({RATE_SAMPLES},), got "
        f"shape {dropped.shape}")
    rate = float(dropped.mean())
    margin = 4 * (0.3 * 0.7 / RATE_SAMPLES) ** 0.5
    assert abs(rate - 0.3) < margin, (f"with p = 0.3 it dropped {rate:.3f} of {RATE_SAMPLES} "
                                      f"samples: each sample is dropped with probability p")
    return CheckResult("rate", True, f"with p = 0.3 it drops {rate:.3f} of the samples")


def dropout_replacement(ev, facts) -> CheckResult:
    x = value(ev, facts, "x")
    assert np.array_equal(ev["x_after"], x), "x itself was changed: return a new tensor"
    for p in DROPOUT_RATES:
        if f"x{p}" not in ev:
            continue
        dropped = ev[f"dropped{p}"].astype(bool)
        out = ev[f"x{p}"]
        assert (out[dropped] == 0).all(), f"p = {p}: a dropped sample should be all zeros"
        assert np.array_equal(out[~dropped], x[~dropped]), (
            f"p = {p}: a kept sample should be unchanged (no rescaling)")
    return CheckResult("replacement", True, "dropped samples are zeros, the others unchanged")


def dropout_tokens(ev, facts) -> CheckResult:
    if "tok" not in ev:
        raise AssertionError(f"on tokens (B, N, D) it raised {text(ev, 'error/tok')}")
    out, tokens = ev["tok"], value(ev, facts, "tok/in")
    dropped = value(ev, facts, "tok/u") < 0.5
    assert out.shape == tokens.shape, f"expected the tokens' shape {tokens.shape}, got {out.shape}"
    assert (out[dropped] == 0).all() and np.array_equal(out[~dropped], tokens[~dropped]), (
        "on tokens (B, N, D) every token of a dropped sample should be 0 and the rest unchanged")
    return CheckResult("tokens", True, "works on token sequences (B, N, D) too")


def dropout_bad_p(ev, facts) -> CheckResult:
    outcome = text(ev, "bad_p")
    assert outcome.startswith("ValueError"), f"p = 1.5 should raise a ValueError; got {outcome}"
    return CheckResult("bad_p", True, "p outside [0, 1] raises a ValueError")


DROPOUT = {"implemented": implemented, "returns": dropout_returns, "rule": dropout_rule,
           "rate": dropout_rate, "replacement": dropout_replacement, "tokens": dropout_tokens,
           "bad_p": dropout_bad_p}


# ----------------------------------------------------------------------------- entry points

def gmu_results(cls):
    return run(GMU, GMU_CHECKS, collect_gmu(cls), {})


def block_results(cls):
    return run(BLOCK, BLOCK_CHECKS, collect_block(cls), {})


def dropout_results(fn):
    return run(DROPOUT, DROPOUT_CHECKS, collect_dropout(fn), {})


def gmu(cls) -> None:
    """Print the self-check of a ``GatedMultimodalUnit`` class."""
    report(getattr(cls, "__name__", repr(cls)), gmu_results(cls))


def tanh_gated_block(cls) -> None:
    """Print the self-check of a ``TanhGatedCrossAttention`` class."""
    report(getattr(cls, "__name__", repr(cls)), block_results(cls))


def modality_dropout(fn) -> None:
    """Print the self-check of a ``modality_dropout`` function."""
    report(getattr(fn, "__name__", repr(fn)), dropout_results(fn))
