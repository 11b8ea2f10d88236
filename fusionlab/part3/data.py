"""Part 3's data: who should speak, and what if a modality is missing.

- ``SwitchDataset``: the synthetic task of the Gated Multimodal Unit (Arevalo et al. 2017,
  section 5.1). A hidden switch ``M`` per sample decides which modality carries the class;
  the other modality is pure noise. ``M`` is exposed, so that a learned gate can be compared
  with it.
- ``AbsenceDataset``: a class defined by a feature being *absent* from one modality.
- ``RedundantDataset``: both modalities carry the label, the text clearly, the image faintly:
  the test bed for a modality that goes missing.
- ``missing_mask``, ``drop_vectors``, ``drop_tokens`` and ``with_missing``: a modality made
  missing at test time, for an exact fraction of the samples: zeroed when it is one vector
  per sample, masked out (every token padding) when it is a token sequence.

As in ``fusionlab.data``, everything is drawn in one vectorised pass from an explicit seed or a
``torch.Generator``, never from the global RNG; datasets store image features ``(n, img_dim)``,
text features ``(n, txt_dim)`` and labels ``(n,)``, and ``tensors()`` gives them in the form
``fusionlab.train.fit`` takes.
"""

from __future__ import annotations

import torch

from ..data import as_tensors, seeded_generator

MODALITIES = ("img", "txt")


def _check_dims(img_dim: int, txt_dim: int, needed: int) -> None:
    if img_dim < needed or txt_dim < needed:
        raise ValueError(
            f"img_dim and txt_dim must be >= {needed}, got {img_dim} and {txt_dim}"
        )


