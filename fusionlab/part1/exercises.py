"""Part 1's graded exercises: bidirectional cross-attention (TODO 1) and gated fusion (TODO 2).

Each exercise is one ``Exercise`` (``fusionlab.grading.registry``): its table row in
``exercises.toml`` (target, self-check order, graded cells), and here how its behaviour is
recorded and the checks that judge the record. The checks'
facts are the reference's outputs on the module's own weights: stored known answers in the
self-check, recomputed by the grader from the exported weights (``autograder.hidden.part1``).
Every facts dict has the same keys:

- ``variants``: ``{variant: {output key: array}}``, the reference (``"reference"``) and each
  known mistake (worded in ``MISTAKES``), so that a verdict can name the mistake;
- ``grads``: ``{variant: {parameter: gradient}}`` of the projection loss on the same weights;
- ``sub``: ``{attribute: array}``, what each submodule's type computes with its weights;
- ``unavailable``: why the weights do not fit the interface (then nothing else);
- ``accuracy``: the grader's accuracy measurement (accuracy cells only).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..grading import results
from ..grading.checks import (
    accuracy,
    equivalence,
    gradient_problems,
    gradients_verdict,
    shapes,
    visible_shape,
)
from ..grading.known import KnownAnswers
from ..grading.registry import Declarations, register
from ..grading.results import CheckResult
from ..grading.seeds import Stream, generator
from ..grading.toolkit import (
    build_module,
    fit_quietly,
    guarded_module_state,
    isolated,
    other_size,
    projected_gradients,
    record,
    stored_attribute,
    to_array,
)

ASSIGNMENT = "part1_fusion_strategies"


@dataclass(frozen=True)
class Part1Config:
    """The sizes and settings the grader and the self-checks use for Part 1's exercises."""

    dim: int = 32
    heads: int = 4
    gated_sizes: dict = field(default_factory=lambda: dict(img_dim=32, txt_dim=16, embed_dim=32,
                                                          num_classes=3))
    # (dim, B, N_img, N_txt) of the shape cases; the last one builds a second module at 2 * dim
    bidir_shape_cases: tuple = ((32, 2, 1, 1), (32, 3, 5, 2), (32, 1, 1, 4), (64, 2, 3, 3))
    # (num_classes, B) of the gated shape cases; the last one builds a second model
    gated_shape_cases: tuple = ((3, 2), (3, 5), (3, 1), (2, 4))
    nan_probes: tuple = ("large inputs (x100)", "all-zero inputs", "one sample, one token")
    uneven_gate: float = 1.5  # gated equivalence also at this gate: at 0 a swapped alpha hides
    # the accuracy cells: trained with fusionlab.train.fit on the XOR task (fusionlab.data)
    training: dict = field(default_factory=lambda: dict(n_train=1000, epochs=8, lr=3e-3,
                                                       batch_size=64))
    eval_samples: int = 500  # the grader's XOR evaluation set
    accuracy_threshold: float = 0.90  # measured: python -m autograder.authoring.thresholds part1


CONFIG = Part1Config()
KNOWN = KnownAnswers(__package__)

# What each known mistake looks like, in words (the grader holds the formulas).
MISTAKES = {
    "no_residual": "the residual connection is missing: add the input before the norm, "
                   "norm(x + attn(x, other))",
    "no_norm": "the LayerNorm is missing: apply norm_txt / norm_img to x + attn(x, other)",
    "swapped_directions": "the two directions are swapped: txt_to_img takes text queries, "
                          "img_to_txt image queries",
    "swapped_norms": "norm_txt and norm_img are swapped: norm_txt normalises the text tokens",
    "mean_of_means": "the pooling averages the two modalities' means: concatenate the tokens "
                     "with torch.cat(..., dim=1), then take one mean over all of them",
    "swapped_alpha": "alpha weights the wrong modality: z = alpha * img_proj(img) + "
                     "(1 - alpha) * txt_proj(txt)",
    "no_sigmoid": "the sigmoid is missing: alpha = torch.sigmoid(self.gate)",
    "ignores_gate": "the output ignores the gate: alpha = torch.sigmoid(self.gate) must weight "
                    "the two projections",
}


