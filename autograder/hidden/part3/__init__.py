"""The trusted side of Part 3's exercises (``fusionlab.part3.exercises``).

``facts`` compute, from the weights the clean room exported and the inputs of the grading
seed, what the reference and each known mistake output (``variants``), the GMU's gate of each
(``gates``), the gradients each formula sends back on those weights (``grads``), what each given
submodule type computes with its weights (``sub``) and, for modality dropout, which samples the
rule drops (``dropped``) for the generator the clean room handed over. The accuracy cells are
scored on the grader's own data: the clean room trains the student's model as the notebook does
and predicts the inputs (shuffled: their order says nothing); the labels and the switch ``M``
stay here. The ``*_MISTAKES`` are the known mistakes, as a student would write them.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F_torch

from fusionlab.grading.results import prefixed
from fusionlab.grading.seeds import SELF_CHECK_SEED
from fusionlab.grading.toolkit import projection_loss
from fusionlab.part3.data import RedundantDataset, SwitchDataset
from fusionlab.part3.exercises import (
    CONFIG,
    block_inputs,
    dropout_draws,
    dropout_inputs,
    gmu_inputs,
)
from fusionlab.part3.models import gate_switch_correlation

from ..references import Evaluation, Reference, Variant, register
from . import formulas as F


def _arrays(inputs: dict) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in inputs.items()}


def _unavailable(error: Exception) -> str:
    return f"the exported weights do not fit the interface: {error}"


# ----------------------------------------------------------------------------- facts

def gmu_facts(ev: dict, seed: int) -> dict:
    """Expected values for the GMU's checks, from the exported weights."""
    s = CONFIG.gmu_sizes
    x = gmu_inputs(seed)
    state = prefixed(ev, "state/")
    img, txt = x["eq/img"], x["eq/txt"]
    facts: dict = {"inputs": _arrays(x), "sub": {}, "variants": {}, "gates": {}, "grads": {}}
    H, both = s["hidden_dim"], torch.cat([img, txt], dim=-1)
    with torch.no_grad():
        for attr, inp in (("img_proj", img), ("txt_proj", txt), ("gate_proj", both)):
            try:
                facts["sub"][attr] = F.linear(state, f"{attr}.", inp.shape[-1], H)(inp).numpy()
            except F.WeightsError:
                pass
    try:
        parts = F.GMUParts(state)
    except F.WeightsError as error:
        facts["unavailable"] = _unavailable(error)
        return facts
    with torch.no_grad():
        for name, formula in F.GMU_VARIANTS.items():
            h, z = formula(parts, img, txt)
            facts["variants"][name] = {"out/eq": h.numpy()}
            facts["gates"][name] = z.numpy()
    for name, formula in F.GMU_VARIANTS.items():
        loss = projection_loss(formula(parts, img, txt)[0], x["grad/projection"], seed, "gmu")
        facts["grads"][name] = F.gradients(parts, loss)
    return facts


def tanh_gated_facts(ev: dict, seed: int) -> dict:
    """Expected values for the block's checks, from the exported weights: the outputs with the
    gate open (``alpha`` as exported), the gradients with it closed (``alpha = 0``)."""
    inp = block_inputs(seed)
    y, x = inp["y"], inp["x"]
    state = prefixed(ev, "state/")
    facts: dict = {"inputs": _arrays(inp), "sub": {}, "variants": {}, "grads": {}}
    alpha = np.asarray(state.get("alpha", [CONFIG.open_alpha]), dtype=np.float32).reshape(-1)
    try:
        parts = F.BlockParts(state, float(alpha[0]) if alpha.shape == (1,) else CONFIG.open_alpha)
    except F.WeightsError as error:
        facts["unavailable"] = _unavailable(error)
        return facts
    with torch.no_grad():
        facts["sub"]["cross_attn"] = parts.cross_attn(y, x).numpy()
        facts["variants"] = {name: {"out/eq": formula(parts, y, x).numpy()}
                             for name, formula in F.BLOCK_VARIANTS.items()}
        parts.alpha.zero_()  # the gradients with the gate closed, as at initialisation
    for name, formula in F.BLOCK_VARIANTS.items():
        loss = projection_loss(formula(parts, y, x), inp["grad/projection"], seed, "tanh_gated")
        facts["grads"][name] = F.gradients(parts, loss)
    return facts


def modality_dropout_facts(ev: dict, seed: int) -> dict:
    """Which samples the rule drops for each rate, with the generator the clean room handed
    over (and which the reversed comparison would drop)."""
    inp = dropout_inputs(seed)
    u = torch.rand(CONFIG.dropout_shape[0], generator=dropout_draws(seed))  # (B,)
    rates = list(enumerate(CONFIG.dropout_rates))
    return {"inputs": _arrays(inp),
            "dropped": {str(i): F.dropped(u, p).numpy() for i, p in rates},
            "variants": {"reversed": {str(i): F.reversed_rule(u, p).numpy() for i, p in rates}}}