class _PairedFeatures:
    """What the Part 3 datasets share: the three tensors and their ``tensors()`` form."""

    img_features: torch.Tensor
    txt_features: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, idx):
        return self.img_features[idx], self.txt_features[idx], self.labels[idx]

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(img_features, txt_features, labels)``: the model inputs, then the labels."""
        return self.img_features, self.txt_features, self.labels


class SwitchDataset(_PairedFeatures):
    """The GMU switch task: per sample, one modality carries the class and the other is noise.

    With ``e_k`` the k-th unit vector and ``eps ~ N(0, noise^2)`` on every coordinate, sample
    ``i`` has the label ``y = i mod num_classes`` (balanced, classes interleaved) and a switch
    ``M ~ Bernoulli(p_image)``, independent of ``y``:

    - ``M = 1``: image ``signal * e_y + eps``, text ``eps``;
    - ``M = 0``: image ``eps``, text ``signal * e_y + eps``.

    The informative modality is the one with a large coordinate among the first
    ``num_classes``; the other one says nothing about the label. A modality alone can at best
    be right on its own samples and at chance on the others: at most
    ``p + (1 - p) / num_classes`` for the image (``p = p_image``). ``switch`` holds ``M``
    ``(n,)`` (1: the image speaks), so that a model's gate can be correlated with it.
    """

    def __init__(
        self,
        n_samples: int = 2000,
        img_dim: int = 32,
        txt_dim: int = 16,
        num_classes: int = 2,
        signal: float = 1.0,
        noise: float = 0.3,
        p_image: float = 0.5,
        seed: int | None = 0,
        generator: torch.Generator | None = None,
    ):
        _check_dims(img_dim, txt_dim, num_classes)
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if not 0.0 <= p_image <= 1.0:
            raise ValueError(f"p_image must be in [0, 1], got {p_image}")
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        g = seeded_generator(seed, generator)
        self.img_dim, self.txt_dim, self.num_classes = img_dim, txt_dim, num_classes
        self.signal, self.noise, self.p_image = signal, noise, p_image
        self.labels = torch.arange(n_samples) % num_classes
        self.switch = (torch.rand(n_samples, generator=g) < p_image).long()  # (n,)
        self.img_features = torch.randn(n_samples, img_dim, generator=g) * noise
        self.txt_features = torch.randn(n_samples, txt_dim, generator=g) * noise
        rows = torch.arange(n_samples)
        image_speaks = self.switch.bool()
        self.img_features[rows[image_speaks], self.labels[image_speaks]] += signal
        self.txt_features[rows[~image_speaks], self.labels[~image_speaks]] += signal

    def __repr__(self) -> str:
        return (
            f"SwitchDataset(n_samples={len(self)}, img_dim={self.img_dim}, "
            f"txt_dim={self.txt_dim}, num_classes={self.num_classes}, signal={self.signal}, "
            f"noise={self.noise}, p_image={self.p_image})"
        )


class AbsenceDataset(_PairedFeatures):
    """Three classes; the third is defined by something the text does *not* say.

    The image shows one of two objects, A (``e_0``) or B (``e_1``); the text mentions A
    (``e_0``), mentions B (``e_1``) or mentions nothing (no feature, noise only). With
    ``eps ~ N(0, noise^2)`` on every coordinate and the label ``y = i mod 3``:

    - class 0, "A, mentioned": image ``e_0 + eps``, text ``e_0 + eps``;
    - class 1, "B": image ``e_1 + eps``; text ``e_1 + eps`` or ``eps``, each with probability 1/2;
    - class 2, "A, not mentioned" (the absence class): image ``e_0 + eps``, text ``eps``.

    Class 2 needs both modalities: its image is class 0's and its text is that of half of
    class 1. A model must notice that the text *lacks* the feature that matches the image. On
    its own the image is worth at most 2/3 (B, or A with a coin flip between classes 0 and 2),
    the text at most 5/6 (a silent text is class 2 twice as often as class 1); noise takes a
    little off both. ``text_mentions`` ``(n,)`` holds
    whether the text carries a feature.

    Note that a zeroed text (a missing modality, ``drop_vectors``) looks like a silent one:
    a model that reads "no feature" as "not mentioned" calls every A image class 2.
    """

    num_classes = 3

    def __init__(
        self,
        n_samples: int = 3000,
        img_dim: int = 32,
        txt_dim: int = 16,
        noise: float = 0.3,
        seed: int | None = 0,
        generator: torch.Generator | None = None,
    ):
        _check_dims(img_dim, txt_dim, 2)
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        g = seeded_generator(seed, generator)
        self.img_dim, self.txt_dim, self.noise = img_dim, txt_dim, noise
        self.labels = torch.arange(n_samples) % 3
        coin = torch.rand(n_samples, generator=g) < 0.5  # class 1: does the text mention B?
        self.img_features = torch.randn(n_samples, img_dim, generator=g) * noise
        self.txt_features = torch.randn(n_samples, txt_dim, generator=g) * noise
        rows = torch.arange(n_samples)
        obj = (self.labels == 1).long()  # the object the image shows: 0 = A, 1 = B
        self.img_features[rows, obj] += 1.0
        self.text_mentions = (self.labels == 0) | ((self.labels == 1) & coin)  # (n,)
        self.txt_features[rows[self.text_mentions], obj[self.text_mentions]] += 1.0

    def __repr__(self) -> str:
        return (
            f"AbsenceDataset(n_samples={len(self)}, img_dim={self.img_dim}, "
            f"txt_dim={self.txt_dim}, noise={self.noise})"
        )


class RedundantDataset(_PairedFeatures):
    """Both modalities carry the label, one clearly and one faintly: the setting in which a
    fusion model learns to lean on the clear modality and is lost when it goes missing.

    With the label ``y = i mod num_classes`` and independent noise per modality:

    - image ``signal * e_y + N(0, img_noise^2)`` on every coordinate;
    - text ``signal * e_y + N(0, txt_noise^2)`` on every coordinate.

    With the defaults the text alone is nearly perfect and the image alone well above chance
    but far from perfect, so the image is the fallback when the text is missing.
    """

    def __init__(
        self,
        n_samples: int = 2000,
        img_dim: int = 32,
        txt_dim: int = 16,
        num_classes: int = 4,
        signal: float = 1.0,
        img_noise: float = 0.8,
        txt_noise: float = 0.2,
        seed: int | None = 0,
        generator: torch.Generator | None = None,
    ):
        _check_dims(img_dim, txt_dim, num_classes)
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        g = seeded_generator(seed, generator)
        self.img_dim, self.txt_dim, self.num_classes = img_dim, txt_dim, num_classes
        self.signal, self.img_noise, self.txt_noise = signal, img_noise, txt_noise
        self.labels = torch.arange(n_samples) % num_classes
        self.img_features = torch.randn(n_samples, img_dim, generator=g) * img_noise
        self.txt_features = torch.randn(n_samples, txt_dim, generator=g) * txt_noise
        rows = torch.arange(n_samples)
        self.img_features[rows, self.labels] += signal
        self.txt_features[rows, self.labels] += signal

    def __repr__(self) -> str:
        return (
            f"RedundantDataset(n_samples={len(self)}, img_dim={self.img_dim}, "
            f"txt_dim={self.txt_dim}, num_classes={self.num_classes}, signal={self.signal}, "
            f"img_noise={self.img_noise}, txt_noise={self.txt_noise})"
        )


def make_redundant_splits(seed: int = 0, n_train: int = 2000, n_test: int = 1000, **kwargs):
    """Train and test ``RedundantDataset`` from one seed (independent streams)."""
    return (RedundantDataset(n_train, seed=2 * seed, **kwargs),
            RedundantDataset(n_test, seed=2 * seed + 1, **kwargs))


def make_switch_splits(seed: int = 0, n_train: int = 2000, n_test: int = 1000, **kwargs):
    """Train and test ``SwitchDataset`` from one seed (independent streams ``2 * seed`` and
    ``2 * seed + 1``, as ``fusionlab.data.make_splits``)."""
    return (SwitchDataset(n_train, seed=2 * seed, **kwargs),
            SwitchDataset(n_test, seed=2 * seed + 1, **kwargs))


def make_absence_splits(seed: int = 0, n_train: int = 3000, n_test: int = 1200, **kwargs):
    """Train and test ``AbsenceDataset`` from one seed (independent streams)."""
    return (AbsenceDataset(n_train, seed=2 * seed, **kwargs),
            AbsenceDataset(n_test, seed=2 * seed + 1, **kwargs))


# ----------------------------------------------------------------------------- missing modalities


def missing_mask(
    n: int, rate: float, seed: int | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Which of ``n`` samples miss the modality: a bool ``(n,)`` with exactly
    ``round(rate * n)`` entries True, chosen uniformly at random (a random permutation).

    An exact count, rather than one coin per sample, makes an accuracy-against-missing-rate
    curve depend on the rate only, not on how many coins came up. Masks of one seed are nested:
    the samples missing at a lower rate also miss at every higher rate.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    g = seeded_generator(seed, generator)
    order = torch.randperm(n, generator=g)
    missing = torch.zeros(n, dtype=torch.bool)
    missing[order[: round(rate * n)]] = True
    return missing


def _check_missing(missing: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if missing.dtype != torch.bool or missing.shape != (x.shape[0],):
        raise ValueError(
            f"missing must be a bool tensor of shape (B,) = ({x.shape[0]},), "
            f"got {missing.dtype} {tuple(missing.shape)}"
        )
    return missing.to(x.device)


def drop_vectors(x: torch.Tensor, missing: torch.Tensor) -> torch.Tensor:
    """``x`` ``(B, D)`` with the rows of the missing samples replaced by zeros (a new tensor).

    Zeros are what a model sees for "nothing here"; whether it can tell that from a real
    input is one of Part 3's questions (see ``AbsenceDataset``).
    """
    if x.dim() != 2:
        raise ValueError(f"x must have shape (B, D), got {tuple(x.shape)}")
    missing = _check_missing(missing, x)
    return x.masked_fill(missing[:, None], 0.0)


def drop_tokens(
    x: torch.Tensor, padding_mask: torch.Tensor | None, missing: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token sequences ``x`` ``(B, N, D)`` with the missing samples masked out.

    Returns ``(tokens, padding_mask)``: every token of a missing sample becomes padding
    (``True`` in the mask ``(B, N)``) and is zeroed too, so that nothing leaks through a model
    that ignored the mask. Other samples keep their tokens and their mask (``None``: no
    padding). ``fusionlab.models`` pools a fully padded sample to zeros and lets no query read
    from it: ``EarlyFusion``, which pools the raw tokens, then sees exactly a zeroed vector
    (``drop_vectors``); ``LateFusion``, which pools after its encoders, a zero embedding.
    """
    if x.dim() != 3:
        raise ValueError(f"x must have shape (B, N, D), got {tuple(x.shape)}")
    missing = _check_missing(missing, x)
    B, N, _ = x.shape
    if padding_mask is None:
        padding_mask = torch.zeros(B, N, dtype=torch.bool, device=x.device)
    elif padding_mask.shape != (B, N) or padding_mask.dtype != torch.bool:
        raise ValueError(
            f"padding_mask must be a bool tensor of shape (B, N) = ({B}, {N}), "
            f"got {padding_mask.dtype} {tuple(padding_mask.shape)}"
        )
    new_mask = padding_mask | missing[:, None]  # (B, N)
    return x.masked_fill(missing[:, None, None], 0.0), new_mask


def with_missing(data, modality: str, rate: float, seed: int | None = None,
                 generator: torch.Generator | None = None):
    """``(img, txt, labels)`` of ``data`` with ``modality`` (``"img"`` or ``"txt"``) zeroed for
    exactly ``round(rate * n)`` samples (``missing_mask``); returns ``(tensors, missing)``.

    ``data`` is a dataset of pooled features ``(n, D)`` with ``tensors()``, or the tuple
    ``(img, txt, labels)``; ``tensors`` is a tuple that ``fusionlab.train.accuracy`` and
    ``fit`` accept.
    """
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    img, txt, labels = _three_tensors(data)
    missing = missing_mask(labels.shape[0], rate, seed=seed, generator=generator)
    if modality == "img":
        img = drop_vectors(img, missing)
    else:
        txt = drop_vectors(txt, missing)
    return (img, txt, labels), missing


def _three_tensors(data):
    tensors = as_tensors(data)
    if len(tensors) != 3:
        raise ValueError(
            f"expected the tensors (img, txt, labels), got {len(tensors)} tensors"
        )
    return tensors
