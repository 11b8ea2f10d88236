"""Part 1's reference formulas, run only by the grader (and by the tool that writes the
self-checks' known answers). Never shipped in ``fusionlab``: a student could call them.

Everything here works on weights (a ``state_dict`` as arrays), never on the student's objects:
fresh ``CrossAttentionLayer``s (given in Part 1), ``nn.LayerNorm``s and ``nn.Linear``s are
loaded with the exported weights. ``BIDIR_VARIANTS`` and ``GATED_VARIANTS`` hold the reference
(``"reference"``) and each known mistake (named as in ``fusionlab.part1.exercises.MISTAKES``),
so that a verdict can say which one a submission's outputs match.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fusionlab.models import CrossAttentionLayer
from fusionlab.part1.exercises import ATTENTION, CROSS_KEYS, NORMS


class WeightsError(ValueError):
    """The exported weights do not have the interface's names and shapes."""


def tensor(state: dict, key: str, shape=None) -> torch.Tensor:
    if key not in state:
        raise WeightsError(f"no weight `{key}`")
    value = torch.as_tensor(np.asarray(state[key], dtype=np.float32))
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise WeightsError(f"`{key}` has shape {tuple(value.shape)}, expected {tuple(shape)}")
    return value


def _load(module: nn.Module, state: dict, prefix: str, shapes: dict) -> nn.Module:
    module.load_state_dict({k: tensor(state, prefix + k, shape) for k, shape in shapes.items()})
    return module


# ----------------------------------------------------------------------------- bidirectional

def attention_layer(state: dict, prefix: str, dim: int, heads: int) -> CrossAttentionLayer:
    """A fresh ``CrossAttentionLayer(dim, heads)`` loaded with ``state[prefix + ...]``."""
    shapes = {k: (dim, dim) if k.endswith("weight") else (dim,) for k in CROSS_KEYS}
    return _load(CrossAttentionLayer(dim, heads), state, prefix, shapes).eval()


def layer_norm(state: dict, prefix: str, dim: int) -> nn.LayerNorm:
    return _load(nn.LayerNorm(dim), state, prefix, {"weight": (dim,), "bias": (dim,)})


def bidir_parts(state: dict, dim: int, heads: int, prefix: str = "") -> nn.ModuleDict:
    """The four submodules of the interface, from weights; raises WeightsError."""
    parts = nn.ModuleDict({a: attention_layer(state, f"{prefix}{a}.", dim, heads)
                           for a in ATTENTION})
    parts.update({n: layer_norm(state, f"{prefix}{n}.", dim) for n in NORMS})
    return parts


def _bidir(m, img, txt, *, residual=True, norm=True, swap_layers=False, swap_norms=False,
           mean_of_means=False):
    t2i, i2t = (m["img_to_txt"], m["txt_to_img"]) if swap_layers else (m["txt_to_img"],
                                                                         m["img_to_txt"])
    n_txt, n_img = (m["norm_img"], m["norm_txt"]) if swap_norms else (m["norm_txt"],
                                                                       m["norm_img"])
    txt_att, img_att = t2i(txt, img), i2t(img, txt)  # (B, N_txt, D), (B, N_img, D)
    txt_upd = (txt + txt_att) if residual else txt_att
    img_upd = (img + img_att) if residual else img_att
    if norm:
        txt_upd, img_upd = n_txt(txt_upd), n_img(img_upd)
    if mean_of_means:
        return 0.5 * (txt_upd.mean(dim=1) + img_upd.mean(dim=1))
    return torch.cat([txt_upd, img_upd], dim=1).mean(dim=1)  # (B, D)


BIDIR_VARIANTS = {
    "reference": lambda m, img, txt: _bidir(m, img, txt),
    "no_residual": lambda m, img, txt: _bidir(m, img, txt, residual=False),
    "no_norm": lambda m, img, txt: _bidir(m, img, txt, norm=False),
    "swapped_directions": lambda m, img, txt: _bidir(m, img, txt, swap_layers=True),
    "swapped_norms": lambda m, img, txt: _bidir(m, img, txt, swap_norms=True),
    "mean_of_means": lambda m, img, txt: _bidir(m, img, txt, mean_of_means=True),
}