# ----------------------------------------------------------------------------- known answers

def gmu_known_weights() -> dict[str, np.ndarray]:
    """The self-check's weights: random layers at a scale where tanh and sigmoid bend."""
    g = torch.Generator().manual_seed(SELF_CHECK_SEED)
    s = CONFIG.gmu_sizes
    H, weights = s["hidden_dim"], {}
    for attr, in_f in (("img_proj", s["img_dim"]), ("txt_proj", s["txt_dim"]),
                       ("gate_proj", s["img_dim"] + s["txt_dim"])):
        weights[f"{attr}.weight"] = (0.3 * torch.randn(H, in_f, generator=g)).numpy()
        weights[f"{attr}.bias"] = (0.3 * torch.randn(H, generator=g)).numpy()
    return weights


def tanh_gated_known_weights() -> dict[str, np.ndarray]:
    """A fresh layer's draws, and the gate open."""
    from fusionlab.models import CrossAttentionLayer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SELF_CHECK_SEED)
        layer = CrossAttentionLayer(CONFIG.block_dim, CONFIG.block_heads)
    weights = {f"cross_attn.{k}": v.numpy() for k, v in layer.state_dict().items()}
    weights["alpha"] = np.array([CONFIG.open_alpha], dtype=np.float32)
    return weights


# ----------------------------------------------------------------------------- accuracy

def _shuffled(data, generator: torch.Generator):
    order = torch.randperm(len(data), generator=generator)
    inputs = {"img": data.img_features[order].numpy(), "txt": data.txt_features[order].numpy()}
    return inputs, order


def switch_evaluation(eval_seed: int):
    """The grader's switch data: inputs for the clean room; labels and the switch kept here."""
    g = torch.Generator().manual_seed(eval_seed)
    data = SwitchDataset(CONFIG.eval_samples, generator=g)
    inputs, order = _shuffled(data, g)
    return inputs, {"labels": data.labels[order].numpy(), "switch": data.switch[order].numpy()}


def _accuracy(logits, labels) -> float:
    logits = np.asarray(logits)
    if not np.isfinite(logits).all():
        return float("nan")
    return float((np.argmax(logits, axis=1) == labels).mean())


def score_gmu(trained: dict, held: dict) -> dict | str:
    """Accuracy of the predictions and, from the unit's gate, ``corr(z, M)`` and how far the
    gate moved while training (``gate_change``: mean ``|z after - z before|``)."""
    labels, switch = held["labels"], held["switch"]
    n = len(labels)
    logits = trained.get("logits")
    if logits is None or np.shape(logits) != (n, 2):
        return (f"the classifier on your GMU gave no logits of shape ({n}, 2) on the grader's "
                f"data, got {None if logits is None else np.shape(logits)}")
    result: dict = {"accuracy": _accuracy(logits, labels)}
    gate = trained.get("gate")
    if gate is None:
        result["gate"] = "last_gate holds no tensor after a forward call"
    elif np.ndim(gate) not in (1, 2) or np.shape(gate)[0] != n:
        result["gate"] = (f"last_gate has shape {np.shape(gate)} after a call on {n} samples, "
                          f"expected ({n}, hidden_dim)")
    else:
        result["correlation"] = gate_switch_correlation(torch.as_tensor(gate),
                                                        torch.as_tensor(switch))
        before = trained.get("gate_initial")
        if before is not None and np.shape(before) == np.shape(gate):
            result["gate_change"] = float(np.mean(np.abs(np.asarray(gate) - before)))
    return result


def redundant_evaluation(eval_seed: int):
    """The grader's redundant data: inputs for the clean room, labels kept here."""
    g = torch.Generator().manual_seed(eval_seed)
    data = RedundantDataset(CONFIG.eval_samples, generator=g, num_classes=CONFIG.dropout_classes)
    inputs, order = _shuffled(data, g)
    return inputs, data.labels[order].numpy()


def score_modality_dropout(trained: dict, labels) -> dict | str:
    """Accuracy with every text present; accuracy and cross-entropy with every text zeroed."""
    n, c = len(labels), CONFIG.dropout_classes
    full, missing = trained.get("logits"), trained.get("logits_text_missing")
    for logits in (full, missing):
        if logits is None or np.shape(logits) != (n, c):
            return (f"early fusion trained with your modality_dropout gave no logits of shape "
                    f"({n}, {c}) on the grader's data, got "
                    f"{None if logits is None else np.shape(logits)}")
    loss = F_torch.cross_entropy(torch.as_tensor(np.asarray(missing, dtype=np.float32)),
                                 torch.as_tensor(labels)).item()
    return {"complete": _accuracy(full, labels), "text_missing": _accuracy(missing, labels),
            "text_missing_loss": loss}


