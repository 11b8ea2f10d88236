"""The trusted side of Part 1's exercises (``fusionlab.part1.exercises``).

``facts`` compute, from the weights the clean room exported and the inputs of the grading
seed, what the reference and each known mistake output (``variants``), the gradients each
formula sends back on those weights (``grads``), and what each given submodule type computes
with its weights (``sub``). The accuracy cells are scored on the grader's own XOR data: the
clean room trains the student's model as the notebook does and predicts the inputs; the labels
stay here. ``VARIANTS`` are the known mistakes, as a student would write them.
"""

from __future__ import annotations

import numpy as np
import torch

from fusionlab.data import MultimodalDataset
from fusionlab.grading.results import prefixed
from fusionlab.grading.seeds import SELF_CHECK_SEED
from fusionlab.grading.toolkit import projection_loss
from fusionlab.part1.exercises import ATTENTION, CONFIG, NORMS, bidirectional_inputs, gated_inputs

from ..references import Evaluation, Reference, Variant, register
from . import formulas as F

# ----------------------------------------------------------------------------- facts


def _variant_outputs(variants: dict, compute) -> dict[str, dict]:
    """name -> outputs of each variant that applies to these inputs (a mistake such as
    swapped directions raises for token counts that differ)."""
    outputs = {}
    for name, f in variants.items():
        try:
            outputs[name] = compute(f)
        except RuntimeError:
            if name == "reference":
                raise
    return outputs


def bidirectional_facts(ev: dict, seed: int) -> dict:
    """Expected values for the bidirectional checks, from the exported weights."""
    d, h = CONFIG.dim, CONFIG.heads
    x = bidirectional_inputs(seed)
    state = prefixed(ev, "state/")
    facts: dict = {"sub": {}, "variants": {}, "grads": {}}
    with torch.no_grad():
        for attr in ATTENTION:
            try:
                layer = F.attention_layer(state, f"{attr}.", d, h)
                facts["sub"][attr] = layer(x["sub/query"], x["sub/kv"]).numpy()
            except F.WeightsError:
                pass
        for attr in NORMS:
            try:
                facts["sub"][attr] = F.layer_norm(state, f"{attr}.", d)(x["sub/query"]).numpy()
            except F.WeightsError:
                pass
    try:
        parts = F.bidir_parts(state, d, h)
    except F.WeightsError as error:
        return {"unavailable": f"the exported weights do not fit the interface: {error}"}
    with torch.no_grad():
        facts["variants"] = _variant_outputs(F.BIDIR_VARIANTS, lambda f: {
            "out/eq": f(parts, x["eq/img"], x["eq/txt"]).numpy()})
    for name in facts["variants"]:
        out = F.BIDIR_VARIANTS[name](parts, x["grad/img"], x["grad/txt"])
        loss = projection_loss(out, x["grad/projection"], seed, "bidirectional")
        facts["grads"][name] = F.gradients(parts, loss)
    return facts


def gated_facts(ev: dict, seed: int) -> dict:
    """Expected values for the gated checks, from the exported weights."""
    s = CONFIG.gated_sizes
    x = gated_inputs(seed)
    state = prefixed(ev, "state/")
    facts: dict = {"sub": {}, "variants": {}, "grads": {}}
    try:
        with torch.no_grad():
            facts["sub"]["classifier"] = F.mlp_classifier(
                state, "classifier.", s["embed_dim"], s["num_classes"])(x["sub/z"]).numpy()
    except F.WeightsError:
        pass
    gate = state.get("gate", ev.get("attr/gate"))
    try:
        if gate is None or np.asarray(gate).shape != (1,):
            raise F.WeightsError("no gate of shape (1,)")
        parts = F.GatedParts(state, s["img_dim"], s["txt_dim"], s["embed_dim"],
                             s["num_classes"], gate=gate)
    except F.WeightsError as error:
        return {"unavailable": f"the exported weights do not fit the interface: {error}"}
    uneven = torch.full((1,), CONFIG.uneven_gate)
    with torch.no_grad():
        facts["variants"] = _variant_outputs(F.GATED_VARIANTS, lambda f: {
            "out/eq": f(parts, x["eq/img"], x["eq/txt"]).numpy(),
            "out/eq_uneven_gate": f(parts, x["eq/img"], x["eq/txt"], uneven).numpy()})
    for name in facts["variants"]:
        out = F.GATED_VARIANTS[name](parts, x["eq/img"], x["eq/txt"])
        loss = projection_loss(out, x["grad/projection"], seed, "gated")
        facts["grads"][name] = F.gradients(parts, loss)
    return facts


