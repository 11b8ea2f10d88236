"""Part 4's models: two encoders aligned by a contrastive loss, and a fusion model on top.

- ``ImageEncoder``: an 8x8 digit as 16 patch tokens ``(B, 16, dim)``, pooled and projected to
  one embedding ``(B, embed_dim)``;
- ``TextEncoder``: word ids as word tokens ``(B, L, dim)``, pooled (padding left out) and
  projected to one embedding ``(B, embed_dim)``;
- ``DualEncoder``: both encoders and the loss's learnable numbers: CLIP's ``logit_scale``
  (the log of 1 / temperature, initialised at ``log(1 / 0.07)`` and clamped at ``log(100)``)
  and, for SigLIP's sigmoid loss, a ``logit_bias``;
- ``MatchingModel``: ALBEF's idea in small: the text tokens read the image tokens through a
  cross-attention block (Part 2's ``CrossAttentionBlock``), and a head says whether the caption
  describes the image. Its encoders can come from a ``DualEncoder`` (aligned) or be new.

A wrong input shape raises a ValueError that names the expected one.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from ..models import CrossAttentionLayer, masked_mean, mlp
from ..part2.models import CrossAttentionBlock
from .data import IMAGE_DIM, IMAGE_SIDE, MAX_LEN, PAD, VOCAB

CLIP_TEMPERATURE = 0.07  # CLIP's initial temperature: logit_scale starts at log(1 / 0.07)
MAX_LOGIT_SCALE = 100.0  # CLIP clamps exp(logit_scale) at 100
SIGLIP_TEMPERATURE = 0.1  # SigLIP starts at t = 10 ...
SIGLIP_BIAS = -10.0  # ... and b = -10: at first every pair looks like a negative


class ImageEncoder(nn.Module):
    """An 8x8 image ``(B, 64)`` -> patch tokens ``(B, 16, dim)`` -> embedding ``(B, embed_dim)``.

    Each 2x2 patch is projected to ``dim`` and gets a learned position; a per-token MLP with a
    residual connection and a LayerNorm refines it. The embedding is an MLP of the mean token.
    """

    def __init__(self, dim: int = 64, embed_dim: int = 32, patch: int = 2):
        super().__init__()
        if IMAGE_SIDE % patch:
            raise ValueError(f"patch must divide {IMAGE_SIDE}, got {patch}")
        self.dim, self.patch = dim, patch
        self.num_tokens = (IMAGE_SIDE // patch) ** 2
        self.patch_proj = nn.Linear(patch * patch, dim)
        self.position = nn.Parameter(0.02 * torch.randn(self.num_tokens, dim))
        self.mixer = mlp(dim, 2 * dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.head = mlp(self.num_tokens * dim, dim, embed_dim)

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 64)`` -> ``(B, num_tokens, dim)``."""
        if not isinstance(images, torch.Tensor) or images.dim() != 2 or \
                images.shape[1] != IMAGE_DIM:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images)
            raise ValueError(f"images must have shape (B, {IMAGE_DIM}), got {shape}")
        B, n, p = images.shape[0], IMAGE_SIDE // self.patch, self.patch
        patches = images.reshape(B, n, p, n, p).permute(0, 1, 3, 2, 4).reshape(B, n * n, p * p)
        x = self.patch_proj(patches) + self.position  # (B, N, dim)
        return self.norm(x + self.mixer(x))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.tokens(images).flatten(1))  # (B, embed_dim)