# ----------------------------------------------------------------------------- inputs

def bidirectional_inputs(seed: int) -> dict[str, torch.Tensor]:
    """The inputs the bidirectional evidence is collected on (the grader recomputes them)."""
    g = generator(seed, "bidirectional", Stream.INPUTS)
    d = CONFIG.dim

    def randn(*shape, scale=1.0):
        return torch.randn(*shape, generator=g) * scale

    x = {}
    for i, (dim, B, n_img, n_txt) in enumerate(CONFIG.bidir_shape_cases):
        x[f"shape{i}/img"], x[f"shape{i}/txt"] = randn(B, n_img, dim), randn(B, n_txt, dim)
    x["eq/img"], x["eq/txt"] = randn(4, 3, d), randn(4, 2, d)  # several tokens each
    # gradients and NaN probes: as many image as text tokens, so that they also run for an
    # output of the wrong shape (e.g. tokens concatenated along the feature axis)
    x["grad/img"], x["grad/txt"] = randn(4, 2, d), randn(4, 2, d)
    x["grad/projection"] = randn(4, d)
    x["nan0/img"], x["nan0/txt"] = randn(2, 2, d, scale=100.0), randn(2, 2, d, scale=100.0)
    x["nan1/img"], x["nan1/txt"] = torch.zeros(2, 1, d), torch.zeros(2, 1, d)
    x["nan2/img"], x["nan2/txt"] = randn(1, 1, d), randn(1, 1, d)
    x["sub/query"], x["sub/kv"] = randn(3, 4, d), randn(3, 2, d)
    return x


def gated_inputs(seed: int) -> dict[str, torch.Tensor]:
    """The inputs the gated evidence is collected on (the grader recomputes them)."""
    g = generator(seed, "gated", Stream.INPUTS)
    s = CONFIG.gated_sizes
    x = {}
    for i, (_, B) in enumerate(CONFIG.gated_shape_cases):
        x[f"shape{i}/img"] = torch.randn(B, s["img_dim"], generator=g)
        x[f"shape{i}/txt"] = torch.randn(B, s["txt_dim"], generator=g)
    x["eq/img"] = torch.randn(6, s["img_dim"], generator=g)
    x["eq/txt"] = torch.randn(6, s["txt_dim"], generator=g)
    x["grad/projection"] = torch.randn(6, s["num_classes"], generator=g)
    x["sub/z"] = torch.randn(5, s["embed_dim"], generator=g)
    return x


def xor_training_data(seed: int, exercise: str):
    """The training set of an accuracy cell (the grader evaluates on data of its own)."""
    from ..data import MultimodalDataset
    from ..grading.seeds import derive

    return MultimodalDataset(n_samples=CONFIG.training["n_train"],
                             seed=derive(seed, exercise, Stream.TRAINING) % 2**31,
                             interaction="xor")


# ----------------------------------------------------------------------------- collectors

def collect_bidirectional(cls, seed: int, weights=None) -> dict:
    """Evidence on a ``BidirectionalCrossAttention`` class; never raises."""
    d, h = CONFIG.dim, CONFIG.heads
    ev: dict = {}
    x = bidirectional_inputs(seed)
    with isolated(seed):
        module = build_module(ev, seed, cls, d, num_heads=h)
        if module is None:
            return ev
        guarded_module_state(ev, module, weights, seed, "bidirectional")
        module.eval()
        with torch.no_grad():
            for i, (dim, *_) in enumerate(CONFIG.bidir_shape_cases):
                m = module if dim == d else other_size(ev, f"out/shape{i}", seed, cls, dim,
                                                       num_heads=h)
                if m is None:
                    continue
                record(ev, f"out/shape{i}", lambda m=m, i=i: m(x[f"shape{i}/img"],
                                                                  x[f"shape{i}/txt"]))
            record(ev, "out/eq", lambda: module(x["eq/img"], x["eq/txt"]))
            for i in range(len(CONFIG.nan_probes)):
                record(ev, f"out/nan{i}", lambda i=i: module(x[f"nan{i}/img"], x[f"nan{i}/txt"]))
            for attr in ATTENTION:
                record(ev, f"sub/{attr}",
                       lambda attr=attr: getattr(module, attr)(x["sub/query"], x["sub/kv"]))
            for attr in NORMS:
                record(ev, f"sub/{attr}", lambda attr=attr: getattr(module, attr)(x["sub/query"]))
        projected_gradients(ev, module, lambda: module(x["grad/img"], x["grad/txt"]),
                            x["grad/projection"], seed, "bidirectional")
    return ev