# ----------------------------------------------------------------------------- gated

def mlp_classifier(state: dict, prefix: str, embed_dim: int,
                   num_classes: int | None = None) -> nn.Sequential:
    """Linear -> ReLU -> Linear from ``state``; raises WeightsError naming what it found."""
    if f"{prefix}0.weight" not in state and f"{prefix}weight" in state:
        shape = tuple(np.asarray(state[f"{prefix}weight"]).shape)
        raise WeightsError(
            f"the classifier is a single nn.Linear({shape[-1]}, {shape[0]}), not the MLP "
            f"Linear({embed_dim}, {embed_dim}) -> ReLU -> Linear({embed_dim}, num_classes); "
            "a linear head on a linear mix of the two modalities cannot learn the XOR task")
    w2 = tensor(state, f"{prefix}2.weight")
    if w2.dim() != 2 or w2.shape[1] != embed_dim or (num_classes and w2.shape[0] != num_classes):
        raise WeightsError(f"`{prefix}2.weight` has shape {tuple(w2.shape)}, expected "
                           f"({num_classes or 'num_classes'}, {embed_dim})")
    classes = w2.shape[0]
    mlp = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, classes))
    return _load(mlp, state, prefix, {"0.weight": (embed_dim, embed_dim), "0.bias": (embed_dim,),
                                      "2.weight": (classes, embed_dim), "2.bias": (classes,)})


class GatedParts(nn.Module):
    """The interface's projections, gate and classifier, loaded from weights."""

    def __init__(self, state: dict, img_dim: int, txt_dim: int, embed_dim: int,
                 num_classes: int | None = None, gate=None):
        super().__init__()
        self.img_proj = _load(nn.Linear(img_dim, embed_dim), state, "img_proj.",
                              {"weight": (embed_dim, img_dim), "bias": (embed_dim,)})
        self.txt_proj = _load(nn.Linear(txt_dim, embed_dim), state, "txt_proj.",
                              {"weight": (embed_dim, txt_dim), "bias": (embed_dim,)})
        gate = tensor(state, "gate", (1,)) if gate is None else torch.as_tensor(
            np.asarray(gate, dtype=np.float32)).reshape(1)
        self.gate = nn.Parameter(gate.clone())
        self.classifier = mlp_classifier(state, "classifier.", embed_dim, num_classes)


def _gated(m, img, txt, gate=None, *, swap=False, sigmoid=True, fixed_half=False):
    g = m.gate if gate is None else gate
    alpha = torch.sigmoid(g) if sigmoid else g
    if fixed_half:
        alpha = torch.full_like(alpha, 0.5)
    a_img, a_txt = ((1 - alpha), alpha) if swap else (alpha, (1 - alpha))
    return m.classifier(a_img * m.img_proj(img) + a_txt * m.txt_proj(txt))  # (B, C)


GATED_VARIANTS = {
    "reference": lambda m, img, txt, gate=None: _gated(m, img, txt, gate),
    "swapped_alpha": lambda m, img, txt, gate=None: _gated(m, img, txt, gate, swap=True),
    "no_sigmoid": lambda m, img, txt, gate=None: _gated(m, img, txt, gate, sigmoid=False),
    "ignores_gate": lambda m, img, txt, gate=None: _gated(m, img, txt, gate, fixed_half=True),
}


def gradients(module: nn.Module, loss) -> dict[str, np.ndarray]:
    """Every parameter's gradient of ``loss`` (zeros where none reaches), by name."""
    module.zero_grad(set_to_none=True)
    loss.backward()
    return {name: (p.grad if p.grad is not None else torch.zeros_like(p)).numpy().copy()
            for name, p in module.named_parameters()}


__all__ = ["BIDIR_VARIANTS", "GATED_VARIANTS", "GatedParts", "WeightsError",
           "attention_layer", "bidir_parts", "gradients", "layer_norm", "mlp_classifier",
           "tensor"]
