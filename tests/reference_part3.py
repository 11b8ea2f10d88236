"""Reference solutions of Part 3's exercises: the GMU, the tanh-gated cross-attention block and
modality dropout.

They are the notebook's TODOs, so they are deliberately not in ``fusionlab``: a student cannot
import an answer from the package the notebook uses. Until the Part 3 master notebook exists,
this file is their one home (the tests and ``tests/measure_part3.py`` use it). When the master
is written, its solution cells take this code, the tests switch to
``autograder.examples.master_namespace`` as Part 1's do, and this file is deleted.

Each follows ``fusionlab.gating``'s conventions: pooled features ``(B, D)``, a unit with an
``out_dim`` that ``FusionClassifier`` puts a linear layer on, ``ValueError`` naming the shape.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from fusionlab.gating import check_pair
from fusionlab.models import CrossAttentionLayer


class GatedMultimodalUnit(nn.Module):
    """The GMU (Arevalo et al. 2017): a gate per sample and per feature decides how much of
    each modality goes into the fused vector::

        h_v = tanh(W_v x_v),  h_t = tanh(W_t x_t),  z = sigmoid(W_z [x_v; x_t])
        h = z * h_v + (1 - z) * h_t                                  # (B, H)

    The gate of the last call is kept in ``last_gate`` ``(B, H)`` (1: the image speaks).
    """

    def __init__(self, img_dim=32, txt_dim=16, hidden_dim=32):
        super().__init__()
        self.img_dim, self.txt_dim, self.hidden_dim = img_dim, txt_dim, hidden_dim
        self.img_proj = nn.Linear(img_dim, hidden_dim)  # W_v
        self.txt_proj = nn.Linear(txt_dim, hidden_dim)  # W_t
        self.gate_proj = nn.Linear(img_dim + txt_dim, hidden_dim)  # W_z
        self.last_gate = None

    @property
    def out_dim(self) -> int:
        return self.hidden_dim

    def forward(self, img_feat, txt_feat):
        check_pair(img_feat, txt_feat, self.img_dim, self.txt_dim)
        h_v = torch.tanh(self.img_proj(img_feat))  # (B, H)
        h_t = torch.tanh(self.txt_proj(txt_feat))  # (B, H)
        z = torch.sigmoid(self.gate_proj(torch.cat([img_feat, txt_feat], dim=-1)))  # (B, H)
        self.last_gate = z.detach()
        return z * h_v + (1 - z) * h_t  # (B, H)


class TanhGatedCrossAttention(nn.Module):
    """Flamingo's gated cross-attention (Alayrac et al. 2022)::

        y = y + tanh(alpha) * xattn(y, x)        # alpha = 0 at initialisation

    At initialisation ``tanh(0) = 0``, so the block returns ``y`` exactly and a pretrained
    model it is inserted into is unchanged; ``alpha`` still receives the gradient
    ``xattn(y, x) . dL/dy``, so training opens the gate as far as the new modality helps.
    ``y``: ``(B, N_y, dim)``, ``x``: ``(B, N_x, dim)``, ``key_padding_mask``: ``(B, N_x)``.
    """

    def __init__(self, dim=32, num_heads=4):
        super().__init__()
        self.cross_attn = CrossAttentionLayer(dim, num_heads)
        self.alpha = nn.Parameter(torch.zeros(1))

    def forward(self, y, x, key_padding_mask=None):
        return y + torch.tanh(self.alpha) * self.cross_attn(y, x, key_padding_mask)


class UngatedCrossAttention(nn.Module):
    """The ablation: ``y = y + xattn(y, x)``, which changes a pretrained model from the start."""

    def __init__(self, dim=32, num_heads=4):
        super().__init__()
        self.cross_attn = CrossAttentionLayer(dim, num_heads)

    def forward(self, y, x, key_padding_mask=None):
        return y + self.cross_attn(y, x, key_padding_mask)


def modality_dropout(x: torch.Tensor, p: float, generator: torch.Generator | None = None):
    """Replace each sample's modality ``x`` ``(B, ...)`` by zeros with probability ``p``,
    independently per sample; returns ``(x_dropped, dropped)`` with ``dropped`` bool ``(B,)``.

    The kept samples are unchanged (no rescaling: a modality is there or it is not).
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    if x.dim() < 1:
        raise ValueError(f"x must have shape (B, ...), got {tuple(x.shape)}")
    u = torch.rand(x.shape[0], generator=generator, device="cpu" if generator else x.device)
    dropped = (u < p).to(x.device)  # (B,)
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    return x.masked_fill(dropped.view(shape), 0.0), dropped


class ModalityDropout(nn.Module):
    """Wrap a two-modality model: while training, each sample's text (``p_txt``) and image
    (``p_img``) are zeroed with those probabilities, independently; in eval mode the inputs pass
    unchanged. The model learns to answer from what is left when a modality is missing."""

    def __init__(self, model: nn.Module, p_img: float = 0.0, p_txt: float = 0.5):
        super().__init__()
        self.model, self.p_img, self.p_txt = model, p_img, p_txt

    def forward(self, img_feat, txt_feat):
        if self.training:
            img_feat, _ = modality_dropout(img_feat, self.p_img)
            txt_feat, _ = modality_dropout(txt_feat, self.p_txt)
        return self.model(img_feat, txt_feat)
