"""Part 4's data: real images of handwritten digits, and captions written for them by rules.

**The images are real.** scikit-learn ships a copy of the UCI "optical recognition of
handwritten digits" test set: 1,797 digits written by 13 people, scanned, and reduced to 8x8
images whose pixels count the ink in a 4x4 block of the 32x32 scan (0 to 16). Nothing is
downloaded: ``sklearn.datasets.load_digits`` reads the file that comes with the package.

**The captions are synthetic.** Each image gets one caption, drawn from templates
(``TEMPLATES``) with synonyms: the digit as a word or a numeral, and the width of its strokes
(``"thick"``, ``"bold"``, ``"heavy"`` or ``"thin"``, ``"light"``, ``"faint"``), which is measured
on the image itself: a digit is thick when it holds at least as much ink as the median digit of
its class. So a caption says what the image shows, in words that vary, and never more.

**Zero-shot is a real test.** The zero-shot prompts (``PROMPTS``) name the digit without a
stroke width, in sentences no training caption has (their words all occur in training), and
they are evaluated on images held out of training.

Text is a sequence of word ids ``(n, MAX_LEN)``, padded with ``PAD`` (0); a word outside the
vocabulary is ``UNK`` (1).
"""

from __future__ import annotations

import functools

import torch

NUM_CLASSES = 10
IMAGE_SIDE = 8
IMAGE_DIM = IMAGE_SIDE * IMAGE_SIDE
MAX_INK = 16.0  # a pixel counts the ink of a 4x4 block: 0 to 16

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
NUMERALS = tuple(str(d) for d in range(NUM_CLASSES))
THICK = ("thick", "bold", "heavy")
THIN = ("thin", "light", "faint")

# Training captions: {a} is the stroke width, {d} the digit (a word or a numeral).
TEMPLATES = (
    "a {a} handwritten {d}",
    "the digit {d} in {a} strokes",
    "{d} written by hand in {a} ink",
    "a scan of a {a} {d}",
    "a {a} {d} drawn by hand",
)
# Zero-shot prompts: the digit only, in sentences that no training caption has.
PROMPTS = (
    "a handwritten {d}",
    "the digit {d}",
    "{d} written by hand",
    "a scan of a {d}",
    "a {d} drawn by hand",
)

PAD, UNK = 0, 1
MAX_LEN = 8


def _vocabulary() -> tuple[str, ...]:
    words = {w for t in TEMPLATES + PROMPTS for w in t.split() if not w.startswith("{")}
    words |= set(DIGIT_WORDS) | set(NUMERALS) | set(THICK) | set(THIN)
    return ("<pad>", "<unk>") + tuple(sorted(words))


VOCAB = _vocabulary()
WORD_ID = {word: i for i, word in enumerate(VOCAB)}


def tokenize(texts, max_len: int = MAX_LEN) -> torch.Tensor:
    """Word ids ``(n, max_len)`` of ``texts``: lower-cased, split on spaces, padded with
    ``PAD``; an unknown word is ``UNK``. A text of more than ``max_len`` words is a
    ValueError."""
    if isinstance(texts, str):
        texts = [texts]
    ids = torch.full((len(texts), max_len), PAD, dtype=torch.long)
    for row, text in enumerate(texts):
        words = text.lower().split()
        if len(words) > max_len:
            raise ValueError(f"{text!r} has {len(words)} words, at most {max_len} fit")
        ids[row, :len(words)] = torch.tensor([WORD_ID.get(w, UNK) for w in words],
                                             dtype=torch.long)
    return ids


def decode(ids: torch.Tensor) -> str:
    """The words of one row of word ids, padding dropped."""
    return " ".join(VOCAB[i] for i in ids.tolist() if i != PAD)


@functools.lru_cache(maxsize=1)
def load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 images ``(1797, 64)`` scaled to [0, 1], and their labels ``(1797,)``."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    images = torch.tensor(digits.data, dtype=torch.float32) / MAX_INK
    return images, torch.tensor(digits.target, dtype=torch.long)


