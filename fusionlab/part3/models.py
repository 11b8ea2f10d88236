"""Part 3's fusion units: how much does each modality get to say?

Every unit maps pooled features ``img (B, img_dim)`` and ``txt (B, txt_dim)`` to one fused
vector ``(B, out_dim)``, starting from the same per-modality encodings

    h_v = tanh(W_v x_v),   h_t = tanh(W_t x_t)          # (B, hidden_dim) each

and differing only in how it combines them:

- ``ConcatFusion``: ``[h_v; h_t]``, nobody decides, the next layer sees both;
- ``SumFusion``: ``h_v + h_t``, both always speak with equal weight;
- ``ScalarGateFusion``: ``a * h_v + (1 - a) * h_t`` with one learned ``a = sigmoid(s)``, the
  same for every sample;
- ``FiLMFusion``: ``gamma(x_t) * h_v + beta(x_t)``, the text modulates the image feature by
  feature (Perez et al. 2018), with gamma-only and beta-only variants.

``FusionClassifier`` puts one linear layer on any unit, so that the fusion step alone decides
what the classifier can represent. ``InsertedFusion`` inserts a cross-attention block into a
frozen, pretrained text-only classifier (the Flamingo recipe). The per-sample gates of Part 3
(the GMU, the tanh-gated block) and modality dropout are the notebook's exercises and are not
in this package.

Wrong shapes raise a ``ValueError`` that names the expected shape.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..models import UnimodalClassifier, as_tokens, check_padding_mask, masked_mean

FILM_MODES = ("film", "gamma", "beta")


def check_features(x: torch.Tensor, dim: int, name: str) -> torch.Tensor:
    """Raise a ``ValueError`` unless ``x`` is a pooled feature tensor ``(B, dim)``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2 or x.shape[-1] != dim:
        raise ValueError(f"{name} must have shape (B, {dim}), got {tuple(x.shape)}")
    return x


def check_pair(img: torch.Tensor, txt: torch.Tensor, img_dim: int, txt_dim: int) -> None:
    """``img`` ``(B, img_dim)`` and ``txt`` ``(B, txt_dim)`` with the same ``B``."""
    check_features(img, img_dim, "img_feat")
    check_features(txt, txt_dim, "txt_feat")
    if img.shape[0] != txt.shape[0]:
        raise ValueError(
            f"img_feat and txt_feat must share the batch size B, got {img.shape[0]} and "
            f"{txt.shape[0]}"
        )


class TanhEncoders(nn.Module):
    """The shared first step: ``h_v = tanh(W_v x_v)`` and ``h_t = tanh(W_t x_t)``."""

    def __init__(self, img_dim=32, txt_dim=16, hidden_dim=32):
        super().__init__()
        self.img_dim, self.txt_dim, self.hidden_dim = img_dim, txt_dim, hidden_dim
        self.img_encoder = nn.Linear(img_dim, hidden_dim)  # W_v
        self.txt_encoder = nn.Linear(txt_dim, hidden_dim)  # W_t

    def encode(self, img_feat, txt_feat) -> tuple[torch.Tensor, torch.Tensor]:
        check_pair(img_feat, txt_feat, self.img_dim, self.txt_dim)
        h_v = torch.tanh(self.img_encoder(img_feat))  # (B, H)
        h_t = torch.tanh(self.txt_encoder(txt_feat))  # (B, H)
        return h_v, h_t


class ConcatFusion(TanhEncoders):
    """``[h_v; h_t]`` ``(B, 2H)``: both encodings side by side."""

    @property
    def out_dim(self) -> int:
        return 2 * self.hidden_dim

    def forward(self, img_feat, txt_feat):
        h_v, h_t = self.encode(img_feat, txt_feat)
        return torch.cat([h_v, h_t], dim=-1)  # (B, 2H)


class SumFusion(TanhEncoders):
    """``h_v + h_t`` ``(B, H)``: both modalities always count the same."""

    @property
    def out_dim(self) -> int:
        return self.hidden_dim

    def forward(self, img_feat, txt_feat):
        h_v, h_t = self.encode(img_feat, txt_feat)
        return h_v + h_t  # (B, H)


class ScalarGateFusion(TanhEncoders):
    """``a * h_v + (1 - a) * h_t`` with ``a = sigmoid(gate_logit)``, one number for the whole
    dataset: the gate can prefer a modality, but not differently for different samples.

    ``gate_logit`` starts at 0 (``a = 0.5``).
    """

    def __init__(self, img_dim=32, txt_dim=16, hidden_dim=32):
        super().__init__(img_dim, txt_dim, hidden_dim)
        self.gate_logit = nn.Parameter(torch.zeros(()))

    @property
    def out_dim(self) -> int:
        return self.hidden_dim

    @property
    def image_weight(self) -> float:
        """The learned ``a``: the image's share, the same for every sample."""
        return torch.sigmoid(self.gate_logit).item()

    def forward(self, img_feat, txt_feat):
        h_v, h_t = self.encode(img_feat, txt_feat)
        a = torch.sigmoid(self.gate_logit)  # ()
        return a * h_v + (1 - a) * h_t  # (B, H)