def collect_gated(cls, seed: int, weights=None) -> dict:
    """Evidence on a ``GatedFusionModel`` class; never raises."""
    ev: dict = {}
    sizes = dict(CONFIG.gated_sizes)
    x = gated_inputs(seed)
    with isolated(seed):
        model = build_module(ev, seed, cls, **sizes)
        if model is None:
            return ev

        def initial_gate():  # its initial value, registered or not
            gate = stored_attribute(model, "gate")
            if isinstance(gate, torch.Tensor):
                ev["attr/gate"] = to_array(gate)
                ev["attr/gate_type"] = np.array(type(gate).__name__)

        guarded_module_state(ev, model, weights, seed, "gated", first=initial_gate)
        model.eval()
        with torch.no_grad():
            for i, (classes, _) in enumerate(CONFIG.gated_shape_cases):
                m = model if classes == sizes["num_classes"] else other_size(
                    ev, f"out/shape{i}", seed, cls, **{**sizes, "num_classes": classes})
                if m is None:
                    continue
                record(ev, f"out/shape{i}", lambda m=m, i=i: m(x[f"shape{i}/img"],
                                                                  x[f"shape{i}/txt"]))
            record(ev, "out/eq", lambda: model(x["eq/img"], x["eq/txt"]))
            record(ev, "sub/classifier", lambda: model.classifier(x["sub/z"]))
            gate = getattr(model, "gate", None)
            if isinstance(gate, torch.Tensor) and tuple(gate.shape) == (1,):
                saved = gate.detach().clone()
                try:
                    gate.fill_(CONFIG.uneven_gate)
                    record(ev, "out/eq_uneven_gate", lambda: model(x["eq/img"], x["eq/txt"]))
                finally:
                    gate.copy_(saved)
            else:
                ev["error/out/eq_uneven_gate"] = np.array("no gate of shape (1,) to set")
        projected_gradients(ev, model, lambda: model(x["eq/img"], x["eq/txt"]),
                            x["grad/projection"], seed, "gated")
    return ev


# ----------------------------------------------------------------------------- training

def train_bidirectional(cls, seed: int, inputs: dict) -> dict:
    """``FusionLayerClassifier(cls)`` trained on the XOR task as the notebook trains it; its
    logits on the grader's inputs ``img`` and ``txt``."""
    from ..models import FusionLayerClassifier

    torch.manual_seed(seed)
    model = FusionLayerClassifier(cls, num_classes=2)
    fit_quietly(model, xor_training_data(seed, "bidirectional"), CONFIG.training, seed)
    with torch.no_grad():
        return {"logits": model(torch.as_tensor(inputs["img"]), torch.as_tensor(inputs["txt"]))}


def train_gated(cls, seed: int, inputs: dict) -> dict:
    """``cls(num_classes=2)`` trained on the XOR task; its logits on the grader's inputs."""
    torch.manual_seed(seed)
    model = cls(**{**CONFIG.gated_sizes, "num_classes": 2})
    fit_quietly(model, xor_training_data(seed, "gated"), CONFIG.training, seed)
    with torch.no_grad():
        return {"logits": model(torch.as_tensor(inputs["img"]), torch.as_tensor(inputs["txt"]))}


# ----------------------------------------------------------------------------- shared checks

def _equivalence(ev, facts, keys, formula: str, attributes) -> CheckResult | None:
    return equivalence(ev, facts, keys, formula=formula, attributes=attributes,
                       mistakes=MISTAKES)


# ----------------------------------------------------------------------------- bidirectional