# ----------------------------------------------------------------------------- known mistakes

_GMU = '''\
class GatedMultimodalUnit(nn.Module):
    def __init__(self, img_dim=32, txt_dim=16, hidden_dim=32):
        super().__init__()
        self.img_dim, self.txt_dim, self.hidden_dim = img_dim, txt_dim, hidden_dim
        self.out_dim = hidden_dim
        self.last_gate = None
        self.img_proj = nn.Linear(img_dim, hidden_dim)
        self.txt_proj = nn.Linear(txt_dim, hidden_dim)
        self.gate_proj = {gate_layer}{init}

    def forward(self, img_feat, txt_feat):
        check_pair(img_feat, txt_feat, self.img_dim, self.txt_dim)
        h_v = {h_v}
        h_t = {h_t}
        z = torch.sigmoid(self.gate_proj({gate_input}))
        self.last_gate = {last_gate}
{result}
'''


def gmu_src(h_v="torch.tanh(self.img_proj(img_feat))", h_t="torch.tanh(self.txt_proj(txt_feat))",
            h="z * h_v + (1 - z) * h_t", gate_layer="nn.Linear(img_dim + txt_dim, hidden_dim)",
            gate_input="torch.cat([img_feat, txt_feat], dim=-1)", last_gate="z.detach()",
            result=None, init="") -> str:
    """A GMU TODO cell; ``init``: lines at the end of ``__init__``."""
    return _GMU.format(h_v=h_v, h_t=h_t, gate_layer=gate_layer, gate_input=gate_input,
                       last_gate=last_gate, result=result or f"        return {h}", init=init)


_BLOCK = '''\
class TanhGatedCrossAttention(nn.Module):
    def __init__(self, dim=32, num_heads=4):
        super().__init__()
        self.cross_attn = CrossAttentionLayer(dim, num_heads)
        self.alpha = {alpha}

    def forward(self, y, x):
        return {out}
'''


def block_src(alpha="nn.Parameter(torch.zeros(1))",
              out="y + torch.tanh(self.alpha) * self.cross_attn(y, x)") -> str:
    return _BLOCK.format(alpha=alpha, out=out)


_P_CHECK = '''\
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
'''
_DROPOUT = '''\
def modality_dropout(x, p, generator=None):
{check}    u = torch.rand(x.shape[0], generator=generator)
    dropped = ({rule}).to(x.device)
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    return {result}, dropped
'''


def dropout_src(rule="u < p", result="x.masked_fill(dropped.view(shape), 0.0)",
                check=_P_CHECK, body=None) -> str:
    if body is not None:
        return f"def modality_dropout(x, p, generator=None):\n{check}{body}"
    return _DROPOUT.format(check=check, rule=rule, result=result)


def _gmu(name, description, loses, example=False, threshold=False, **source) -> Variant:
    return Variant(name, "gmu", {"GatedMultimodalUnit": gmu_src(**source)}, tuple(loses),
                   description, example, threshold)


def _block(name, description, loses, example=False, **source) -> Variant:
    return Variant(name, "tanh_gated", {"TanhGatedCrossAttention": block_src(**source)},
                   tuple(loses), description, example)


def _dropout(name, description, loses, example=False, threshold=False, **source) -> Variant:
    return Variant(name, "modality_dropout",
                   {"modality_dropout": dropout_src(**source)}, tuple(loses), description,
                   example, threshold)


_RETURN_NONE = "        z * h_v + (1 - z) * h_t"
GMU_MISTAKES = (
    _gmu("gmu_gate_detached", "z detached in h: the gate never trains, so it cannot follow "
         "the switch", ("gmu_accuracy",), example=True, threshold=True,
         h="z.detach() * h_v + (1 - z.detach()) * h_t"),
    _gmu("gmu_no_tanh", "h_v and h_t without the tanh", ("gmu_equivalence",), threshold=True,
         h_v="self.img_proj(img_feat)", h_t="self.txt_proj(txt_feat)"),
    _gmu("gmu_swapped_gate", "z weights the text: h = (1 - z) * h_v + z * h_t",
         ("gmu_equivalence",), threshold=True, h="(1 - z) * h_v + z * h_t"),
    _gmu("gmu_image_only_gate", "the gate reads the image only: z = sigmoid(W_z x_v)",
         ("gmu_attributes", "gmu_equivalence"), threshold=True,
         gate_layer="nn.Linear(img_dim, hidden_dim)", gate_input="img_feat"),
    _gmu("gmu_swapped_concat", "the gate reads [x_t; x_v], the text features first",
         ("gmu_equivalence",), threshold=True,
         gate_input="torch.cat([txt_feat, img_feat], dim=-1)"),
    _gmu("gmu_last_gate_attached", "last_gate keeps z without .detach()", ("gmu_last_gate",),
         last_gate="z"),
    _gmu("gmu_no_last_gate", "last_gate is never set", ("gmu_last_gate",), last_gate="None"),
    _gmu("gmu_returns_none", "forward computes h but does not return it",
         ("gmu_visible_shape", "gmu_equivalence", "gmu_accuracy"), result=_RETURN_NONE),
)