# ----------------------------------------------------------------------------- known answers

def _known_generator() -> torch.Generator:
    return torch.Generator().manual_seed(SELF_CHECK_SEED)


def bidirectional_known_weights() -> dict[str, np.ndarray]:
    """The self-check's weights: fresh layers' draws, and LayerNorms away from their default
    values, so that swapped norms show."""
    from fusionlab.models import CrossAttentionLayer

    g = _known_generator()
    torch.manual_seed(SELF_CHECK_SEED)
    weights = {}
    for attr in ATTENTION:
        for key, value in CrossAttentionLayer(CONFIG.dim, CONFIG.heads).state_dict().items():
            weights[f"{attr}.{key}"] = value.numpy()
    for attr in NORMS:
        weights[f"{attr}.weight"] = (1 + 0.3 * torch.randn(CONFIG.dim, generator=g)).numpy()
        weights[f"{attr}.bias"] = (0.3 * torch.randn(CONFIG.dim, generator=g)).numpy()
    return weights


def gated_known_weights() -> dict[str, np.ndarray]:
    """The self-check's weights, the gate away from 0 so that a swapped alpha shows."""
    g = _known_generator()
    s = CONFIG.gated_sizes
    e, c = s["embed_dim"], s["num_classes"]
    weights = {"gate": np.array([0.7], dtype=np.float32)}
    for name, shape in (("img_proj", (e, s["img_dim"])), ("txt_proj", (e, s["txt_dim"])),
                        ("classifier.0", (e, e)), ("classifier.2", (c, e))):
        weights[f"{name}.weight"] = (0.3 * torch.randn(*shape, generator=g)).numpy()
        weights[f"{name}.bias"] = (0.3 * torch.randn(shape[0], generator=g)).numpy()
    return weights


# ----------------------------------------------------------------------------- accuracy

def xor_evaluation(eval_seed: int):
    """The grader's XOR data: inputs for the clean room, labels kept here."""
    img, txt, labels = MultimodalDataset(n_samples=CONFIG.eval_samples, seed=eval_seed,
                                         interaction="xor").tensors()
    return {"img": img.numpy(), "txt": txt.numpy()}, labels.numpy()


def score_with(what: str):
    def score(trained: dict, labels) -> dict | str:
        logits = trained.get("logits")
        if logits is None or np.shape(logits) != (len(labels), 2):
            return (f"{what} gave no logits of shape ({len(labels)}, 2) on the grader's data, "
                    f"got {None if logits is None else np.shape(logits)}")
        acc = float((np.argmax(logits, axis=1) == labels).mean()) if np.isfinite(
            logits).all() else float("nan")
        return {"accuracy": acc, "threshold": CONFIG.accuracy_threshold, "what": what,
                "data": "XOR test data"}

    return score


# ----------------------------------------------------------------------------- known mistakes

_BIDIR = '''\
class BidirectionalCrossAttention(nn.Module):
    def __init__(self, dim, num_heads=4):
        super().__init__()
        self.txt_to_img = {txt_layer}
        self.img_to_txt = {img_layer}
        self.norm_txt = nn.LayerNorm(dim)
        self.norm_img = {img_norm}

    def forward(self, img_embed, txt_embed):
{body}
'''
_BODY = '''\
        txt_upd = {txt_upd}
        img_upd = {img_upd}
        return {result}'''
_TXT_UPD = "self.norm_txt(txt_embed + self.txt_to_img(txt_embed, img_embed))"
_IMG_UPD = "self.norm_img(img_embed + self.img_to_txt(img_embed, txt_embed))"
_POOLED = "torch.cat([txt_upd, img_upd], dim=1).mean(dim=1)"


def bidir_src(txt_upd=_TXT_UPD, img_upd=_IMG_UPD, result=_POOLED, body=None,
              txt_layer="CrossAttentionLayer(dim, num_heads)",
              img_layer="CrossAttentionLayer(dim, num_heads)",
              img_norm="nn.LayerNorm(dim)", extra="") -> str:
    body = body or _BODY.format(txt_upd=txt_upd, img_upd=img_upd, result=result)
    return extra + _BIDIR.format(txt_layer=txt_layer, img_layer=img_layer, img_norm=img_norm,
                                 body=body)