ATTENTION = ("txt_to_img", "img_to_txt")
NORMS = ("norm_txt", "norm_img")
_BIDIR_ATTRS = {"txt_to_img": "CrossAttentionLayer", "img_to_txt": "CrossAttentionLayer",
                "norm_txt": "nn.LayerNorm", "norm_img": "nn.LayerNorm"}
CROSS_KEYS = tuple(f"{p}_proj.{w}" for p in ("q", "k", "v", "out") for w in ("weight", "bias"))
BIDIR_FORMULA = ("txt_upd = norm_txt(txt + txt_to_img(txt, img)), img_upd = norm_img(img + "
                 "img_to_txt(img, txt)), then torch.cat([txt_upd, img_upd], dim=1).mean(dim=1)")


def bidir_attributes(ev, facts) -> CheckResult:
    d = CONFIG.dim
    state = results.prefixed(ev, "state/")
    if not state and "error/state" in ev:
        return CheckResult("attributes", False, f"reading the weights raised "
                           f"{results.text(ev, 'error/state')}")
    problems, shared = [], set()
    for a, b in results.json_value(ev, "shared", []):
        if {a, b} <= set(_BIDIR_ATTRS):
            problems.append(f"`{a}` and `{b}` are the same layer: create two")
            shared |= {a, b}
    for attr, kind in _BIDIR_ATTRS.items():
        if attr in shared:
            continue
        keys = CROSS_KEYS if kind == "CrossAttentionLayer" else ("weight", "bias")
        spelled = f"{kind}({d}" + (", num_heads)" if kind == "CrossAttentionLayer" else ")")
        found = [k for k in keys if f"{attr}.{k}" in state]
        if not found:
            problems.append(f"missing attribute `{attr}` (expected {spelled})")
            continue
        shapes_ok = all(f"{attr}.{k}" in state and state[f"{attr}.{k}"].shape ==
                        ((d, d) if k.endswith("weight") and kind != "nn.LayerNorm" else (d,))
                        for k in keys)
        if not shapes_ok:
            problems.append(f"`{attr}` does not have the weights of {spelled}")
            continue
        expected = facts.get("sub", {}).get(attr)
        key = f"sub/{attr}"
        if expected is not None and key in ev and not results.close(ev[key], expected):
            problems.append(f"`{attr}` does not compute what {spelled} computes with its "
                            "weights (is it a subclass with another forward?)")
        elif expected is not None and key not in ev:
            error = results.text(ev, "error/" + key, "an error")
            problems.append(f"calling `{attr}` raised {error}")
    return CheckResult("attributes", not problems, "; ".join(problems) or
                       "txt_to_img, img_to_txt (CrossAttentionLayer), norm_txt, norm_img "
                       "(LayerNorm) found, each computing what its type computes")


def bidir_shapes(ev, facts) -> CheckResult:
    d = CONFIG.dim

    def case(i, dim, B, n_img, n_txt):
        where = f"for img_embed {(B, n_img, dim)} and txt_embed {(B, n_txt, dim)}"

        def wrong(shape):
            hint = ""
            if shape == (B, n_img + n_txt, dim):
                hint = ": the tokens are concatenated but not mean-pooled (.mean(dim=1))"
            elif len(shape) == 2 and shape[1] == 2 * dim:
                hint = ": concatenate along the token axis (dim=1), then mean-pool"
            return f"expected output shape {(B, dim)} {where}, got {shape}{hint}"

        return f"out/shape{i}", where, (B, dim), wrong

    return shapes(ev, (case(i, *c) for i, c in enumerate(CONFIG.bidir_shape_cases)),
                  f"(B, N_img, {d}) and (B, N_txt, {d}) give (B, {d}) for several B, N and dim")


def bidir_equivalence(ev, facts) -> CheckResult:
    failed = _equivalence(ev, facts, ("out/eq",), BIDIR_FORMULA, bidir_attributes)
    return failed or CheckResult(
        "equivalence", True,
        "matches norm(x + attn(x, other)) in both directions, concatenated and mean-pooled")