def thick_strokes(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``(n,)`` bool: whether each image holds at least as much ink as the median image of its
    class among ``images`` (the caption's "thick" or "thin")."""
    ink = images.sum(dim=1)
    thick = torch.zeros_like(labels, dtype=torch.bool)
    for c in labels.unique():
        rows = labels == c
        thick[rows] = ink[rows] >= ink[rows].median()
    return thick


def write_captions(labels: torch.Tensor, thick: torch.Tensor, generator: torch.Generator):
    """One caption per image: a template, the digit as a word or a numeral, a synonym of its
    stroke width, each drawn with ``generator``."""
    n = len(labels)
    template = torch.randint(len(TEMPLATES), (n,), generator=generator).tolist()
    numeral = torch.rand(n, generator=generator) < 0.5
    synonym = torch.randint(len(THICK), (n,), generator=generator).tolist()
    captions = []
    for i in range(n):
        label = int(labels[i])
        digit = NUMERALS[label] if numeral[i] else DIGIT_WORDS[label]
        width = (THICK if thick[i] else THIN)[synonym[i]]
        captions.append(TEMPLATES[template[i]].format(a=width, d=digit))
    return captions


class DigitCaptions:
    """Image-caption pairs: ``images`` ``(n, 64)`` in [0, 1], ``tokens`` ``(n, MAX_LEN)``, the
    digit ``labels`` ``(n,)`` and ``thick`` ``(n,)`` (the stroke width the caption states),
    ``captions`` as text, and ``index``: each image's row in ``load_digits()``.

    ``tensors()`` is ``(images, tokens, labels)``; the contrastive loop uses the first two only.
    """

    def __init__(self, index: torch.Tensor, generator: torch.Generator):
        images, labels = load_digits()
        self.index = index
        self.images, self.labels = images[index], labels[index]
        self.thick = thick_strokes(images, labels)[index]
        self.captions = write_captions(self.labels, self.thick, generator)
        self.tokens = tokenize(self.captions)

    def __len__(self) -> int:
        return len(self.labels)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.images, self.tokens, self.labels

    def subset(self, rows) -> "DigitCaptions":
        """The pairs at ``rows`` (a copy that shares nothing mutable)."""
        part = object.__new__(DigitCaptions)
        rows = torch.as_tensor(rows, dtype=torch.long)
        part.index, part.images, part.labels = self.index[rows], self.images[rows], \
            self.labels[rows]
        part.thick, part.tokens = self.thick[rows], self.tokens[rows]
        part.captions = [self.captions[i] for i in rows.tolist()]
        return part

    def __repr__(self) -> str:
        return f"DigitCaptions({len(self)} image-caption pairs)"


def make_splits(seed: int = 0, n_test: int = 597) -> tuple[DigitCaptions, DigitCaptions]:
    """(train, test): the 1,797 digits shuffled with ``seed``, the last ``n_test`` held out,
    each image with its caption (drawn with the same seed)."""
    n = len(load_digits()[1])
    if not 0 < n_test < n:
        raise ValueError(f"n_test must be between 1 and {n - 1}, got {n_test}")
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=g)
    return DigitCaptions(order[:-n_test], g), DigitCaptions(order[-n_test:], g)


def prompts(templates=PROMPTS, forms: tuple[str, ...] = ("word", "numeral")) -> list[list[str]]:
    """The zero-shot prompts, ``[class][prompt]``: every template with the digit in each form
    (``"word"``: seven, ``"numeral"``: 7)."""
    names = {"word": DIGIT_WORDS, "numeral": NUMERALS}
    return [[t.format(d=names[f][c]) for t in templates for f in forms]
            for c in range(NUM_CLASSES)]


def prompt_tokens(templates=PROMPTS, forms: tuple[str, ...] = ("word", "numeral")) -> torch.Tensor:
    """Word ids ``(10, P, MAX_LEN)`` of ``prompts(templates, forms)``."""
    texts = prompts(templates, forms)
    return tokenize([t for row in texts for t in row]).reshape(NUM_CLASSES, len(texts[0]), -1)


def matching_pairs(data: DigitCaptions, n: int, seed: int):
    """An image-text matching task on ``data``: ``n`` (image, caption) pairs, half of them
    matching (label 1: the image's own caption), a quarter the caption of another digit, a
    quarter the caption of the same digit with the other stroke width (label 0).

    Returns ``(images (n, 64), tokens (n, MAX_LEN), labels (n,))``.
    """
    g = torch.Generator().manual_seed(seed)
    rows = torch.randint(len(data), (n,), generator=g)
    kind = torch.randint(4, (n,), generator=g)  # 0, 1: match; 2: other digit; 3: other width
    captions = rows.clone()
    labels, thick = data.labels, data.thick
    for i in torch.nonzero(kind >= 2).flatten().tolist():
        r = int(rows[i])
        if kind[i] == 2:
            candidates = torch.nonzero(labels != labels[r]).flatten()
        else:
            candidates = torch.nonzero((labels == labels[r]) & (thick != thick[r])).flatten()
        captions[i] = candidates[torch.randint(len(candidates), (1,), generator=g)]
    return data.images[rows], data.tokens[captions], (kind < 2).long()