class TextEncoder(nn.Module):
    """Word ids ``(B, L)`` -> word tokens ``(B, L, dim)`` -> embedding ``(B, embed_dim)``.

    Each word is embedded and gets a learned position; a per-token MLP with a residual
    connection and a LayerNorm refines it. The embedding is an MLP of the mean over the words
    that are not padding.
    """

    def __init__(self, dim: int = 64, embed_dim: int = 32, vocab_size: int = len(VOCAB),
                 max_len: int = MAX_LEN):
        super().__init__()
        self.dim, self.max_len = dim, max_len
        self.embed = nn.Embedding(vocab_size, dim)
        self.position = nn.Parameter(0.02 * torch.randn(max_len, dim))
        self.mixer = mlp(dim, 2 * dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.head = mlp(dim, dim, embed_dim)

    def tokens(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, L)`` word ids -> (tokens ``(B, L, dim)``, padding mask ``(B, L)``, True = pad)."""
        if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.shape[1] > self.max_len \
                or ids.dtype != torch.long:
            what = f"{tuple(ids.shape)} {ids.dtype}" if isinstance(ids, torch.Tensor) else type(ids)
            raise ValueError(f"tokens must be word ids of shape (B, L <= {self.max_len}), "
                             f"dtype torch.long, got {what}")
        x = self.embed(ids) + self.position[: ids.shape[1]]  # (B, L, dim)
        return self.norm(x + self.mixer(x)), ids == PAD

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        tokens, padding = self.tokens(ids)
        return self.head(masked_mean(tokens, padding))  # (B, embed_dim)


class DualEncoder(nn.Module):
    """An image encoder and a text encoder, aligned by a contrastive loss (CLIP, ALIGN,
    SigLIP). ``forward(images, tokens)`` returns the two embeddings ``(B, embed_dim)`` each,
    not normalised: the loss normalises them.

    ``logit_scale`` is the log of the inverse temperature, ``log(1 / temperature)``, learned
    unless ``learn_temperature=False``; the similarities are multiplied by
    ``exp(logit_scale)``. Learning the log keeps the scale positive and lets it move by
    factors. With ``bias`` (SigLIP) the model also learns ``logit_bias``.
    ``loss_parameters()`` is what the loss takes after the two embeddings.
    """

    def __init__(self, dim: int = 64, embed_dim: int = 32, temperature: float = CLIP_TEMPERATURE,
                 learn_temperature: bool = True, bias: float | None = None,
                 max_logit_scale: float = MAX_LOGIT_SCALE):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.image_encoder = ImageEncoder(dim, embed_dim)
        self.text_encoder = TextEncoder(dim, embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / temperature)),
                                        requires_grad=learn_temperature)
        self.logit_bias = None if bias is None else nn.Parameter(torch.tensor(float(bias)))
        self.max_logit_scale = max_logit_scale

    def forward(self, images: torch.Tensor, tokens: torch.Tensor):
        return self.image_encoder(images), self.text_encoder(tokens)  # (B, E), (B, E)

    def loss_parameters(self) -> tuple[torch.Tensor, ...]:
        """``(logit_scale,)``, or ``(logit_scale, logit_bias)`` with a bias."""
        if self.logit_bias is None:
            return (self.logit_scale,)
        return self.logit_scale, self.logit_bias

    @property
    def scale(self) -> float:
        """``exp(logit_scale)``: the inverse temperature, 1 / 0.07 = 14.3 at the start."""
        return math.exp(self.logit_scale.item())

    @torch.no_grad()
    def clamp_logit_scale(self) -> None:
        """What CLIP does after every step: keep ``exp(logit_scale)`` within [1, 100]."""
        self.logit_scale.clamp_(0.0, math.log(self.max_logit_scale))


class MatchingModel(nn.Module):
    """Does this caption describe this image? ``(images (B, 64), tokens (B, L))`` -> logits
    ``(B, 2)`` (1: it does).

    The text tokens read the image tokens through one cross-attention block (Part 2's
    ``CrossAttentionBlock`` on Part 1's ``CrossAttentionLayer``: attention, then a
    feed-forward network, each with a residual and a LayerNorm), are mean-pooled over the
    words, and an MLP decides. The encoders are the given ones: a ``DualEncoder``'s (aligned
    first, ALBEF's order) or new ones; freeze them with ``encoder.requires_grad_(False)`` to
    train the fusion block and the head only.
    """

    def __init__(self, image_encoder: ImageEncoder, text_encoder: TextEncoder,
                 num_heads: int = 4):
        super().__init__()
        if image_encoder.dim != text_encoder.dim:
            raise ValueError(f"the encoders' token widths differ: {image_encoder.dim} and "
                             f"{text_encoder.dim}")
        dim = image_encoder.dim
        self.image_encoder, self.text_encoder = image_encoder, text_encoder
        # the image tokens are never padded: Part 1's given (unmasked) attention layer suffices
        self.fusion = CrossAttentionBlock(dim, num_heads, attention=CrossAttentionLayer)
        self.head = mlp(dim, dim, 2)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        image_tokens = self.image_encoder.tokens(images)  # (B, 16, dim)
        text_tokens, padding = self.text_encoder.tokens(tokens)  # (B, L, dim)
        fused = self.fusion(text_tokens, image_tokens)  # (B, L, dim): each word read the image
        return self.head(masked_mean(fused, padding))  # (B, 2)
