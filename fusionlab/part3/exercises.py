"""Part 3's graded exercises: the gated multimodal unit (TODO 1), the tanh-gated cross-attention
block (TODO 2) and modality dropout (TODO 3).

Each exercise is one ``Exercise`` (``fusionlab.grading.registry``): its table row in
``exercises.toml`` (target, self-check order, graded cells), and here how its behaviour is
recorded and the checks that judge the record. The checks hold
no formula of a TODO: they compare with facts. In a self-check the facts are stored known
answers (``known_answers.npz``, written by ``python -m autograder.authoring.known_answers``)
plus the public inputs drawn here; in the grader the trusted references recompute them from the
weights the clean room exported and the grading seed (``autograder.hidden.part3``). The facts' keys:

- ``inputs``: the inputs the evidence was collected on (``gmu_inputs``, ``block_inputs``,
  ``dropout_inputs``), as arrays;
- ``variants``: ``{variant: {output key: array}}``, the reference (``"reference"``) and each
  known mistake (worded in ``MISTAKES``), so that a verdict can name the mistake;
- ``grads``: ``{variant: {parameter: gradient}}`` of the projection loss on the same weights;
- ``gates``: the GMU's gate ``z`` of each variant on the equivalence inputs;
- ``sub``: ``{attribute: array}``, what each submodule's type computes with its weights;
- ``dropped``: per dropout rate (``"0"``, ``"1"``, ...), the samples the rule drops;
- ``unavailable``: why the weights do not fit the interface;
- ``accuracy``: the grader's measurement of an accuracy cell (grader only).

The two accuracy cells are measured for any implementation that runs: the clean room trains the
student's code as the notebook does (``train_gmu``, ``train_modality_dropout``) and returns its
predictions on the grader's inputs; the grader scores them with labels that never enter it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..grading import results
from ..grading.checks import equivalence, gradient_problems, identified, shapes
from ..grading.known import KnownAnswers
from ..grading.registry import Declarations, register
from ..grading.results import CheckResult, Skip
from ..grading.seeds import Stream, derive, generator
from ..grading.toolkit import (
    bad_input,
    build_module,
    describe_error,
    fit_quietly,
    guarded_module_state,
    isolated,
    load_weights,
    projected_gradients,
    record,
    record_pair,
    stored_attribute,
    to_array,
)

ASSIGNMENT = "part3_who_gets_to_speak"


@dataclass(frozen=True)
class Part3Config:
    """The sizes and settings the grader and the self-checks use for Part 3's exercises."""

    gmu_sizes: dict = field(default_factory=lambda: dict(img_dim=32, txt_dim=16, hidden_dim=32))
    gmu_batches: tuple = (2, 1, 5)  # the shape cases; the first is the visible test's
    gmu_eq_batch: int = 6
    block_dim: int = 32
    block_heads: int = 4
    block_shape: tuple = (3, 4, 5)  # (B, N_y, N_x)
    open_alpha: float = 0.7  # the block's equivalence is checked with the gate open
    dropout_shape: tuple = (64, 8)
    dropout_rates: tuple = (0.0, 0.3, 1.0)
    token_shape: tuple = (10, 3, 4)
    token_rate: float = 0.5
    rate_samples: int = 20000  # the dropout rate without a generator: |rate - p| < 4 s.e.
    rate_p: float = 0.3
    rate_sigmas: float = 4.0
    bad_rates: tuple = (1.5, -0.1)
    # the accuracy cells: trained with fusionlab.train.fit as the notebook trains
    gmu_training: dict = field(default_factory=lambda: dict(n_train=1000, epochs=8, lr=3e-3,
                                                           batch_size=64))
    dropout_training: dict = field(default_factory=lambda: dict(n_train=2000, epochs=8, lr=3e-3,
                                                               batch_size=64))
    dropout_p_txt: float = 0.5  # the text is dropped with this probability while training
    dropout_classes: int = 4  # the redundant task's classes
    eval_samples: int = 2000  # the grader's evaluation data of each accuracy cell
    # measured: python -m autograder.authoring.thresholds part3 (autograder/README.md)
    gmu_accuracy_threshold: float = 0.90
    gmu_correlation_threshold: float = 0.55  # |corr(z, M)|: the gate follows the switch
    gmu_gate_change: float = 0.01  # mean |z after - z before training|: the gate trains
    dropout_complete_threshold: float = 0.90
    dropout_missing_loss_threshold: float = 1.10


CONFIG = Part3Config()
KNOWN = KnownAnswers(__package__)

# What each known mistake looks like, in words (the grader holds the formulas).
MISTAKES = {
    "swapped_gate": "z weights the wrong modality: h = z * h_v + (1 - z) * h_t (z near 1: the "
                    "image speaks)",
    "no_tanh": "the tanh is missing: h_v = tanh(img_proj(x_v)), h_t = tanh(txt_proj(x_t))",
    "swapped_concat": "the gate reads [x_t; x_v]: concatenate the image features first, "
                      "torch.cat([img_feat, txt_feat], dim=-1)",
    "block_no_tanh": "the tanh is missing: the update is torch.tanh(self.alpha) * "
                     "cross_attn(y, x)",
    "block_sigmoid": "the gate is sigmoid(alpha), which is 0.5 at alpha = 0: use "
                     "torch.tanh(self.alpha), which is 0 there",
    "block_no_residual": "the residual is missing: y + tanh(alpha) * cross_attn(y, x)",
}
CROSS_KEYS = tuple(f"{p}_proj.{w}" for p in ("q", "k", "v", "out") for w in ("weight", "bias"))