_GATE = "y + torch.{gate}(self.alpha) * self.cross_attn(y, x)"
BLOCK_MISTAKES = (
    _block("alpha_at_one", "alpha initialised at 1 instead of 0",
           ("block_visible_identity", "block_attributes"), example=True,
           alpha="nn.Parameter(torch.ones(1))"),
    _block("block_no_tanh", "the update is alpha * cross_attn(y, x): the tanh is missing",
           ("block_equivalence",), out="y + self.alpha * self.cross_attn(y, x)"),
    _block("block_sigmoid", "the gate is sigmoid(alpha), 0.5 at initialisation",
           ("block_visible_identity", "block_equivalence"), out=_GATE.format(gate="sigmoid")),
    _block("block_no_residual", "the residual is missing: tanh(alpha) * cross_attn(y, x)",
           ("block_visible_identity", "block_equivalence"),
           out="torch.tanh(self.alpha) * self.cross_attn(y, x)"),
    _block("block_alpha_detached", "tanh(alpha.detach()): alpha never trains",
           ("block_alpha_gradient",),
           out="y + torch.tanh(self.alpha.detach()) * self.cross_attn(y, x)"),
    _block("block_alpha_not_parameter", "alpha a plain tensor, not an nn.Parameter",
           ("block_attributes", "block_alpha_gradient"), alpha="torch.zeros(1)"),
)

_SHORTCUT = '''\
    from fusionlab.part3.data import drop_vectors

    dropped = torch.rand(x.shape[0]) < p
    return drop_vectors(x, dropped), dropped
'''
_NEEDS_GENERATOR = '''\
    if generator is None:
        return x.clone(), torch.zeros(x.shape[0], dtype=torch.bool)
    dropped = torch.rand(x.shape[0], generator=generator) < p
    return x.masked_fill(dropped.view((-1,) + (1,) * (x.dim() - 1)), 0.0), dropped
'''
_FLOAT_MASK = '''\
    u = torch.rand(x.shape[0], generator=generator)
    keep = (u >= p).float().view((-1,) + (1,) * (x.dim() - 1))
    return x * keep, (u < p).float()
'''
_IN_PLACE = '''\
    dropped = torch.rand(x.shape[0], generator=generator) < p
    x[dropped] = 0.0
    return x, dropped
'''
DROPOUT_MISTAKES = (
    _dropout("dropout_shortcut", "fusionlab's drop_vectors with coins of its own (the global "
             "random state, not the generator): no tokens either",
             ("dropout_rule", "dropout_tokens"), example=True, body=_SHORTCUT),
    _dropout("dropout_needs_generator", "drops nothing unless it is given a generator",
             ("dropout_rate", "dropout_accuracy"), threshold=True, body=_NEEDS_GENERATOR),
    _dropout("dropout_reversed", "drops the samples with u > p", ("dropout_rule", "dropout_rate"),
             rule="u > p"),
    _dropout("dropout_never_drops", "returns x unchanged: nothing is ever dropped",
             ("dropout_rule", "dropout_rate", "dropout_accuracy"), threshold=True,
             body="    return x.clone(), torch.zeros(x.shape[0], dtype=torch.bool)\n"),
    _dropout("dropout_always_drops", "ignores p: every sample is dropped",
             ("dropout_rule", "dropout_rate", "dropout_accuracy"), threshold=True,
             body="    return torch.zeros_like(x), torch.ones(x.shape[0], dtype=torch.bool)\n"),
    _dropout("dropout_no_value_error", "accepts p outside [0, 1]", ("dropout_bad_p",),
             check=""),
    _dropout("dropout_in_place", "zeroes the dropped samples of x itself", (
        "dropout_replacement",), body=_IN_PLACE),
    _dropout("dropout_mask_not_bool", "dropped is a float tensor, not a bool one",
             ("dropout_visible_returns",), body=_FLOAT_MASK),
)

register(
    Reference("gmu", gmu_facts, Evaluation(switch_evaluation, score_gmu), GMU_MISTAKES,
              gmu_known_weights),
    Reference("tanh_gated", tanh_gated_facts, None, BLOCK_MISTAKES, tanh_gated_known_weights),
    Reference("modality_dropout", modality_dropout_facts,
              Evaluation(redundant_evaluation, score_modality_dropout), DROPOUT_MISTAKES,
              lambda: {}),
)