def bidir_gradients(ev, facts) -> CheckResult:
    shared = {b: a for a, b in results.json_value(ev, "shared", []) if {a, b} <= set(_BIDIR_ATTRS)}
    if shared:
        b, a = next(iter(shared.items()))
        return CheckResult("gradients", False, f"`{b}` is the same layer as `{a}`, so it has no "
                           "parameters of its own to train: create two layers")
    problems = gradient_problems(ev, facts, {a: f"{a}." for a in _BIDIR_ATTRS}, ("out/eq",))
    return gradients_verdict(problems,
                             "gradients reach txt_to_img, img_to_txt, norm_txt and norm_img")


def bidir_no_nan(ev, facts) -> CheckResult:
    bad = []
    for i, label in enumerate(CONFIG.nan_probes):
        out = results.output(ev, f"out/nan{i}", f"the output for {label}")
        if not np.isfinite(out).all():
            bad.append(label)
    return CheckResult("no_nan", not bad, f"the output has NaN or inf for {', '.join(bad)}"
                       if bad else "finite outputs, also for large and all-zero inputs")


# ----------------------------------------------------------------------------- gated

def _mlp_text() -> str:
    e, c = CONFIG.gated_sizes["embed_dim"], CONFIG.gated_sizes["num_classes"]
    return f"Linear({e}, {e}) -> ReLU -> Linear({e}, {c})"


def gated_attributes(ev, facts) -> CheckResult:
    s = CONFIG.gated_sizes
    e, c = s["embed_dim"], s["num_classes"]
    state = results.prefixed(ev, "state/")
    problems = []
    for attr, in_dim in (("img_proj", s["img_dim"]), ("txt_proj", s["txt_dim"])):
        w = state.get(f"{attr}.weight")
        if w is None:
            problems.append(f"missing attribute `{attr}` (expected nn.Linear({in_dim}, {e}))")
        elif w.shape != (e, in_dim):
            problems.append(f"`{attr}` is nn.Linear({w.shape[-1]}, {w.shape[0]}), expected "
                            f"nn.Linear({in_dim}, {e})")
    if "attr/gate" not in ev and "gate" not in state:
        problems.append("missing attribute `gate` (expected nn.Parameter(torch.zeros(1)))")
    mlp = _mlp_text()
    if not any(k.startswith("classifier.") for k in state):
        problems.append(f"missing attribute `classifier` (expected the MLP {mlp})")
    elif "classifier.weight" in state:
        w = state["classifier.weight"]
        problems.append(f"the classifier is a single nn.Linear({w.shape[-1]}, {w.shape[0]}): "
                        f"it must be the MLP {mlp} (a linear head cannot learn the XOR task)")
    elif not (state.get("classifier.0.weight", np.empty(0)).shape == (e, e)
              and state.get("classifier.2.weight", np.empty(0)).shape == (c, e)):
        problems.append(f"the classifier does not have the weights of the MLP {mlp}")
    else:
        expected = facts.get("sub", {}).get("classifier")
        if expected is not None and not ("sub/classifier" in ev and
                                         results.close(ev["sub/classifier"], expected)):
            problems.append(f"the classifier does not compute {mlp} with its weights")
    return CheckResult("attributes", not problems, "; ".join(problems) or
                       f"img_proj, txt_proj, gate and the classifier {mlp} found")


def gated_gate(ev, facts) -> CheckResult:
    params = results.json_value(ev, "params", [])
    if "attr/gate" not in ev and "init/gate" not in ev:
        return CheckResult("gate", False, "missing attribute `gate`: add "
                           "self.gate = nn.Parameter(torch.zeros(1))")
    if "gate" not in params:
        kind = results.text(ev, "attr/gate_type", "tensor")
        return CheckResult("gate", False, f"`gate` is a {kind}, not an nn.Parameter registered "
                           "in the model, so the optimizer never updates it: use "
                           "self.gate = nn.Parameter(torch.zeros(1))")
    value = np.asarray(ev.get("init/gate", ev.get("attr/gate")))
    if value.shape != (1,):
        return CheckResult("gate", False, f"`gate` has shape {results.shape_text(value.shape)}, "
                           "expected (1,): use torch.zeros(1)")
    alpha = float(1 / (1 + np.exp(-float(value[0]))))
    if abs(alpha - 0.5) > 1e-6:
        return CheckResult("gate", False, f"gate starts at {float(value[0]):.3f}, so "
                           f"sigmoid(gate) = {alpha:.3f}, expected 0.500: initialise it with "
                           "torch.zeros(1) so that both modalities start with weight 0.5")
    return CheckResult("gate", True, f"gate starts at 0.0, sigmoid(gate) = {alpha:.3f}: an "
                       "equal mix of both modalities")