class FiLMFusion(TanhEncoders):
    """Feature-wise linear modulation of the image by the text (Perez et al. 2018)::

        gamma = 1 + W_gamma x_t,  beta = W_beta x_t          # (B, H) each
        mode "film":  gamma * h_v + beta
        mode "gamma": gamma * h_v          (the text can only scale image features)
        mode "beta":  h_v + beta           (the text can only shift them)

    ``gamma`` is written as ``1 + ...`` so that a small ``W_gamma`` leaves ``h_v`` unscaled.
    Only the image goes through ``tanh``: the text acts through ``gamma`` and ``beta`` alone, so
    ``txt_encoder`` is unused and absent; a missing modulating layer is ``None``.
    """

    def __init__(self, img_dim=32, txt_dim=16, hidden_dim=32, mode="film"):
        if mode not in FILM_MODES:
            raise ValueError(f"mode must be one of {FILM_MODES}, got {mode!r}")
        super().__init__(img_dim, txt_dim, hidden_dim)
        del self.txt_encoder
        self.mode = mode
        self.gamma = nn.Linear(txt_dim, hidden_dim) if mode in ("film", "gamma") else None
        self.beta = nn.Linear(txt_dim, hidden_dim) if mode in ("film", "beta") else None

    @property
    def out_dim(self) -> int:
        return self.hidden_dim

    def forward(self, img_feat, txt_feat):
        check_pair(img_feat, txt_feat, self.img_dim, self.txt_dim)
        h = torch.tanh(self.img_encoder(img_feat))  # (B, H)
        if self.gamma is not None:
            h = (1 + self.gamma(txt_feat)) * h
        if self.beta is not None:
            h = h + self.beta(txt_feat)
        return h  # (B, H)


class FusionClassifier(nn.Module):
    """A fusion unit followed by one linear layer: ``logits = W_c fusion(img, txt)``.

    ``fusion`` is any module with an ``out_dim`` that maps ``(img, txt)`` to ``(B, out_dim)``.
    A linear classifier adds no interaction of its own, so the models differ only in their
    fusion step.
    """

    def __init__(self, fusion: nn.Module, num_classes: int = 2):
        super().__init__()
        if not isinstance(getattr(fusion, "out_dim", None), int):
            raise ValueError("fusion must have an integer attribute out_dim (its output size)")
        self.fusion = fusion
        self.classifier = nn.Linear(fusion.out_dim, num_classes)

    def forward(self, img_feat, txt_feat):
        return self.classifier(self.fusion(img_feat, txt_feat))  # (B, num_classes)


class InsertedFusion(nn.Module):
    """A pretrained text-only classifier, frozen, with a cross-attention ``block`` inserted
    between its encoder and its head (the Flamingo recipe at toy scale)::

        y = encoder(txt)                        # (B, N_txt, H), frozen
        y = block(y, img_proj(img))             # the only place the image enters
        logits = head(mean over tokens of y)    # frozen

    ``block(y, x)`` returns a tensor shaped like ``y`` (every image token is read: the image
    is never padded here). If it returns ``y`` unchanged, the model is exactly the pretrained
    one. Only ``img_proj`` and ``block`` train;
    the pretrained parameters are frozen (``requires_grad=False``).
    """

    def __init__(self, pretrained: UnimodalClassifier, block: nn.Module, img_dim: int = 32):
        super().__init__()
        if not isinstance(pretrained, UnimodalClassifier) or pretrained.modality != "txt":
            raise ValueError("pretrained must be a text-only fusionlab UnimodalClassifier")
        self.pretrained = pretrained
        for p in self.pretrained.parameters():
            p.requires_grad_(False)
        self.img_dim = img_dim
        hidden_dim = pretrained.encoder[-1].out_features
        self.img_proj = nn.Linear(img_dim, hidden_dim)
        self.block = block

    def forward(self, img_feat, txt_feat, txt_padding_mask=None):
        img = as_tokens(img_feat, self.img_dim, "img_feat")
        txt = as_tokens(txt_feat, self.pretrained.in_dim, "txt_feat")
        txt_mask = check_padding_mask(txt_padding_mask, txt, "txt_padding_mask")
        y = self.pretrained.encoder(txt)  # (B, N_txt, H)
        y = self.block(y, self.img_proj(img))  # (B, N_txt, H)
        return self.pretrained.head(masked_mean(y, txt_mask))  # (B, num_classes)


def gate_switch_correlation(gate: torch.Tensor, switch: torch.Tensor) -> float:
    """Pearson correlation between a per-sample gate and the switch ``M`` of a
    ``SwitchDataset``.

    ``gate`` is ``(n,)`` or ``(n, H)`` (a gate per feature, averaged over the features first);
    ``switch`` is ``(n,)``, 1 where the image carries the class. +1: the gate opens for the
    image exactly when the image speaks. A constant gate has no correlation: the result is then
    ``nan``.
    """
    gate = torch.as_tensor(gate).detach().double().cpu()
    if gate.dim() == 2:
        gate = gate.mean(dim=1)
    switch = torch.as_tensor(switch).double().cpu()
    if gate.dim() != 1 or gate.shape != switch.shape:
        raise ValueError(
            f"gate must have shape (n,) or (n, H) and switch (n,) with the same n, got "
            f"{tuple(gate.shape)} and {tuple(switch.shape)}"
        )
    g, s = gate - gate.mean(), switch - switch.mean()
    denominator = (g.square().sum() * s.square().sum()).sqrt()
    if denominator == 0:
        return float("nan")
    return ((g * s).sum() / denominator).item()
