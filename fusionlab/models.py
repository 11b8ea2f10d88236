"""Reference fusion models: early, late (two kinds) and cross-attention.

Every model takes image and text features as token sequences ``(B, N, D)``, each with an
optional padding mask ``(B, N)`` (``True`` marks padding, as in PyTorch's
``key_padding_mask``). A pooled feature vector ``(B, D)`` is the case ``N = 1``, which
reproduces the Part 1 seed notebook's models exactly: same layers, same parameter names, same
parameter counts.

Wrong shapes raise a ``ValueError`` that names the expected shape.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

# ----------------------------------------------------------------------------- input helpers

def as_tokens(x: torch.Tensor, dim: int, name: str) -> torch.Tensor:
    """Return ``x`` as ``(B, N, dim)``; a pooled ``(B, dim)`` input becomes one token."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 2 and x.shape[-1] == dim:
        return x.unsqueeze(1)  # (B, 1, dim)
    if x.dim() == 3 and x.shape[-1] == dim:
        return x
    raise ValueError(
        f"{name} must have shape (B, {dim}) or (B, N, {dim}), got {tuple(x.shape)}"
    )


def check_padding_mask(mask: torch.Tensor | None, tokens: torch.Tensor, name: str):
    """Validate a padding mask for ``tokens`` of shape ``(B, N, D)``; ``None`` means no padding."""
    if mask is None:
        return None
    B, N, _ = tokens.shape
    if mask.shape != (B, N):
        raise ValueError(f"{name} must have shape (B, N) = ({B}, {N}), got {tuple(mask.shape)}")
    if mask.dtype != torch.bool:
        raise ValueError(f"{name} must be a bool tensor (True marks padding), got {mask.dtype}")
    return mask


def check_attention_inputs(query, kv, key_padding_mask, dim: int):
    """Validate the inputs of a cross-attention layer of width ``dim``: ``query`` ``(B, N_q,
    dim)``, ``kv`` ``(B, N_kv, dim)``, ``key_padding_mask`` ``(B, N_kv)`` bool or ``None``.
    Returns the mask; a wrong shape raises a ``ValueError`` naming the expected one."""
    for name, x in (("query", query), ("kv", kv)):
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != dim:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} must have shape (B, N, {dim}), got {shape}")
    if query.shape[0] != kv.shape[0]:
        raise ValueError(
            f"query and kv must share the batch size B, got {query.shape[0]} and {kv.shape[0]}"
        )
    return check_padding_mask(key_padding_mask, kv, "key_padding_mask")