_GATED = '''\
class GatedFusionModel(nn.Module):
    def __init__(self, img_dim=32, txt_dim=16, embed_dim=32, num_classes=3):
        super().__init__()
        self.img_proj = nn.Linear(img_dim, embed_dim)
        self.txt_proj = nn.Linear(txt_dim, embed_dim)
        self.gate = {gate}
        self.classifier = {classifier}

    def forward(self, img_feat, txt_feat):
        alpha = {alpha}
        z = {z}
        return self.classifier(z)
'''
_MLP = ("nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.ReLU(), "
        "nn.Linear(embed_dim, num_classes))")


def gated_src(gate="nn.Parameter(torch.zeros(1))", classifier=_MLP,
              alpha="torch.sigmoid(self.gate)",
              z="alpha * self.img_proj(img_feat) + (1 - alpha) * self.txt_proj(txt_feat)") -> str:
    return _GATED.format(gate=gate, classifier=classifier, alpha=alpha, z=z)


_SHAPES = ("bidir_visible_shape", "bidir_shapes", "bidir_equivalence", "bidir_accuracy")


def _bidir(name, description, loses, example=False, threshold=False, **source) -> Variant:
    return Variant(name, "bidirectional", {"BidirectionalCrossAttention": bidir_src(**source)},
                   tuple(loses), description, example, threshold)


def _gated(name, description, loses, example=False, threshold=False, **source) -> Variant:
    return Variant(name, "gated", {"GatedFusionModel": gated_src(**source)}, tuple(loses),
                   description, example, threshold)