# ----------------------------------------------------------------------------- inputs

def gmu_inputs(seed: int) -> dict[str, torch.Tensor]:
    """The inputs the GMU's evidence is collected on (the grader recomputes them)."""
    g = generator(seed, "gmu", Stream.INPUTS)
    s = CONFIG.gmu_sizes
    x = {}
    for i, B in enumerate(CONFIG.gmu_batches):
        x[f"shape{i}/img"] = torch.randn(B, s["img_dim"], generator=g)
        x[f"shape{i}/txt"] = torch.randn(B, s["txt_dim"], generator=g)
    x["eq/img"] = torch.randn(CONFIG.gmu_eq_batch, s["img_dim"], generator=g)
    x["eq/txt"] = torch.randn(CONFIG.gmu_eq_batch, s["txt_dim"], generator=g)
    x["grad/projection"] = torch.randn(CONFIG.gmu_eq_batch, s["hidden_dim"], generator=g)
    return x


def block_inputs(seed: int) -> dict[str, torch.Tensor]:
    """The block's inputs: queries ``y`` and keys ``x``."""
    g = generator(seed, "tanh_gated", Stream.INPUTS)
    B, n_y, n_x = CONFIG.block_shape
    d = CONFIG.block_dim
    return {"y": torch.randn(B, n_y, d, generator=g), "x": torch.randn(B, n_x, d, generator=g),
            "grad/projection": torch.randn(B, n_y, d, generator=g)}


def dropout_inputs(seed: int) -> dict[str, torch.Tensor]:
    """The inputs of modality dropout, away from 0 so that no entry is 0 by chance."""
    x = torch.randn(*CONFIG.dropout_shape, generator=generator(seed, "modality_dropout",
                                                                  Stream.INPUTS)) + 3.0
    tokens = torch.randn(*CONFIG.token_shape, generator=generator(seed, "modality_dropout",
                                                                     Stream.TOKENS)) + 3.0
    return {"x": x, "tokens": tokens}


def dropout_draws(seed: int) -> torch.Generator:
    """A fresh generator of the draws handed to ``modality_dropout`` (its draws are the spec)."""
    return generator(seed, "modality_dropout", Stream.DRAWS)


def token_draws(seed: int) -> torch.Generator:
    return generator(seed, "modality_dropout", Stream.TOKEN_DRAWS)


def _arrays(inputs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in inputs.items()}


def with_inputs(name: str, inputs):
    """The ``self_check_facts(ev, seed)`` of an exercise: its stored known answers plus the
    inputs drawn here (an exact comparison with a stored copy could fail on a CPU whose
    random kernels round the last bit differently)."""
    return lambda ev, seed: {**KNOWN.facts(name, ev), "inputs": _arrays(inputs(seed))}


# ----------------------------------------------------------------------------- collectors

def collect_gmu(cls, seed: int, weights=None) -> dict:
    """Evidence on a ``GatedMultimodalUnit`` class; never raises."""
    s = CONFIG.gmu_sizes
    ev: dict = {}
    x = gmu_inputs(seed)
    with isolated(seed):
        module = build_module(ev, seed, cls, **s)
        if module is None:
            return ev
        guarded_module_state(ev, module, weights, seed, "gmu")
        module.eval()
        with torch.no_grad():
            for i in range(len(CONFIG.gmu_batches)):
                record(ev, f"out/shape{i}", lambda i=i: module(x[f"shape{i}/img"],
                                                              x[f"shape{i}/txt"]))
        # with gradients on, as in training: last_gate must be detached by the unit itself
        record(ev, "out/eq", lambda: module(x["eq/img"], x["eq/txt"]))
        gate = stored_attribute(module, "last_gate")
        if isinstance(gate, torch.Tensor):
            ev["out/last_gate"] = to_array(gate)
            ev["last_gate/requires_grad"] = np.array(bool(gate.requires_grad))
        else:
            ev["error/out/last_gate"] = np.array(
                f"self.last_gate is {'None' if gate is None else 'a ' + type(gate).__name__}, "
                "not a tensor")
        with torch.no_grad():
            both = torch.cat([x["eq/img"], x["eq/txt"]], dim=-1)
            for attr, inp in (("img_proj", x["eq/img"]), ("txt_proj", x["eq/txt"]),
                              ("gate_proj", both)):
                record(ev, f"sub/{attr}", lambda attr=attr, inp=inp: getattr(module, attr)(inp))
        projected_gradients(ev, module, lambda: module(x["eq/img"], x["eq/txt"]),
                            x["grad/projection"], seed, "gmu")
    return ev


