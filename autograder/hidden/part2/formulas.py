"""Part 2's reference formulas, run only by the grader (and by the tool that writes the
self-checks' known answers, and by the tests). Never shipped in ``fusionlab``: a student could
call them.

- ``MaskedAttention``: masked multi-head scaled dot-product attention, the answer to TODO 1,
  with one switch per known mistake (``ATTENTION_VARIANTS``: the reference and each mistake,
  named as in ``fusionlab.part2.exercises.MISTAKES``), so that a verdict can say which one a
  submission's outputs match;
- ``CoAttention``: the co-attention block, the answer to TODO 2, built on any attention (the
  tests build ``fusionlab.part2.models.CoAttentionFusion`` on it).

The facts are computed on weights (a ``state_dict`` as arrays), never on the student's objects:
``attention_from_weights`` loads the exported weights into a fresh ``MaskedAttention``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fusionlab.models import check_attention_inputs
from fusionlab.part2.exercises import ATTENTION_KEYS
from fusionlab.part2.models import CrossAttentionBlock

from ..part1.formulas import WeightsError, gradients, tensor  # weights read the same way

__all__ = ["ATTENTION_VARIANTS", "CoAttention", "MaskedAttention", "WeightsError",
           "attention_from_weights", "gradients"]


class MaskedAttention(nn.Module):
    """Masked multi-head attention (``True`` in ``key_padding_mask`` marks padding)::

        Q, K, V = W_q query, W_k kv, W_v kv              split into heads of head_dim features
        weights = softmax(Q K^T / sqrt(head_dim)), padded keys at weight 0
        out = W_o [weights V, heads side by side]        # (B, N_q, dim)

    The keyword switches reproduce the known mistakes: ``scale`` ``"dim"`` (divided by
    sqrt(dim)) or ``"none"``; ``mask`` ``"after"`` (padded weights zeroed after the softmax
    only), ``"ignored"`` or ``"inverted"``; ``softmax_dim=-2`` (over the queries);
    ``heads="no_transpose"`` (reshaped straight to ``(B, heads, N, head_dim)``).
    """

    def __init__(self, dim, num_heads=4, *, scale="head_dim", mask="before", softmax_dim=-1,
                 heads="split"):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.scale, self.mask, self.softmax_dim, self.heads = scale, mask, softmax_dim, heads
        self.last_attn_weights = None
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        if self.heads == "no_transpose":
            return x.reshape(B, self.num_heads, N, self.head_dim)
        return x.reshape(B, N, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, N, Dh)

    def forward(self, query, kv, key_padding_mask=None):
        key_padding_mask = check_attention_inputs(query, kv, key_padding_mask, self.dim)
        B, N_q, D = query.shape
        q, k, v = self._split(self.q_proj(query)), self._split(self.k_proj(kv)), \
            self._split(self.v_proj(kv))  # (B, H, N, Dh)
        scale = {"head_dim": self.head_dim**-0.5, "dim": D**-0.5, "none": 1.0}[self.scale]
        scores = (q @ k.transpose(-2, -1)) * scale  # (B, H, N_q, N_kv)
        pad = None
        if key_padding_mask is not None and self.mask != "ignored":
            pad = key_padding_mask if self.mask != "inverted" else ~key_padding_mask
            pad = pad[:, None, None, :]  # (B, 1, 1, N_kv)
            if self.mask != "after":
                scores = scores.masked_fill(pad, torch.finfo(scores.dtype).min)
        weights = F.softmax(scores, dim=self.softmax_dim)
        if pad is not None:
            weights = weights.masked_fill(pad, 0.0)  # a query whose keys are all padding: 0
        self.last_attn_weights = weights.detach()
        out = weights @ v  # (B, H, N_q, Dh)
        if self.heads == "no_transpose":
            return self.out_proj(out.reshape(B, N_q, D))
        return self.out_proj(out.transpose(1, 2).reshape(B, N_q, D))


# name -> the switches of that variant (the reference and each known mistake)
ATTENTION_VARIANTS = {
    "reference": {},
    "no_scaling": {"scale": "none"},
    "sqrt_dim": {"scale": "dim"},
    "ignores_mask": {"mask": "ignored"},
    "inverted_mask": {"mask": "inverted"},
    "mask_after_softmax": {"mask": "after"},
    "softmax_over_queries": {"softmax_dim": -2},
    "heads_not_transposed": {"heads": "no_transpose"},
}


def attention_from_weights(state: dict, dim: int, heads: int, variant: str = "reference",
                           prefix: str = "") -> MaskedAttention:
    """A fresh ``MaskedAttention`` of ``variant`` loaded with the interface's eight weights
    ``state[prefix + ...]``; raises WeightsError naming what does not fit."""
    layer = MaskedAttention(dim, heads, **ATTENTION_VARIANTS[variant])
    shapes = {k: (dim, dim) if k.endswith("weight") else (dim,) for k in ATTENTION_KEYS}
    layer.load_state_dict({k: tensor(state, prefix + k, s) for k, s in shapes.items()})
    return layer.eval()


class CoAttention(nn.Module):
    """ViLBERT's co-attention block: each stream's queries read the other stream's *inputs*,
    each direction a ``CrossAttentionBlock`` that masks its own keys::

        words'   = words_read_objects(words, objects, object_padding_mask)
        objects' = objects_read_words(objects, words, word_padding_mask)
    """

    def __init__(self, dim, num_heads=4, attention=MaskedAttention):
        super().__init__()
        self.words_read_objects = CrossAttentionBlock(dim, num_heads, attention=attention)
        self.objects_read_words = CrossAttentionBlock(dim, num_heads, attention=attention)

    def forward(self, words, objects, word_padding_mask=None, object_padding_mask=None):
        new_words = self.words_read_objects(words, objects, object_padding_mask)  # (B, L, dim)
        new_objects = self.objects_read_words(objects, words, word_padding_mask)  # (B, N, dim)
        return new_words, new_objects
