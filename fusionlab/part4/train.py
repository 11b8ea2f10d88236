"""The contrastive training loop: any loss over a batch of image-caption pairs.

    history = fit_contrastive(model, train, your_loss, ContrastiveConfig(epochs=20))

Like ``fusionlab.train.fit`` it knows nothing of the model beyond two calls: the model maps a
batch ``(images, tokens)`` to two embeddings, and ``model.loss_parameters()`` gives the
loss's learnable numbers (the logit scale, and SigLIP's bias). The loss is an argument:
``loss_fn(image_emb, text_emb, *model.loss_parameters())``. Row ``i`` of the two embeddings
is one pair, so the pairs sit on the diagonal of the batch's similarity matrix. There are no
labels: the pairing is the supervision.

Each batch is a fresh shuffle of the pairs, and a last incomplete batch is dropped (every
step sees ``batch_size`` pairs, so ``batch_size - 1`` negatives per pair). With
``group_size`` the loss is instead the mean of the loss over groups of ``group_size`` pairs of
the batch: each pair then has ``group_size - 1`` negatives, while the batches, the steps and
the pairs seen stay the same (the number of negatives is the only thing that changes). After
every step the logit scale is clamped at ``log(100)`` as CLIP does (``clamp=False`` switches
that off).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

from ..data import BatchIterator
from ..train import adam, seeded_rng
from ..utils import cpu_threads, epoch_bar, training_threads


@dataclass
class ContrastiveConfig:
    """Plain settings for ``fit_contrastive``."""

    epochs: int = 20
    lr: float = 1e-3
    batch_size: int = 64
    group_size: int | None = None  # the loss sees groups of this many pairs (None: the batch)
    seed: int = 0  # the shuffling order
    clamp: bool = True  # clamp exp(logit_scale) at the model's max_logit_scale (100) as CLIP
    progress: bool = True  # a tqdm bar over the epochs
    num_threads: int | None = None  # CPU threads; None: fusionlab.utils.training_threads
    desc: str = "contrastive"  # the progress bar's label


@dataclass
class ContrastiveHistory:
    """Per epoch: the mean training loss, and ``exp(logit_scale)`` at its end."""

    loss: list[float] = field(default_factory=list)
    scale: list[float] = field(default_factory=list)
    bias: list[float] = field(default_factory=list)  # SigLIP's logit_bias, if the model has one


def fit_contrastive(model, data, loss_fn, config: ContrastiveConfig | None = None,
                    **overrides) -> ContrastiveHistory:
    """Train ``model`` with Adam on the image-caption pairs of ``data`` (a ``DigitCaptions``,
    or a tuple ``(images, tokens)``) and ``loss_fn``; return its history. ``overrides``
    replace single fields of ``config``."""
    config = replace(config or ContrastiveConfig(), **overrides)
    images, tokens = (data.images, data.tokens) if hasattr(data, "tokens") else data[:2]
    if not 2 <= config.batch_size <= len(images):
        raise ValueError(f"batch_size must be between 2 and the {len(images)} pairs, got "
                         f"{config.batch_size}: a batch needs a pair and a negative")
    group = config.group_size or config.batch_size
    if not 2 <= group <= config.batch_size or config.batch_size % group:
        raise ValueError(f"group_size must be >= 2 and divide batch_size {config.batch_size}, "
                         f"got {config.group_size}")
    device = next(model.parameters()).device
    batches = BatchIterator((images, tokens), config.batch_size, shuffle=True, seed=config.seed,
                            device=device, drop_last=True)
    optimizer = adam([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    history = ContrastiveHistory()
    with (cpu_threads(training_threads(device, config.num_threads)), seeded_rng(config.seed),
          epoch_bar(config.epochs, config.desc, config.progress) as bar):
        for _ in bar:
            model.train()
            total = torch.zeros((), device=device)
            for batch_images, batch_tokens in batches:
                image_emb, text_emb = model(batch_images, batch_tokens)  # (B, E) each
                loss = torch.stack([
                    loss_fn(i, t, *model.loss_parameters())
                    for i, t in zip(image_emb.split(group), text_emb.split(group))]).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if config.clamp:
                    model.clamp_logit_scale()
                total += loss.detach()
            history.loss.append(total.item() / len(batches))
            history.scale.append(model.scale)
            if getattr(model, "logit_bias", None) is not None:
                history.bias.append(model.logit_bias.item())
            bar.set_postfix(loss=f"{history.loss[-1]:.3f}", scale=f"{history.scale[-1]:.1f}")
    model.eval()
    return history


@torch.no_grad()
def embed(model, images: torch.Tensor | None = None, tokens: torch.Tensor | None = None,
          normalize: bool = False):
    """The model's image embeddings of ``images`` and text embeddings of ``tokens`` (any
    leading shape ``(..., L)``), in eval mode; unit length with ``normalize``. Returns one
    tensor when one input is given, else the pair."""
    was_training = model.training
    model.eval()
    out = []
    if images is not None:
        out.append(model.image_encoder(images))
    if tokens is not None:
        flat = tokens.reshape(-1, tokens.shape[-1])
        out.append(model.text_encoder(flat).reshape(*tokens.shape[:-1], -1))
    model.train(was_training)
    if normalize:
        out = [F.normalize(e, dim=-1) for e in out]
    return out[0] if len(out) == 1 else tuple(out)