def collect_tanh_gated(cls, seed: int, weights=None) -> dict:
    """Evidence on a ``TanhGatedCrossAttention`` class; never raises. The output at
    initialisation, then with ``alpha`` open (known weights, or every other parameter moved
    off its initial value), and the gradients at ``alpha = 0``."""
    d, h = CONFIG.block_dim, CONFIG.block_heads
    ev: dict = {}
    inp = block_inputs(seed)
    y, x = inp["y"], inp["x"]
    with isolated(seed):
        module = build_module(ev, seed, cls, d, h)
        if module is None:
            return ev
        alpha = stored_attribute(module, "alpha")
        if isinstance(alpha, torch.Tensor):  # its initial value, registered or not
            ev["attr/alpha"] = to_array(alpha)
            ev["attr/alpha_type"] = np.array(type(alpha).__name__)
        module.eval()
        with torch.no_grad():
            record(ev, "out/init", lambda: module(y.clone(), x.clone()))
        guarded_module_state(ev, module, weights, seed, "tanh_gated",
                             fixed={"alpha": np.array([CONFIG.open_alpha], dtype=np.float32)})
        with torch.no_grad():
            record(ev, "out/eq", lambda: module(y.clone(), x.clone()))
            record(ev, "sub/cross_attn", lambda: module.cross_attn(y.clone(), x.clone()))
        try:  # the gate closed, as at initialisation: alpha's gradient there
            closed = load_weights(module, {"alpha": np.zeros(1, dtype=np.float32)})
            ev["closed_gate"] = np.array(json.dumps(closed))
        except Exception as error:  # noqa: BLE001
            ev["error/grad"] = np.array(f"closing the gate raised {describe_error(error)}")
            return ev
        projected_gradients(ev, module, lambda: module(y.clone(), x.clone()),
                            inp["grad/projection"], seed, "tanh_gated")
    return ev


def collect_modality_dropout(fn, seed: int, weights=None) -> dict:
    """Evidence on a ``modality_dropout`` function; never raises (``weights``: unused)."""
    ev: dict = {"status": np.array("ok")}
    inp = dropout_inputs(seed)
    x, tokens = inp["x"], inp["tokens"]
    with isolated(seed):
        for i, p in enumerate(CONFIG.dropout_rates):
            out = record_pair(ev, f"out/p{i}", lambda p=p: fn(x.clone(), p, dropout_draws(seed)),
                              ("x", "dropped"))
            if out is not None:
                ev[f"out/p{i}/dtype"] = np.array(str(out[1].dtype))
        # the same call again, with an equally seeded generator: the draws must be the same
        record_pair(ev, "again", lambda: fn(x.clone(), CONFIG.dropout_rates[1],
                                            dropout_draws(seed)), ("x", "dropped"))
        probe = x.clone()
        try:
            fn(probe, CONFIG.dropout_rates[1], dropout_draws(seed))
        except Exception:  # noqa: BLE001 (the calls above record what it raises)
            pass
        ev["x_after"] = to_array(probe)  # a change of the input in place shows here
        record(ev, "rate", lambda: fn(torch.ones(CONFIG.rate_samples, 2), CONFIG.rate_p,
                                      None)[1])
        record_pair(ev, "out/tokens", lambda: fn(tokens.clone(), CONFIG.token_rate,
                                                 token_draws(seed)), ("x", "dropped"))
        for j, p in enumerate(CONFIG.bad_rates):
            bad_input(ev, lambda p=p: fn(x.clone(), p, None), key=f"bad_p/{j}")
    return ev


# ----------------------------------------------------------------------------- training

def switch_training_data(seed: int):
    """The GMU accuracy cell's training set: the switch task (the grader evaluates elsewhere)."""
    from .data import SwitchDataset

    return SwitchDataset(CONFIG.gmu_training["n_train"],
                         seed=derive(seed, "gmu", Stream.TRAINING) % 2**31)


def redundant_training_data(seed: int):
    """The modality-dropout accuracy cell's training set: the redundant task."""
    from .data import RedundantDataset

    return RedundantDataset(CONFIG.dropout_training["n_train"],
                            seed=derive(seed, "modality_dropout", Stream.TRAINING) % 2**31,
                            num_classes=CONFIG.dropout_classes)


class TextDropout(nn.Module):
    """``model`` whose text input goes through ``fn`` (a ``modality_dropout``) while training,
    each sample's text dropped with probability ``p_txt``; in eval mode nothing changes."""

    def __init__(self, model: nn.Module, fn, p_txt: float):
        super().__init__()
        self.model, self.fn, self.p_txt = model, fn, p_txt

    def forward(self, img_feat, txt_feat):
        if self.training:
            txt_feat, _ = self.fn(txt_feat, self.p_txt)
        return self.model(img_feat, txt_feat)


def train_gmu(cls, seed: int, inputs: dict) -> dict:
    """``FusionClassifier(cls(), 2)`` trained on the switch task as the notebook trains it; its
    logits on the grader's inputs ``img`` and ``txt``, and the unit's gate there (``last_gate``,
    when it keeps one) after training and, with the same initial weights, before."""
    from .models import FusionClassifier

    torch.manual_seed(derive(seed, "gmu", Stream.MODEL))
    model = FusionClassifier(cls(**CONFIG.gmu_sizes), 2)
    img, txt = torch.as_tensor(inputs["img"]), torch.as_tensor(inputs["txt"])
    found = {}
    with torch.no_grad():  # the gate before training: a gate that trains moves
        model.eval()(img, txt)
    gate = stored_attribute(model.fusion, "last_gate")
    if isinstance(gate, torch.Tensor):
        found["gate_initial"] = gate.detach().clone()
    fit_quietly(model, switch_training_data(seed), CONFIG.gmu_training, seed)
    with torch.no_grad():
        found["logits"] = model(img, txt)
    gate = stored_attribute(model.fusion, "last_gate")
    if isinstance(gate, torch.Tensor):
        found["gate"] = gate
    return found


def train_modality_dropout(fn, seed: int, inputs: dict) -> dict:
    """``EarlyFusion`` trained on the redundant task with ``fn`` dropping the text; its logits
    on the grader's inputs with every text present and with every text zeroed."""
    from ..models import EarlyFusion

    torch.manual_seed(derive(seed, "modality_dropout", Stream.MODEL))
    model = TextDropout(EarlyFusion(32, 16, num_classes=CONFIG.dropout_classes), fn,
                        CONFIG.dropout_p_txt)
    fit_quietly(model, redundant_training_data(seed), CONFIG.dropout_training, seed)
    img, txt = torch.as_tensor(inputs["img"]), torch.as_tensor(inputs["txt"])
    with torch.no_grad():
        return {"logits": model(img, txt), "logits_text_missing": model(img, torch.zeros_like(txt))}


