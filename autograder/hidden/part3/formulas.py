"""Part 3's reference formulas, run only by the grader (and by the tool that writes the
self-checks' known answers). Never shipped in ``fusionlab``: a student could call them.

Everything here works on weights (a ``state_dict`` as arrays), never on the student's objects:
fresh ``nn.Linear``s and ``CrossAttentionLayer``s (given in Part 1) are loaded with the
exported weights. ``GMU_VARIANTS`` and ``BLOCK_VARIANTS`` hold the reference (``"reference"``)
and each known mistake (named as in ``fusionlab.part3.exercises.MISTAKES``), so that a verdict
can say which one a submission's outputs match. ``dropped`` is the modality-dropout rule.
"""

from __future__ import annotations

import torch
from torch import nn

from fusionlab.part3.exercises import CONFIG

from ..part1.formulas import WeightsError, attention_layer, gradients, tensor


def linear(state: dict, prefix: str, in_features: int, out_features: int) -> nn.Linear:
    """A fresh ``nn.Linear(in_features, out_features)`` loaded with ``state[prefix + ...]``;
    raises WeightsError naming the layer it found."""
    w = tensor(state, f"{prefix}weight")
    if tuple(w.shape) != (out_features, in_features):
        found = f"nn.Linear({w.shape[-1]}, {w.shape[0]})" if w.dim() == 2 else \
            f"a weight of shape {tuple(w.shape)}"
        raise WeightsError(f"`{prefix[:-1]}` is {found}, expected "
                           f"nn.Linear({in_features}, {out_features})")
    layer = nn.Linear(in_features, out_features)
    layer.load_state_dict({"weight": w, "bias": tensor(state, f"{prefix}bias", (out_features,))})
    return layer


# ----------------------------------------------------------------------------- the GMU

class GMUParts(nn.Module):
    """The GMU's three layers, loaded from weights; raises WeightsError."""

    def __init__(self, state: dict):
        super().__init__()
        s = CONFIG.gmu_sizes
        img, txt, H = s["img_dim"], s["txt_dim"], s["hidden_dim"]
        self.img_proj = linear(state, "img_proj.", img, H)
        self.txt_proj = linear(state, "txt_proj.", txt, H)
        self.gate_proj = linear(state, "gate_proj.", img + txt, H)


def _gmu(m, img, txt, *, tanh=True, swap_gate=False, text_first=False):
    """``(h, z)``: the unit's output and its gate ``(B, H)`` each."""
    h_v, h_t = m.img_proj(img), m.txt_proj(txt)  # (B, H)
    if tanh:
        h_v, h_t = torch.tanh(h_v), torch.tanh(h_t)
    both = torch.cat([txt, img] if text_first else [img, txt], dim=-1)  # (B, img + txt)
    z = torch.sigmoid(m.gate_proj(both))  # (B, H)
    a = 1 - z if swap_gate else z
    return a * h_v + (1 - a) * h_t, z


GMU_VARIANTS = {
    "reference": lambda m, img, txt: _gmu(m, img, txt),
    "swapped_gate": lambda m, img, txt: _gmu(m, img, txt, swap_gate=True),
    "no_tanh": lambda m, img, txt: _gmu(m, img, txt, tanh=False),
    "swapped_concat": lambda m, img, txt: _gmu(m, img, txt, text_first=True),
}


# ----------------------------------------------------------------------------- the gated block

class BlockParts(nn.Module):
    """The block's cross-attention, loaded from weights, and its ``alpha``."""

    def __init__(self, state: dict, alpha: float):
        super().__init__()
        self.cross_attn = attention_layer(state, "cross_attn.", CONFIG.block_dim,
                                          CONFIG.block_heads)
        self.alpha = nn.Parameter(torch.full((1,), float(alpha)))


def _block(m, y, x, *, gate=torch.tanh, residual=True):
    update = gate(m.alpha) * m.cross_attn(y, x)  # (B, N_y, D)
    return y + update if residual else update


BLOCK_VARIANTS = {
    "reference": lambda m, y, x: _block(m, y, x),
    "block_no_tanh": lambda m, y, x: _block(m, y, x, gate=lambda a: a),
    "block_sigmoid": lambda m, y, x: _block(m, y, x, gate=torch.sigmoid),
    "block_no_residual": lambda m, y, x: _block(m, y, x, residual=False),
}


# ----------------------------------------------------------------------------- modality dropout

def dropped(u: torch.Tensor, p: float) -> torch.Tensor:
    """The rule: sample ``i`` is dropped when ``u_i < p``."""
    return u < p


def reversed_rule(u: torch.Tensor, p: float) -> torch.Tensor:
    """The known mistake: the comparison the other way round."""
    return u > p


__all__ = ["BLOCK_VARIANTS", "BlockParts", "GMUParts", "GMU_VARIANTS", "WeightsError",
           "dropped", "gradients", "linear", "reversed_rule", "tensor"]