BIDIR_MISTAKES = (
    _bidir("wrong_shape", "pooled over the feature axis: (B, 2) instead of (B, dim)", _SHAPES,
           result="torch.cat([txt_upd, img_upd], dim=1).mean(dim=2)"),
    _bidir("no_pooling", "the tokens are concatenated but not mean-pooled", _SHAPES,
           result="torch.cat([txt_upd, img_upd], dim=1)"),
    _bidir("concat_feature_axis", "tokens concatenated along the feature axis", _SHAPES,
           result="torch.cat([txt_upd, img_upd], dim=-1).mean(dim=1)"),
    _bidir("no_residual", "the residual connections are missing", ("bidir_equivalence",),
           example=True, threshold=True,
           txt_upd="self.norm_txt(self.txt_to_img(txt_embed, img_embed))",
           img_upd="self.norm_img(self.img_to_txt(img_embed, txt_embed))"),
    _bidir("no_norm", "the LayerNorms are missing (unused: no gradient reaches them)",
           ("bidir_equivalence", "bidir_gradients"),
           txt_upd="txt_embed + self.txt_to_img(txt_embed, img_embed)",
           img_upd="img_embed + self.img_to_txt(img_embed, txt_embed)"),
    _bidir("swapped_directions", "img_to_txt used for the text queries and vice versa",
           ("bidir_equivalence",),
           txt_upd="self.norm_txt(txt_embed + self.img_to_txt(txt_embed, img_embed))",
           img_upd="self.norm_img(img_embed + self.txt_to_img(img_embed, txt_embed))"),
    _bidir("swapped_query_kv", "queries and keys swapped in each direction (the output takes "
           "the shape of the other modality's tokens)", ("bidir_equivalence", "bidir_shapes"),
           txt_upd="self.norm_txt(txt_embed + self.txt_to_img(img_embed, txt_embed))",
           img_upd="self.norm_img(img_embed + self.img_to_txt(txt_embed, img_embed))"),
    _bidir("swapped_norms", "norm_img normalises the text tokens and vice versa",
           ("bidir_equivalence",),
           txt_upd="self.norm_img(txt_embed + self.txt_to_img(txt_embed, img_embed))",
           img_upd="self.norm_txt(img_embed + self.img_to_txt(img_embed, txt_embed))"),
    _bidir("mean_of_means", "the mean of the two modalities' means", ("bidir_equivalence",),
           result="0.5 * (txt_upd.mean(dim=1) + img_upd.mean(dim=1))"),
    _bidir("one_direction", "only the text reads the image", ("bidir_equivalence",
                                                                 "bidir_gradients"),
           img_upd="self.norm_img(img_embed)"),
    _bidir("output_detached", "the output is detached from the graph",
           ("bidir_gradients",), threshold=True, result=_POOLED + ".detach()"),
    _bidir("one_side_detached", "the image update's attention output is detached",
           ("bidir_gradients",),
           img_upd="self.norm_img(img_embed + self.img_to_txt(img_embed, txt_embed).detach())"),
    _bidir("returns_none", "forward computes but does not return", (
        "bidir_visible_shape", "bidir_shapes", "bidir_equivalence", "bidir_gradients",
        "bidir_no_nan", "bidir_accuracy"),
        body="        self.norm_txt(txt_embed + self.txt_to_img(txt_embed, img_embed))"),
    _bidir("nan_for_zero_input", "divides by the inputs' norm: NaN on all-zero inputs",
           ("bidir_no_nan",),
           result="torch.cat([txt_upd, img_upd], dim=1).mean(dim=1) * "
                  "img_embed.norm(dim=-1).mean(dim=1, keepdim=True) / "
                  "img_embed.norm(dim=-1).mean(dim=1, keepdim=True)"),
    _bidir("forward_stub", "forward still raises NotImplementedError", (
        "bidir_visible_shape", "bidir_shapes", "bidir_equivalence", "bidir_gradients",
        "bidir_no_nan", "bidir_accuracy"),
        body="        raise NotImplementedError()"),
    _bidir("torch_attention", "txt_to_img is torch's nn.MultiheadAttention, not the given layer",
           ("bidir_attributes", "bidir_equivalence", "bidir_visible_shape", "bidir_shapes",
            "bidir_gradients", "bidir_no_nan", "bidir_accuracy"),
           txt_layer="nn.MultiheadAttention(dim, num_heads, batch_first=True)"),
    _bidir("shared_layer", "one attention layer for both directions",
           ("bidir_attributes", "bidir_equivalence", "bidir_gradients"),
           img_layer="self.txt_to_img"),
    _bidir("fake_types", "CrossAttentionLayer subclasses whose forward returns zeros",
           ("bidir_attributes", "bidir_equivalence", "bidir_gradients"),
           extra=("class DoNothingAttention(CrossAttentionLayer):\n"
                  "    def forward(self, query, kv):\n"
                  "        return torch.zeros_like(query)\n\n\n"),
           txt_layer="DoNothingAttention(dim, num_heads)",
           img_layer="DoNothingAttention(dim, num_heads)"),
)

GATED_MISTAKES = (
    _gated("gate_at_one", "gate initialised at 1.0 instead of 0", ("gated_gate_init",),
           example=True, gate="nn.Parameter(torch.ones(1))"),
    _gated("gate_not_parameter", "the gate is a plain tensor, not an nn.Parameter",
           ("gated_gate_init", "gated_gate_gradient"), gate="torch.zeros(1)"),
    _gated("linear_head", "a linear head (nn.Linear) instead of the MLP: cannot learn XOR",
           ("gated_equivalence", "gated_accuracy"), threshold=True,
           classifier="nn.Linear(embed_dim, num_classes)"),
    _gated("swapped_alpha", "alpha weights the text", ("gated_equivalence",),
           z="(1 - alpha) * self.img_proj(img_feat) + alpha * self.txt_proj(txt_feat)"),
    _gated("no_sigmoid", "alpha = gate, without the sigmoid", ("gated_equivalence",),
           alpha="self.gate"),
    _gated("ignores_gate", "alpha fixed at 0.5", ("gated_equivalence", "gated_gate_gradient"),
           alpha="0.5"),
    _gated("alpha_detached", "alpha detached: the gate never trains", ("gated_gate_gradient",),
           alpha="torch.sigmoid(self.gate).detach()"),
)

register(
    Reference("bidirectional", bidirectional_facts,
              Evaluation(xor_evaluation, score_with("a classifier trained on your layer")),
              BIDIR_MISTAKES, bidirectional_known_weights),
    Reference("gated", gated_facts,
              Evaluation(xor_evaluation, score_with("your GatedFusionModel")),
              GATED_MISTAKES, gated_known_weights),
)