# ----------------------------------------------------------------------------- the GMU

def _gmu_layers() -> dict[str, tuple[int, int]]:
    """attribute -> (in_features, out_features) of the GMU's three layers."""
    s = CONFIG.gmu_sizes
    H = s["hidden_dim"]
    return {"img_proj": (s["img_dim"], H), "txt_proj": (s["txt_dim"], H),
            "gate_proj": (s["img_dim"] + s["txt_dim"], H)}


GMU_FORMULA = ("h_v = tanh(img_proj(x_v)), h_t = tanh(txt_proj(x_t)), z = sigmoid(gate_proj("
               "[x_v; x_t])), h = z * h_v + (1 - z) * h_t")


def _linear_problem(state: dict, attr: str, in_f: int, out_f: int) -> str | None:
    """What is wrong with ``attr`` as an ``nn.Linear(in_f, out_f)`` in the exported weights."""
    w, b = state.get(f"{attr}.weight"), state.get(f"{attr}.bias")
    if w is None:
        return f"missing attribute `{attr}` (expected nn.Linear({in_f}, {out_f}))"
    if w.ndim != 2 or w.shape != (out_f, in_f):
        found = (f"nn.Linear({w.shape[1]}, {w.shape[0]})" if w.ndim == 2
                 else f"a weight of shape {results.shape_text(w.shape)}")
        hint = (": the gate reads the image and the text features together, "
                "torch.cat([img_feat, txt_feat], dim=-1)" if attr == "gate_proj" else "")
        return f"`{attr}` is {found}, expected nn.Linear({in_f}, {out_f}){hint}"
    if b is None or b.shape != (out_f,):
        return f"`{attr}` has no bias of shape ({out_f},), as nn.Linear({in_f}, {out_f}) has"
    return None


def gmu_attributes(ev, facts) -> CheckResult:
    state = results.prefixed(ev, "state/")
    if not state and "error/state" in ev:
        return CheckResult("attributes", False, f"reading the weights raised "
                           f"{results.text(ev, 'error/state')}")
    problems = []
    for attr, (in_f, out_f) in _gmu_layers().items():
        problem = _linear_problem(state, attr, in_f, out_f)
        expected = facts.get("sub", {}).get(attr)
        if problem is None and expected is not None:
            key = f"sub/{attr}"
            if key not in ev:
                problem = f"calling `{attr}` raised {results.text(ev, 'error/' + key, 'an error')}"
            elif not results.close(ev[key], expected):
                problem = (f"`{attr}` does not compute what nn.Linear({in_f}, {out_f}) computes "
                           "with its weights (is it a subclass with another forward?)")
        if problem:
            problems.append(problem)
    return CheckResult("attributes", not problems, "; ".join(problems) or
                       "img_proj, txt_proj and gate_proj are nn.Linear layers of the right sizes "
                       "(gate_proj reads [x_v; x_t])")


def gmu_shapes(ev, facts) -> CheckResult:
    s = CONFIG.gmu_sizes
    H = s["hidden_dim"]

    def case(i, B):
        where = f"for img_feat {(B, s['img_dim'])} and txt_feat {(B, s['txt_dim'])}"
        return (f"out/shape{i}", where, (B, H),
                lambda shape: f"expected h of shape {(B, H)} {where}, got {shape}")

    return shapes(ev, (case(i, B) for i, B in enumerate(CONFIG.gmu_batches)),
                  "h has shape (B, hidden_dim) for several B")


def gmu_equivalence(ev, facts) -> CheckResult:
    failed = equivalence(ev, facts, ("out/eq",), formula=GMU_FORMULA, attributes=gmu_attributes,
                         mistakes=MISTAKES)
    return failed or CheckResult("equivalence", True,
                                 "h = z * h_v + (1 - z) * h_t with your layers")


GMU_GROUPS = {attr: f"{attr}." for attr in ("img_proj", "txt_proj", "gate_proj")}


def gmu_gradients(ev, facts) -> CheckResult:
    """Do the three layers, the gate's above all, receive the gradient ``h`` sends back? A gate
    that does not (``z.detach()`` in ``h``) never trains: it cannot follow the switch, and the
    grader's accuracy cell fails for it."""
    problems = gradient_problems(ev, facts, GMU_GROUPS, ("out/eq",))
    gate = problems.pop("gate_proj", None)
    if gate == "none":
        return CheckResult("gradients", False, "no gradient reaches gate_proj: the gate z = "
                           "sigmoid(gate_proj([x_v; x_t])) must weight h_v and h_t in h")
    if gate == "differs":
        return CheckResult("gradients", False, "gate_proj's gradient is not what your output "
                           "sends back: is z detached (.detach()) in h? Only last_gate is "
                           "detached: a gate that does not train cannot follow the switch M, "
                           "which the accuracy cell measures")
    if problems:
        attr, why = next(iter(problems.items()))
        return CheckResult("gradients", False, f"no gradient reaches {attr}: is its output "
                           "part of h?" if why == "none" else
                           f"{attr}'s gradient is not what your output sends back: is "
                           f"{'h_v' if attr == 'img_proj' else 'h_t'} detached (.detach())?")
    return CheckResult("gradients", True, "img_proj, txt_proj and gate_proj receive the gradient "
                       "h sends back: the gate trains")