def masked_mean(x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the tokens of ``x`` ``(B, N, D)`` that are not padding -> ``(B, D)``.

    A sample whose tokens are all padding pools to zeros rather than NaN.
    """
    if padding_mask is None:
        return x.mean(dim=1)
    keep = (~padding_mask).unsqueeze(-1).to(x.dtype)  # (B, N, 1)
    return (x * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)


def mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """Linear -> ReLU -> Linear: the two-layer block used by the encoders and heads."""
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim))


# ----------------------------------------------------------------------------- models

class EarlyFusion(nn.Module):
    """Early fusion, "the blender": concatenate the raw features, then one shared MLP.

    Token sequences are mean-pooled per modality first, so the shared network sees
    ``[img; txt]`` of size ``img_dim + txt_dim`` and can mix any feature with any other.
    """

    def __init__(self, img_dim=32, txt_dim=16, hidden_dim=64, num_classes=3, dropout=0.2):
        super().__init__()
        self.img_dim, self.txt_dim = img_dim, txt_dim
        self.fusion = nn.Sequential(
            nn.Linear(img_dim + txt_dim, hidden_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, num_classes),
        )

    def forward(self, img_feat, txt_feat, img_padding_mask=None, txt_padding_mask=None):
        img = as_tokens(img_feat, self.img_dim, "img_feat")  # (B, N_img, img_dim)
        txt = as_tokens(txt_feat, self.txt_dim, "txt_feat")  # (B, N_txt, txt_dim)
        img = masked_mean(img, check_padding_mask(img_padding_mask, img, "img_padding_mask"))
        txt = masked_mean(txt, check_padding_mask(txt_padding_mask, txt, "txt_padding_mask"))
        return self.fusion(torch.cat([img, txt], dim=-1))  # (B, num_classes)


class LateFusion(nn.Module):
    """Late fusion of embeddings: one encoder per modality, then concatenation and an MLP head.

    This is the seed notebook's "late" model. Its head still sees both embeddings together,
    so it can learn interactions between them; the pure committee is ``CommitteeFusion``.
    """

    def __init__(self, img_dim=32, txt_dim=16, embed_dim=32, num_classes=3):
        super().__init__()
        self.img_dim, self.txt_dim = img_dim, txt_dim
        self.img_encoder = mlp(img_dim, embed_dim, embed_dim)
        self.txt_encoder = mlp(txt_dim, embed_dim, embed_dim)
        self.fusion_head = mlp(2 * embed_dim, embed_dim, num_classes)

    def forward(self, img_feat, txt_feat, img_padding_mask=None, txt_padding_mask=None):
        img = as_tokens(img_feat, self.img_dim, "img_feat")
        txt = as_tokens(txt_feat, self.txt_dim, "txt_feat")
        img_mask = check_padding_mask(img_padding_mask, img, "img_padding_mask")
        txt_mask = check_padding_mask(txt_padding_mask, txt, "txt_padding_mask")
        img_embed = masked_mean(self.img_encoder(img), img_mask)  # (B, embed_dim)
        txt_embed = masked_mean(self.txt_encoder(txt), txt_mask)  # (B, embed_dim)
        return self.fusion_head(torch.cat([img_embed, txt_embed], dim=-1))


class CommitteeFusion(nn.Module):
    """Decision-level late fusion, "the committee": each modality has its own classifier and
    the two sets of logits are averaged.

    No layer ever sees both modalities, so the logits are a sum of an image-only and a
    text-only score: the committee cannot represent an interaction such as XOR.
    """

    def __init__(self, img_dim=32, txt_dim=16, embed_dim=32, num_classes=3):
        super().__init__()
        self.img_dim, self.txt_dim = img_dim, txt_dim
        self.img_classifier = UnimodalClassifier(img_dim, embed_dim, num_classes, "img")
        self.txt_classifier = UnimodalClassifier(txt_dim, embed_dim, num_classes, "txt")

    def forward(self, img_feat, txt_feat, img_padding_mask=None, txt_padding_mask=None):
        args = (img_feat, txt_feat, img_padding_mask, txt_padding_mask)
        return 0.5 * (self.img_classifier(*args) + self.txt_classifier(*args))  # (B, C)


class UnimodalClassifier(nn.Module):
    """A classifier that looks at one modality only (``"img"`` or ``"txt"``) and ignores the
    other: the baseline that shows how much a modality knows on its own."""

    def __init__(self, in_dim, hidden_dim=32, num_classes=3, modality="img"):
        super().__init__()
        if modality not in ("img", "txt"):
            raise ValueError(f"modality must be 'img' or 'txt', got {modality!r}")
        self.in_dim, self.modality = in_dim, modality
        self.encoder = mlp(in_dim, hidden_dim, hidden_dim)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(hidden_dim, num_classes))

    def forward(self, img_feat, txt_feat, img_padding_mask=None, txt_padding_mask=None):
        if self.modality == "img":
            feat, mask, name = img_feat, img_padding_mask, "img_feat"
        else:
            feat, mask, name = txt_feat, txt_padding_mask, "txt_feat"
        tokens = as_tokens(feat, self.in_dim, name)
        mask = check_padding_mask(mask, tokens, f"{self.modality}_padding_mask")
        return self.head(masked_mean(self.encoder(tokens), mask))


class CrossAttentionLayer(nn.Module):
    """Multi-head cross-attention: queries from one modality read keys and values of another.

        Q = W_q query,  K = W_k kv,  V = W_v kv
        out = W_o softmax(Q K^T / sqrt(d_head)) V

    With a single key token the softmax has one entry, so every weight is exactly 1 and the
    layer reduces to ``W_o W_v kv``: attention needs several tokens to have anything to choose.
    The weights of the last call are kept in ``last_attn_weights`` ``(B, heads, N_q, N_kv)``.

    Every key is read: the layer has no padding mask. Masking padded keys is Part 2's exercise
    (``MaskedMultiHeadAttention``), so no ``fusionlab`` class computes it; after Part 2, torch's
    ``nn.MultiheadAttention`` takes a ``key_padding_mask``.
    """

    def __init__(self, dim, num_heads=4):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.last_attn_weights = None

    def forward(self, query, kv, key_padding_mask=None):
        """query: (B, N_q, dim); kv: (B, N_kv, dim) -> (B, N_q, dim).

        ``key_padding_mask`` stays only for notebooks of the earlier release, which pass
        ``None``; a mask is refused (see the class docstring)."""
        if key_padding_mask is not None:
            raise ValueError("CrossAttentionLayer reads every key and takes no key_padding_mask "
                             "(masking is Part 2's exercise): leave the padded keys out, or use "
                             "your MaskedMultiHeadAttention or torch's nn.MultiheadAttention")
        check_attention_inputs(query, kv, None, self.dim)
        B, N_q, D = query.shape
        N_kv = kv.shape[1]
        H, Dh = self.num_heads, self.head_dim

        q = self.q_proj(query).reshape(B, N_q, H, Dh).transpose(1, 2)  # (B, H, N_q, Dh)
        k = self.k_proj(kv).reshape(B, N_kv, H, Dh).transpose(1, 2)  # (B, H, N_kv, Dh)
        v = self.v_proj(kv).reshape(B, N_kv, H, Dh).transpose(1, 2)  # (B, H, N_kv, Dh)

        scores = (q @ k.transpose(-2, -1)) * self.scale  # (B, H, N_q, N_kv)
        attn = F.softmax(scores, dim=-1)
        self.last_attn_weights = attn.detach()

        out = (attn @ v).transpose(1, 2).reshape(B, N_q, D)  # (B, N_q, D)
        return self.out_proj(out)


class CrossAttentionFusion(nn.Module):
    """Cross-attention fusion: text tokens query the image tokens.

    Both modalities are projected to ``embed_dim``; each text token reads the image tokens
    through ``CrossAttentionLayer``, a residual connection and LayerNorm follow, the text
    tokens are mean-pooled and an MLP classifies. With an ``img_padding_mask`` each sample's
    text reads only its real image tokens (the layer takes no mask: they are left out, sample
    by sample); a sample without any reads nothing.
    """

    def __init__(self, img_dim=32, txt_dim=16, embed_dim=32, num_heads=4, num_classes=3):
        super().__init__()
        self.img_dim, self.txt_dim = img_dim, txt_dim
        self.img_proj = nn.Linear(img_dim, embed_dim)
        self.txt_proj = nn.Linear(txt_dim, embed_dim)
        self.cross_attn = CrossAttentionLayer(embed_dim, num_heads)
        self._last_attn_weights = None
        self.norm = nn.LayerNorm(embed_dim)
        self.classifier = mlp(embed_dim, embed_dim, num_classes)

    @property
    def last_attn_weights(self):
        """Attention weights of the last forward pass, ``(B, heads, N_txt, N_img)`` (0 on
        padded image tokens)."""
        return self._last_attn_weights

    def _read_image(self, txt_embed, img_embed, img_mask):
        """``(B, N_txt, E)``: what each text token reads of the real image tokens."""
        if img_mask is None or not img_mask.any():
            out = self.cross_attn(txt_embed, img_embed)
            self._last_attn_weights = self.cross_attn.last_attn_weights
            return out
        B, N_txt, _ = txt_embed.shape
        weights = txt_embed.new_zeros(B, self.cross_attn.num_heads, N_txt, img_embed.shape[1])
        rows = []
        for b in range(B):  # one sample at a time, on its real image tokens only
            real = (~img_mask[b]).nonzero().squeeze(-1)  # (N_real,)
            if len(real) == 0:  # nothing to read: the attention adds nothing but its bias
                rows.append(self.cross_attn.out_proj(torch.zeros_like(txt_embed[b:b + 1])))
                continue
            rows.append(self.cross_attn(txt_embed[b:b + 1], img_embed[b:b + 1, real]))
            weights[b:b + 1, :, :, real] = self.cross_attn.last_attn_weights
        self._last_attn_weights = weights.detach()
        return torch.cat(rows)  # (B, N_txt, E)

    def forward(self, img_feat, txt_feat, img_padding_mask=None, txt_padding_mask=None):
        img = as_tokens(img_feat, self.img_dim, "img_feat")
        txt = as_tokens(txt_feat, self.txt_dim, "txt_feat")
        img_mask = check_padding_mask(img_padding_mask, img, "img_padding_mask")
        txt_mask = check_padding_mask(txt_padding_mask, txt, "txt_padding_mask")
        img_embed = self.img_proj(img)  # (B, N_img, E)
        txt_embed = self.txt_proj(txt)  # (B, N_txt, E)
        attn_out = self._read_image(txt_embed, img_embed, img_mask)  # (B, N_txt, E)
        fused = self.norm(txt_embed + attn_out)  # (B, N_txt, E), residual connection
        return self.classifier(masked_mean(fused, txt_mask))  # (B, num_classes)


class FusionLayerClassifier(nn.Module):
    """A classifier around a fusion layer: project each modality to ``embed_dim`` as one token,
    let the layer fuse the two token sequences into ``(B, embed_dim)``, classify with an MLP.

    ``fusion_layer`` is the layer's class, built as ``fusion_layer(embed_dim, num_heads)``; in
    Part 1 it is the student's ``BidirectionalCrossAttention``.
    """

    def __init__(self, fusion_layer, img_dim=32, txt_dim=16, embed_dim=32, num_heads=4,
                 num_classes=3):
        super().__init__()
        self.img_proj = nn.Linear(img_dim, embed_dim)
        self.txt_proj = nn.Linear(txt_dim, embed_dim)
        self.bidirectional = fusion_layer(embed_dim, num_heads)
        self.classifier = mlp(embed_dim, embed_dim, num_classes)

    def forward(self, img_feat, txt_feat):
        img_embed = self.img_proj(img_feat).unsqueeze(1)  # (B, 1, embed_dim)
        txt_embed = self.txt_proj(txt_feat).unsqueeze(1)  # (B, 1, embed_dim)
        return self.classifier(self.bidirectional(img_embed, txt_embed))  # (B, num_classes)