def gated_shapes(ev, facts) -> CheckResult:
    s = CONFIG.gated_sizes

    def case(i, classes, B):
        where = (f"with num_classes={classes}, for img_feat {(B, s['img_dim'])} and txt_feat "
                 f"{(B, s['txt_dim'])}")
        return (f"out/shape{i}", where, (B, classes),
                lambda shape: f"{where}, expected output shape {(B, classes)}, got {shape}")

    return shapes(ev, (case(i, *c) for i, c in enumerate(CONFIG.gated_shape_cases)),
                  f"(B, {s['img_dim']}) and (B, {s['txt_dim']}) give (B, num_classes) logits")


GATED_KEYS = ("out/eq", "out/eq_uneven_gate")


def gated_equivalence(ev, facts) -> CheckResult:
    formula = ("alpha = torch.sigmoid(self.gate), z = alpha * img_proj(img) + (1 - alpha) * "
               "txt_proj(txt), return classifier(z)")
    failed = _equivalence(ev, facts, GATED_KEYS, formula, gated_attributes)
    return failed or CheckResult("equivalence", True, "matches classifier(alpha * img_proj(img) "
                                 "+ (1 - alpha) * txt_proj(txt)), alpha = sigmoid(gate)")


def gated_gate_gradient(ev, facts) -> CheckResult:
    if "gate" not in results.json_value(ev, "params", []):
        return CheckResult("gate_gradient", False, "the gate receives no gradient: it is not "
                           "an nn.Parameter of the model (self.gate = nn.Parameter(...))")
    why = gradient_problems(ev, facts, {"gate": "gate"}, GATED_KEYS).get("gate")
    if why == "none":
        return CheckResult("gate_gradient", False, "the gate receives no gradient: use "
                           "torch.sigmoid(self.gate) in forward")
    if why == "differs":
        return CheckResult("gate_gradient", False, "the gate's gradient is not what your output "
                           "sends back: is alpha detached (.detach())?")
    return CheckResult("gate_gradient", True, "the gate receives a gradient")


# ----------------------------------------------------------------------------- declarations

_d, _B, _n_img, _n_txt = CONFIG.bidir_shape_cases[0]
_classes, _Bg = CONFIG.gated_shape_cases[0]
_gated_out = (_Bg, _classes)
_gated_img, _gated_txt = (_Bg, CONFIG.gated_sizes["img_dim"]), (_Bg, CONFIG.gated_sizes["txt_dim"])
DECLARED = Declarations(__file__, ASSIGNMENT, CONFIG)

BIDIRECTIONAL = register(DECLARED.exercise(
    "bidirectional", collect=collect_bidirectional, train=train_bidirectional, known=KNOWN,
    texts=dict(bidir_out=(_B, _d), bidir_in=(_B, _n_img, _d)),
    checks={"attributes": bidir_attributes, "shapes": bidir_shapes,
            "equivalence": bidir_equivalence, "gradients": bidir_gradients,
            "no_nan": bidir_no_nan, "accuracy": accuracy,
            "visible_shape": visible_shape("out/shape0", (_B, _d),
                                           f"image and text inputs {(_B, _n_img, _d)}")},
    borrowed=("MultiheadAttention", "scaled_dot_product_attention")))

GATED = register(DECLARED.exercise(
    "gated", collect=collect_gated, train=train_gated, known=KNOWN,
    texts=dict(gated_out=_gated_out, gated_img=_gated_img, gated_txt=_gated_txt),
    checks={"attributes": gated_attributes, "gate": gated_gate, "shapes": gated_shapes,
            "equivalence": gated_equivalence, "gate_gradient": gated_gate_gradient,
            "accuracy": accuracy,
            "visible_shape": visible_shape("out/shape0", _gated_out,
                                           f"inputs {_gated_img} and {_gated_txt}")}))