def gmu_last_gate(ev, facts) -> CheckResult:
    if "out/last_gate" not in ev:
        if "error/out/last_gate" not in ev:
            raise Skip("no evidence of last_gate")
        return CheckResult("last_gate", False, f"after a forward call, "
                           f"{results.text(ev, 'error/out/last_gate')}: keep the gate z of the "
                           "call, detached, in self.last_gate")
    gate = np.asarray(ev["out/last_gate"])
    B, H = CONFIG.gmu_eq_batch, CONFIG.gmu_sizes["hidden_dim"]
    if gate.shape != (B, H):
        return CheckResult("last_gate", False, f"after a call with B = {B}, last_gate has shape "
                           f"{results.shape_text(gate.shape)}, expected (B, hidden_dim) = "
                           f"{(B, H)}: keep the gate z of the last call")
    if bool(ev.get("last_gate/requires_grad", False)):
        return CheckResult("last_gate", False, "last_gate is not detached: self.last_gate = "
                           "z.detach() (z itself stays in the graph of h)")
    variant = identified(ev, facts, ("out/eq",))
    expected = facts.get("gates", {}).get(variant) if variant else None
    if expected is None:
        if not (np.isfinite(gate).all() and (gate >= 0).all() and (gate <= 1).all()):
            return CheckResult("last_gate", False, "last_gate has values outside [0, 1]: keep "
                               "the gate z = sigmoid(gate_proj([x_v; x_t])) itself")
        return CheckResult("last_gate", True, "last_gate holds a gate of the last call, (B, "
                           "hidden_dim), detached (its values are not compared: your output "
                           "follows no formula the grader knows, see equivalence)")
    if not results.close(gate, expected):
        return CheckResult("last_gate", False, "last_gate is not the gate z = sigmoid(gate_proj("
                           "[x_v; x_t])) of the last call")
    return CheckResult("last_gate", True, "last_gate holds z of the last call, (B, hidden_dim), "
                       "detached")


def gmu_accuracy(ev, facts) -> CheckResult:
    """The GMU's accuracy cell: accurate on the grader's switch data, and a gate that trains
    (it moves while the classifier trains) and follows the switch ``M`` (``|corr(z, M)|``,
    either way round: a gate that tells the two kinds of samples apart)."""
    result = facts.get("accuracy")
    if result is None:
        raise Skip("the accuracy is measured by the grader only")
    if isinstance(result, str):
        return CheckResult("accuracy", False, result)
    acc, corr, moved = result["accuracy"], result.get("correlation"), result.get("gate_change")
    need, need_corr = CONFIG.gmu_accuracy_threshold, CONFIG.gmu_correlation_threshold
    what = "a linear classifier on your GMU, trained on the switch task,"
    if not acc >= need:  # also catches NaN
        return CheckResult("accuracy", False, f"{what} reached {acc:.3f} on the grader's switch "
                           f"data, below the required {need:.2f}")
    if corr is None:
        return CheckResult("accuracy", True, f"{what} reached {acc:.3f} on the grader's switch "
                           f"data (required {need:.2f}); its gate was not measured: "
                           f"{result.get('gate', 'no gate')} (see last_gate)")
    still = moved is not None and not moved >= CONFIG.gmu_gate_change
    if still or not abs(corr) >= need_corr:  # NaN too: a gate stuck at one value
        try:
            why = gmu_gradients(ev, facts)
            reason = "" if why.passed else why.message
        except Exception:  # noqa: BLE001 (no gradient evidence: a measurement alone)
            reason = ""
        measured = ("its gate z did not move while the classifier trained" + (
                    f" (by {moved:.2g} on average)" if moved else "") if still else
                    f"its gate does not follow the switch M: corr(z, M) = {corr:.2f}, required "
                    f"|corr| >= {need_corr}")
        return CheckResult("accuracy", False, f"{what} reached {acc:.3f}, but {measured}: " + (
            reason or "does the gate train? z must stay in the graph of h; only last_gate is "
            "detached"))
    return CheckResult("accuracy", True, f"{what} reached {acc:.3f} on the grader's switch data "
                       f"(required {need:.2f}) and its gate trains and follows M: corr(z, M) = "
                       f"{corr:.2f}")


# ----------------------------------------------------------------------------- the gated block

BLOCK_FORMULA = "y + torch.tanh(self.alpha) * self.cross_attn(y, x)"


def _initial_alpha(ev) -> np.ndarray | None:
    """alpha as the block was built: from its storage and from ``nn.Module.state_dict``; a
    value that differs from 0 in either counts."""
    values = [np.asarray(ev[k]) for k in ("init/alpha", "attr/alpha") if k in ev]
    for value in values:
        if value.shape != (1,) or float(value[0]) != 0.0:
            return value
    return values[0] if values else None


