"""Synthetic two-modality datasets and a fast batch iterator.

Part 2's scenes and questions (Sort-of-CLEVR) live in ``fusionlab.part2.scenes``, Part 3's tasks
in ``fusionlab.part3.data``, Part 4's digits in ``fusionlab.part4.data``.

Every dataset is generated in one vectorised pass from an explicit seed (or a
``torch.Generator``), never from the global RNG, so the same seed gives the same tensors on
every machine and in every notebook.

Shapes: image features are ``(n, img_dim)``, text features ``(n, txt_dim)``, labels ``(n,)``.
A pooled feature vector is the one-token case of the ``(B, N, D)`` token sequences that the
models accept.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Dataset

INTERACTIONS = ("original", "xor")


class MultimodalDataset(Dataset):
    """Paired (image features, text features, label) samples.

    ``interaction="original"`` reproduces Part 1's seed notebook exactly in distribution
    (three classes of ``n_samples // 3``; the remainder goes to class 2). With ``e_k`` the
    k-th unit vector and ``eps ~ N(0, noise^2)`` on every coordinate:

    - class 0: image ``e_0 + eps``, text ``e_1 + eps``;
    - class 1: image ``e_1 + eps``, text ``e_0 + eps``;
    - class 2: image ``eps`` and text ``eps``, except that ``image[0]`` and ``text[0]`` are each
      replaced by ``|N(0, 1)| + 0.5``. Class 2 is "both first coordinates are large": an AND of
      the two modalities, which a sum of per-modality evidence already separates.

    ``interaction="xor"`` is a pure interaction task with two classes (``n_samples // 2`` of
    class 0, the rest class 1). Each sample draws a fair bit ``a`` for the image and sets the
    text bit ``b = a XOR label``; each bit is written as ``+-1`` into coordinate 0 of its
    modality, and every coordinate gets ``eps``:

    - class 0: ``a == b`` (image[0] and text[0] have the same sign);
    - class 1: ``a != b`` (opposite signs).

    Each bit alone is a fair coin whatever the label, so neither modality carries any
    information about it: only a model that combines features across modalities beats chance.

    Samples are stored grouped by class, as in the original; shuffle when batching.
    """

    def __init__(
        self,
        n_samples: int = 3000,
        img_dim: int = 32,
        txt_dim: int = 16,
        noise: float = 0.3,
        interaction: str = "original",
        seed: int | None = 0,
        generator: torch.Generator | None = None,
    ):
        if interaction not in INTERACTIONS:
            raise ValueError(f"interaction must be one of {INTERACTIONS}, got {interaction!r}")
        if img_dim < 2 or txt_dim < 2:
            raise ValueError(f"img_dim and txt_dim must be >= 2, got {img_dim} and {txt_dim}")
        if n_samples < 3:
            raise ValueError(f"n_samples must be >= 3, got {n_samples}")
        generator = seeded_generator(seed, generator)
        self.n_samples = n_samples
        self.img_dim = img_dim
        self.txt_dim = txt_dim
        self.noise = noise
        self.interaction = interaction
        draw = draw_original if interaction == "original" else draw_xor
        self.img_features, self.txt_features, self.labels = draw(
            n_samples, img_dim, txt_dim, noise, generator
        )
        self.num_classes = 3 if interaction == "original" else 2

    def __len__(self) -> int:
        return self.n_samples

    def __getitem__(self, idx):
        return self.img_features[idx], self.txt_features[idx], self.labels[idx]

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(img_features, txt_features, labels)``: the model inputs, then the labels."""
        return self.img_features, self.txt_features, self.labels

    def __repr__(self) -> str:
        return (
            f"MultimodalDataset(n_samples={self.n_samples}, img_dim={self.img_dim}, "
            f"txt_dim={self.txt_dim}, noise={self.noise}, interaction={self.interaction!r})"
        )


def seeded_generator(seed: int | None, generator: torch.Generator | None) -> torch.Generator:
    """``generator`` when given, else a new one seeded with ``seed``: every dataset of the course
    draws from one of these, never from the global RNG (a ValueError when both are None)."""
    if generator is not None:
        return generator
    if seed is None:
        raise ValueError("pass a seed or a torch.Generator: the global RNG is never used")
    return torch.Generator().manual_seed(seed)


def draw_original(n, img_dim, txt_dim, noise, g):
    """``n`` samples of the original task, grouped by class: ``(img (n, img_dim),
    txt (n, txt_dim), labels (n,))``, drawn from the ``torch.Generator`` ``g``."""
    n_per_class = n // 3
    labels = torch.full((n,), 2, dtype=torch.long)
    labels[:n_per_class] = 0
    labels[n_per_class : 2 * n_per_class] = 1
    img = torch.randn(n, img_dim, generator=g) * noise  # (n, img_dim): noise everywhere
    txt = torch.randn(n, txt_dim, generator=g) * noise  # (n, txt_dim)
    img[labels == 0, 0] += 1.0  # class 0: image e_0, text e_1
    txt[labels == 0, 1] += 1.0
    img[labels == 1, 1] += 1.0  # class 1: image e_1, text e_0
    txt[labels == 1, 0] += 1.0
    is_2 = labels == 2  # class 2: image[0] and text[0] both large, |N(0, 1)| + 0.5
    n_2 = int(is_2.sum())
    img[is_2, 0] = torch.randn(n_2, generator=g).abs() + 0.5
    txt[is_2, 0] = torch.randn(n_2, generator=g).abs() + 0.5
    return img, txt, labels


def draw_xor(n, img_dim, txt_dim, noise, g):
    """``n`` samples of the XOR task, class 0 then class 1: ``(img (n, img_dim),
    txt (n, txt_dim), labels (n,))``, drawn from the ``torch.Generator`` ``g``."""
    labels = torch.ones(n, dtype=torch.long)
    labels[: n // 2] = 0
    img_bit = torch.randint(0, 2, (n,), generator=g)  # a fair coin per sample
    txt_bit = img_bit ^ labels  # the two coins differ exactly for class 1
    img = torch.randn(n, img_dim, generator=g) * noise
    txt = torch.randn(n, txt_dim, generator=g) * noise
    img[:, 0] += 2.0 * img_bit - 1.0  # each coin written as +1 or -1 into coordinate 0
    txt[:, 0] += 2.0 * txt_bit - 1.0
    return img, txt, labels


def make_splits(
    seed: int = 0, n_train: int = 3000, n_test: int = 600, **kwargs
) -> tuple[MultimodalDataset, MultimodalDataset]:
    """Train and test sets of the same distribution from one seed (the test set uses an
    independent stream, so the two never share samples)."""
    train = MultimodalDataset(n_samples=n_train, seed=2 * seed, **kwargs)
    test = MultimodalDataset(n_samples=n_test, seed=2 * seed + 1, **kwargs)
    return train, test


def as_tensors(data) -> tuple[torch.Tensor, ...]:
    """Turn a dataset with ``.tensors()`` or a tuple of tensors into a tuple of tensors.

    Convention used throughout ``fusionlab``: the last tensor holds the labels, the ones before
    it are the model's positional inputs.
    """
    if hasattr(data, "tensors"):
        tensors = data.tensors()
    elif isinstance(data, Sequence) and all(isinstance(t, torch.Tensor) for t in data):
        tensors = tuple(data)
    else:
        raise TypeError(
            "expected a dataset with .tensors() or a tuple of tensors (inputs..., labels), "
            f"got {type(data).__name__}"
        )
    if len(tensors) < 2:
        raise ValueError("expected at least one input tensor followed by the labels")
    n = tensors[0].shape[0]
    if any(t.shape[0] != n for t in tensors):
        sizes = [tuple(t.shape) for t in tensors]
        raise ValueError(f"all tensors must share their first dimension, got shapes {sizes}")
    return tuple(tensors)


def per_seed(data, count: int, name: str = "data") -> list:
    """``data`` as a list of ``count`` datasets, one per seed: a single dataset (or tuple of
    tensors) is shared by every seed; a list or tuple of datasets must have one per seed."""
    is_list = isinstance(data, (list, tuple)) and not any(isinstance(d, torch.Tensor) for d in data)
    if not is_list:
        return [data] * count
    if len(data) != count:
        raise ValueError(f"{name}: got {len(data)} datasets for {count} seeds; pass one per seed")
    return list(data)


class BatchIterator:
    """Mini-batches by slicing whole tensors: no per-sample ``__getitem__``, no collate.

    The tensors move to ``device`` once; every pass over the iterator is one epoch, shuffled
    with its own generator when ``shuffle`` is set, so runs repeat exactly for a given seed.

    >>> batches = BatchIterator(train, batch_size=64, shuffle=True, seed=0)
    >>> for img, txt, labels in batches: ...
    """

    def __init__(
        self,
        data,
        batch_size: int = 64,
        shuffle: bool = False,
        seed: int = 0,
        device: str | torch.device | None = None,
        drop_last: bool = False,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.tensors = tuple(t.to(device) if device is not None else t for t in as_tensors(data))
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.generator = torch.Generator().manual_seed(seed)
        self.n = self.tensors[0].shape[0]

    def __len__(self) -> int:
        if self.drop_last:
            return self.n // self.batch_size
        return math.ceil(self.n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        if self.shuffle:
            # the permutation is drawn on the CPU so that every device gives the same order
            order = torch.randperm(self.n, generator=self.generator).to(self.tensors[0].device)
            tensors = tuple(t[order] for t in self.tensors)
        else:
            tensors = self.tensors
        for i in range(len(self)):
            start = i * self.batch_size
            yield tuple(t[start : start + self.batch_size] for t in tensors)