def _block_structure(ev, facts) -> CheckResult:
    """``cross_attn`` with the weights of a ``CrossAttentionLayer(dim, num_heads)`` computing
    what that layer computes, and ``alpha`` of shape ``(1,)``: what the formula needs."""
    d = CONFIG.block_dim
    state = results.prefixed(ev, "state/")
    if not state and "error/state" in ev:
        return CheckResult("attributes", False, f"reading the weights raised "
                           f"{results.text(ev, 'error/state')}")
    problems = []
    found = [k for k in CROSS_KEYS if f"cross_attn.{k}" in state]
    if not found:
        problems.append("missing attribute `cross_attn` (expected CrossAttentionLayer(dim, "
                        "num_heads))")
    elif not all(f"cross_attn.{k}" in state and state[f"cross_attn.{k}"].shape ==
                 ((d, d) if k.endswith("weight") else (d,)) for k in CROSS_KEYS):
        problems.append(f"`cross_attn` does not have the weights of CrossAttentionLayer({d}, "
                        "num_heads)")
    else:
        expected = facts.get("sub", {}).get("cross_attn")
        if expected is not None and "sub/cross_attn" not in ev:
            problems.append(f"calling `cross_attn` raised "
                            f"{results.text(ev, 'error/sub/cross_attn', 'an error')}")
        elif expected is not None and not results.close(ev["sub/cross_attn"], expected):
            problems.append("`cross_attn` does not compute what CrossAttentionLayer computes "
                            "with its weights (is it a subclass with another forward?)")
    alpha = _initial_alpha(ev)
    if alpha is None:
        problems.append("missing attribute `alpha` (expected nn.Parameter(torch.zeros(1)))")
    elif alpha.shape != (1,):
        problems.append(f"`alpha` has shape {results.shape_text(alpha.shape)}, expected (1,): use "
                        "torch.zeros(1)")
    return CheckResult("attributes", not problems, "; ".join(problems))


def block_attributes(ev, facts) -> CheckResult:
    structure = _block_structure(ev, facts)
    problems = [structure.message] if not structure.passed else []
    alpha = _initial_alpha(ev)
    if alpha is not None and alpha.shape == (1,):
        if "alpha" not in results.json_value(ev, "params", []):
            kind = results.text(ev, "attr/alpha_type", "tensor")
            problems.append(f"`alpha` is a {kind}, not an nn.Parameter of the block, so the "
                            "optimizer never updates it: self.alpha = "
                            "nn.Parameter(torch.zeros(1))")
        elif float(alpha[0]) != 0.0:
            problems.append(f"alpha starts at {float(alpha[0]):.4g}, expected 0: initialise it "
                            "with torch.zeros(1), so that the block starts as the identity "
                            "(tanh(0) = 0)")
    return CheckResult("attributes", not problems, "; ".join(problems) or
                       "cross_attn is a CrossAttentionLayer, alpha an nn.Parameter of shape "
                       "(1,) at 0")


def block_identity(ev, facts) -> CheckResult:
    out = results.output(ev, "out/init", "the call at initialisation")
    y = facts["inputs"]["y"]
    if out.shape != y.shape:
        return CheckResult("identity_at_init", False, f"expected a tensor shaped like y, "
                           f"{results.shape_text(y.shape)}, got {results.shape_text(out.shape)}")
    if not np.array_equal(out, y):
        diff = float(np.max(np.abs(out - y))) if np.isfinite(out).all() else float("nan")
        return CheckResult("identity_at_init", False, f"at initialisation the output is not y "
                           f"exactly (it differs by up to {diff:.3g}): is alpha initialised at "
                           "0, and the update multiplied by torch.tanh(self.alpha)?")
    return CheckResult("identity_at_init", True, "at initialisation the block returns y exactly")


def block_alpha_gradient(ev, facts) -> CheckResult:
    if "alpha" not in results.json_value(ev, "params", []):
        return CheckResult("alpha_gradient", False, "alpha is not an nn.Parameter of the block, "
                           "so it receives no gradient: self.alpha = nn.Parameter(torch.zeros(1))")
    why = gradient_problems(ev, facts, {"alpha": "alpha"}, ("out/eq",)).get("alpha")
    mine = np.asarray(ev.get("grad/alpha", np.zeros(1)))
    if why is not None and not np.abs(mine).sum() > 0:
        return CheckResult("alpha_gradient", False, "alpha receives no gradient at alpha = 0: "
                           "is it detached (alpha.detach(), alpha.item())? The update must be "
                           "torch.tanh(self.alpha) * cross_attn(y, x)")
    if why is not None:
        return CheckResult("alpha_gradient", False, "alpha's gradient at alpha = 0 is not what "
                           "your output sends back: is part of the update detached?")
    return CheckResult("alpha_gradient", True, "alpha receives the gradient the output sends "
                       "back at alpha = 0, as at initialisation")


def block_equivalence(ev, facts) -> CheckResult:
    failed = equivalence(ev, facts, ("out/eq",), formula=BLOCK_FORMULA,
                         attributes=_block_structure, mistakes=MISTAKES)
    return failed or CheckResult("equivalence", True, f"y + tanh(alpha) * cross_attn(y, x) with "
                                 f"alpha = {CONFIG.open_alpha} and your weights")


# ----------------------------------------------------------------------------- modality dropout

def _rates_text(p: float) -> str:
    return f"p = {p:g}"


def _pair(ev: dict, key: str, what: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x_dropped, dropped)`` that the call ``key`` returned, or AssertionError saying why
    there is none (what it raised, or what it returned instead)."""
    if f"{key}/x" in ev and f"{key}/dropped" in ev:
        return np.asarray(ev[f"{key}/x"]), np.asarray(ev[f"{key}/dropped"])
    error = results.text(ev, f"error/{key}", "no output")
    raise AssertionError(f"{what} it " + (error if error.startswith("returned")
                                         else f"raised {error}"))


def dropout_returns(ev, facts) -> CheckResult:
    B, D = CONFIG.dropout_shape
    for i, p in enumerate(CONFIG.dropout_rates):
        error = results.text(ev, f"error/out/p{i}")
        if error.startswith("returned"):
            return CheckResult("returns", False, "modality_dropout should return a tuple "
                               f"(x_dropped, dropped) of two tensors; it {error}")
        x_out, dropped = _pair(ev, f"out/p{i}", f"with {_rates_text(p)}")
        if x_out.shape != (B, D):
            return CheckResult("returns", False, f"x_dropped should have x's shape {(B, D)}, "
                               f"got {results.shape_text(x_out.shape)}")
        if dropped.shape != (B,):
            return CheckResult("returns", False, f"dropped should have shape (B,) = ({B},), one "
                               f"entry per sample, got {results.shape_text(dropped.shape)}")
        dtype = results.text(ev, f"out/p{i}/dtype")
        if dtype != "torch.bool":
            return CheckResult("returns", False, f"dropped should be a bool tensor, got {dtype}")
    return CheckResult("returns", True, "(x_dropped, dropped): x's shape and a bool (B,)")


def dropout_rule(ev, facts) -> CheckResult:
    expected = facts.get("dropped")
    if expected is None:
        raise Skip("the samples the rule drops are not known here")
    reversed_ = facts.get("variants", {}).get("reversed", {})
    mismatches = []
    for i, p in enumerate(CONFIG.dropout_rates):
        _, got = _pair(ev, f"out/p{i}", f"with {_rates_text(p)}")
        want = np.asarray(expected[str(i)]).astype(bool)
        if got.shape != want.shape:
            return CheckResult("rule", False, f"dropped has shape {results.shape_text(got.shape)}, "
                               f"expected {results.shape_text(want.shape)}: one draw per sample")
        got = got.astype(bool)
        if not np.array_equal(got, want):
            mismatches.append((i, p, got, want))
    if not mismatches:
        return CheckResult("rule", True, "drops exactly the samples with u < p, one draw u per "
                           "sample from the generator")
    if reversed_ and all(np.array_equal(np.asarray(ev[f"out/p{i}/dropped"]).astype(bool),
                                        np.asarray(reversed_[str(i)]).astype(bool))
                         for i in range(len(CONFIG.dropout_rates))):
        return CheckResult("rule", False, "the comparison is reversed: you drop the samples with "
                           "u > p, the rule drops those with u < p (so that p is the fraction "
                           "dropped)")
    i, p, got, want = mismatches[0]
    again = ev.get("again/dropped")
    first = ev.get("out/p1/dropped")
    if again is not None and first is not None and not np.array_equal(again, first):
        return CheckResult("rule", False, "two calls with equally seeded generators drop "
                           "different samples: draw u = torch.rand(B, generator=generator) from "
                           "the generator you are given, not from the global random state")
    return CheckResult("rule", False, f"with {_rates_text(p)} it dropped {int(got.sum())} of "
                       f"{got.size} samples, the rule {int(want.sum())}: draw u = torch.rand(B, "
                       "generator=generator), one number per sample, and drop where u < p")


def dropout_rate(ev, facts) -> CheckResult:
    n, p = CONFIG.rate_samples, CONFIG.rate_p
    dropped = results.output(ev, "rate",
                             f"the call without a generator ({n} samples, {_rates_text(p)})")
    if dropped.shape != (n,) or not np.isin(dropped, (0.0, 1.0)).all():
        return CheckResult("rate", False, f"without a generator, dropped should be a bool tensor "
                           f"({n},), got shape {results.shape_text(dropped.shape)}")
    rate = float(dropped.mean())  # the returned mask itself: its mean is computed here
    margin = CONFIG.rate_sigmas * (p * (1 - p) / n) ** 0.5
    if abs(rate - p) < margin:
        return CheckResult("rate", True, f"with {_rates_text(p)} and no generator it drops "
                           f"{rate:.3f} of the samples")
    if abs(rate - (1 - p)) < margin:
        hint = "a fraction 1 - p: is the comparison reversed? Drop where u < p"
    elif rate == 0:
        hint = ("nothing: without a generator, draw u = torch.rand(B, generator=None) as well "
                "(torch's global random state)")
    else:
        hint = "not a fraction p: each sample is dropped with probability p, where u < p"
    return CheckResult("rate", False, f"with {_rates_text(p)} and no generator it dropped "
                       f"{rate:.3f} of {n} samples, {hint}")


def dropout_replacement(ev, facts) -> CheckResult:
    x = np.asarray(facts["inputs"]["x"])
    if "x_after" in ev and not np.array_equal(ev["x_after"], x):
        return CheckResult("replacement", False, "x itself was changed (in place): return a new "
                           "tensor, e.g. x.masked_fill(...), and leave x as it was")
    for i, p in enumerate(CONFIG.dropout_rates):
        out, dropped = _pair(ev, f"out/p{i}", f"with {_rates_text(p)}")
        if out.shape != x.shape or dropped.shape != (x.shape[0],):
            return CheckResult("replacement", False, f"with {_rates_text(p)}, x_dropped "
                               f"{results.shape_text(out.shape)} and dropped "
                               f"{results.shape_text(dropped.shape)} do not fit x "
                               f"{results.shape_text(x.shape)}")
        dropped = dropped.astype(bool)
        if not (out[dropped] == 0).all():
            return CheckResult("replacement", False, f"with {_rates_text(p)}, a sample you "
                               "dropped is not all zeros")
        if not np.array_equal(out[~dropped], x[~dropped]):
            return CheckResult("replacement", False, f"with {_rates_text(p)}, a sample you kept "
                               "is changed: keep it as it is (no rescaling)")
    return CheckResult("replacement", True, "dropped samples are zeros, the others unchanged, x "
                       "itself untouched")


def dropout_tokens(ev, facts) -> CheckResult:
    tokens = np.asarray(facts["inputs"]["tokens"])
    out, dropped = _pair(ev, "out/tokens",
                         f"on tokens (B, N, D) = {results.shape_text(tokens.shape)}")
    if out.shape != tokens.shape:
        return CheckResult("tokens", False, f"on tokens (B, N, D) = "
                           f"{results.shape_text(tokens.shape)} x_dropped has shape "
                           f"{results.shape_text(out.shape)}")
    if dropped.shape != (tokens.shape[0],):
        return CheckResult("tokens", False, f"on tokens (B, N, D), dropped should have shape "
                           f"(B,) = ({tokens.shape[0]},), one draw per sample, got "
                           f"{results.shape_text(dropped.shape)}")
    dropped = dropped.astype(bool)
    if not ((out[dropped] == 0).all() and np.array_equal(out[~dropped], tokens[~dropped])):
        return CheckResult("tokens", False, "on tokens (B, N, D), every token of a sample you "
                           "dropped should be 0 and the other samples unchanged: broadcast the "
                           "mask over every axis but the first")
    return CheckResult("tokens", True, "works on token sequences (B, N, D) too")


def dropout_bad_p(ev, facts) -> CheckResult:
    for j, p in enumerate(CONFIG.bad_rates):
        outcome = results.text(ev, f"bad_p/{j}", "no evidence")
        if not outcome.startswith("ValueError"):
            got = "it returned without an error" if outcome == "no error" else f"got {outcome}"
            return CheckResult("bad_p", False, f"p = {p} should raise a ValueError (p must be "
                               f"in [0, 1]); {got}")
    return CheckResult("bad_p", True, "p outside [0, 1] raises a ValueError")


def dropout_accuracy(ev, facts) -> CheckResult:
    """Early fusion trained with the student's dropout: accurate with every text present, and
    with every text zeroed a cross-entropy that a model trained on complete pairs does not
    reach (it is confidently wrong on many samples)."""
    result = facts.get("accuracy")
    if result is None:
        raise Skip("the accuracy is measured by the grader only")
    if isinstance(result, str):
        return CheckResult("accuracy", False, result)
    what = "early fusion trained with your modality_dropout on the text"
    complete, missing, loss = (result[k] for k in ("complete", "text_missing",
                                                   "text_missing_loss"))
    need, most = CONFIG.dropout_complete_threshold, CONFIG.dropout_missing_loss_threshold
    if not complete >= need:  # also catches NaN
        return CheckResult("accuracy", False, (
            f"{what} reached {complete:.3f} with every text present, below the required "
            f"{need:.2f}: is the text dropped for far more than a fraction p of the samples?"))
    if not loss <= most:
        return CheckResult("accuracy", False, (
            f"with every text zeroed, {what} has a cross-entropy of {loss:.3f} on the grader's "
            f"data (accuracy {missing:.3f}), above the required {most:.2f}: it did not learn to "
            "answer from the image alone, as a model trained without modality dropout"))
    return CheckResult("accuracy", True, (
        f"{what}: accuracy {complete:.3f} with every text present; with every text zeroed, "
        f"accuracy {missing:.3f} and cross-entropy {loss:.3f} (required <= {most:.2f})"))


# ----------------------------------------------------------------------------- declarations

_s, _B = CONFIG.gmu_sizes, CONFIG.gmu_batches[0]
DECLARED = Declarations(__file__, ASSIGNMENT, CONFIG)

GMU = register(DECLARED.exercise(
    "gmu", collect=collect_gmu, train=train_gmu, known=KNOWN,
    texts=dict(gmu_out=(_B, _s["hidden_dim"]), gmu_img=(_B, _s["img_dim"]),
               gmu_txt=(_B, _s["txt_dim"])),
    self_check_facts=with_inputs("gmu", gmu_inputs),
    checks={"attributes": gmu_attributes, "shapes": gmu_shapes, "equivalence": gmu_equivalence,
            "gradients": gmu_gradients, "last_gate": gmu_last_gate, "accuracy": gmu_accuracy}))

TANH_GATED = register(DECLARED.exercise(
    "tanh_gated", collect=collect_tanh_gated, known=KNOWN,
    self_check_facts=with_inputs("tanh_gated", block_inputs),
    implemented="error/out/init",
    checks={"attributes": block_attributes, "identity_at_init": block_identity,
            "alpha_gradient": block_alpha_gradient, "equivalence": block_equivalence}))

MODALITY_DROPOUT = register(DECLARED.exercise(
    "modality_dropout", collect=collect_modality_dropout, train=train_modality_dropout,
    known=KNOWN, self_check_facts=with_inputs("modality_dropout", dropout_inputs),
    texts=dict(dropout_rates=", ".join(f"{p:g}" for p in CONFIG.dropout_rates[:-1])
               + f" and {CONFIG.dropout_rates[-1]:g}",
               rate_samples=f"{CONFIG.rate_samples:,}".replace(",", " ")),  # 20 000
    implemented="error/out/p0",
    checks={"returns": dropout_returns, "rule": dropout_rule, "rate": dropout_rate,
            "replacement": dropout_replacement, "tokens": dropout_tokens, "bad_p": dropout_bad_p,
            "accuracy": dropout_accuracy},
    borrowed=("drop_vectors", "drop_tokens", "missing_mask", "with_missing")))
