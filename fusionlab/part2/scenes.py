"""Sort-of-CLEVR from state descriptions: scenes of objects (one modality) and questions of
words (the other), for Part 2 "Attention that selects".

After Santoro et al. (2017): each scene is a set of coloured squares and circles on a canvas,
each question asks about one object, named by its colour. Non-relational questions need that
object only; relational ones need it *and* the others. The scenes are given as state
descriptions (one token per object), not as pixels.

Every dataset is generated in one vectorised pass from an explicit seed (or a
``torch.Generator``), never from the global RNG.

**Scenes.** A scene holds ``num_objects`` objects, drawn uniformly from ``min_objects`` to
``max_objects``, in ``num_slots`` slots (default ``max_objects``); the slots after the last
object are padding. Each object has its own colour, drawn without replacement from ``COLORS``
(the paper's six, then purple and cyan so that a scene can hold up to eight), a shape
(``"square"`` or ``"circle"``, a fair coin) and a position. The canvas is the unit square
(the paper's 75 x 75 pixels divided by 75); ``x`` grows to the right and ``y`` downwards, as
image rows do, so the top of the canvas is ``y = 0``. Positions are drawn without overlap: the
canvas is cut into a 4 x 4 grid of cells, each object takes its own cell, drawn uniformly, and
sits uniformly inside the middle 70% of it. The objects take the first ``num_objects``
slots and the padding the rest; only their attributes (colour, shape, position) are random.

**Object tokens** ``objects[i, s]`` have ``OBJECT_DIM = 12`` features: the colour one-hot (8),
then ``x`` and ``y``, then the shape one-hot (square, circle). A padded slot is all zeros;
``object_mask[i, s]`` is ``True`` there (``True`` marks padding, as in PyTorch's
``key_padding_mask``).

**Questions** are sequences of word ids over ``WORDS`` (id 0 is the padding word ``"<pad>"``),
padded to ``QUESTION_LENGTH``; ``question_mask`` is ``True`` on the padding. ``X`` is the
subject's colour, drawn uniformly among the objects of the scene. The six question types,
equally many of each (sample ``i`` has type ``i % 6``):

==========  ==================================  ==============================================
type        words                               answer
==========  ==================================  ==============================================
shape       what shape is X                     X's shape
left        is X on the left                    ``yes`` when X's ``x < 0.5``, else ``no``
top         is X on the top                     ``yes`` when X's ``y < 0.5``, else ``no``
closest     what shape is closest to X          the shape of the object nearest to X
furthest    what shape is furthest from X       the shape of the object farthest from X
count       how many have the shape of X        the number of objects with X's shape, X included
==========  ==================================  ==============================================

Distances are Euclidean, between centres, on the unit canvas; the closest and furthest
objects are chosen among the objects other than X (a scene has at least two objects). A tie
goes to the object whose colour comes first in ``COLORS`` (ties have probability zero with
continuous positions, but the rule makes the answer a function of the scene). Answers are
ids into ``ANSWERS``: the two shapes, ``yes``/``no``, and the counts ``"1"`` to ``"8"``.

The first three types are non-relational, the last three relational.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from ..data import seeded_generator

COLORS = ("red", "green", "blue", "orange", "gray", "yellow", "purple", "cyan")
SHAPES = ("square", "circle")
MAX_OBJECTS = len(COLORS)
OBJECT_DIM = len(COLORS) + 2 + len(SHAPES)  # colour one-hot, x, y, shape one-hot
X_FEATURE, Y_FEATURE = len(COLORS), len(COLORS) + 1  # where x and y sit in an object token
GRID = 4  # the canvas is cut into GRID x GRID cells, one object per cell at most
CELL_MARGIN = 0.15  # an object sits in the middle 1 - 2 * CELL_MARGIN of its cell

PAD = "<pad>"
QUESTION_TYPES = ("shape", "left", "top", "closest", "furthest", "count")
NON_RELATIONAL = ("shape", "left", "top")
RELATIONAL = ("closest", "furthest", "count")
# "{}" marks where the subject's colour goes
TEMPLATES = {
    "shape": ("what", "shape", "is", "{}"),
    "left": ("is", "{}", "on", "the", "left"),
    "top": ("is", "{}", "on", "the", "top"),
    "closest": ("what", "shape", "is", "closest", "to", "{}"),
    "furthest": ("what", "shape", "is", "furthest", "from", "{}"),
    "count": ("how", "many", "have", "the", "shape", "of", "{}"),
}
_TEMPLATE_WORDS = sorted({w for t in TEMPLATES.values() for w in t if w != "{}"})
WORDS = (PAD, *_TEMPLATE_WORDS, *COLORS)
WORD_ID = {word: i for i, word in enumerate(WORDS)}
VOCAB_SIZE = len(WORDS)
QUESTION_LENGTH = max(len(t) for t in TEMPLATES.values())

ANSWERS = (*SHAPES, "yes", "no", *(str(k) for k in range(1, MAX_OBJECTS + 1)))
ANSWER_ID = {answer: i for i, answer in enumerate(ANSWERS)}
NUM_ANSWERS = len(ANSWERS)


def _template_tensor() -> tuple[torch.Tensor, torch.Tensor]:
    """Word ids of the six templates ``(6, QUESTION_LENGTH)`` (padded) and the position of the
    colour word in each ``(6,)``."""
    ids = torch.zeros(len(QUESTION_TYPES), QUESTION_LENGTH, dtype=torch.long)
    colour_at = torch.zeros(len(QUESTION_TYPES), dtype=torch.long)
    for t, name in enumerate(QUESTION_TYPES):
        for position, word in enumerate(TEMPLATES[name]):
            if word == "{}":
                colour_at[t] = position
            else:
                ids[t, position] = WORD_ID[word]
    return ids, colour_at


class SortOfClevr(Dataset):
    """State-description Sort-of-CLEVR: one scene, one question and its answer per sample.

    The definitions (canvas, colours, positions, question types, tie-breaking) are in the
    module docstring of ``fusionlab.part2.scenes``. Tensors, for ``n_samples`` samples and
    ``S = num_slots``:

    - ``objects`` ``(n, S, OBJECT_DIM)`` float, ``object_mask`` ``(n, S)`` bool (True = padding);
    - ``question`` ``(n, QUESTION_LENGTH)`` word ids, ``question_mask`` ``(n, QUESTION_LENGTH)``;
    - ``answer`` ``(n,)`` ids into ``ANSWERS``;
    - for analysis: ``question_type`` ``(n,)`` ids into ``QUESTION_TYPES``, ``subject`` ``(n,)``
      the slot of the object the question names, ``num_objects`` ``(n,)``.

    ``tensors()`` gives ``(objects, question, object_mask, question_mask, answer)``: the
    models' positional inputs, then the labels, as ``fusionlab.train.fit`` expects.
    """

    def __init__(
        self,
        n_samples: int = 6000,
        min_objects: int = 3,
        max_objects: int = 6,
        num_slots: int | None = None,
        seed: int | None = 0,
        generator: torch.Generator | None = None,
    ):
        num_slots = max_objects if num_slots is None else num_slots
        if not 2 <= min_objects <= max_objects:
            raise ValueError(
                f"need 2 <= min_objects <= max_objects, got {min_objects} and {max_objects}"
            )
        if not max_objects <= num_slots <= MAX_OBJECTS:
            raise ValueError(
                f"need max_objects <= num_slots <= {MAX_OBJECTS} (one colour per object), "
                f"got max_objects={max_objects}, num_slots={num_slots}"
            )
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        generator = seeded_generator(seed, generator)
        self.n_samples = n_samples
        self.min_objects, self.max_objects, self.num_slots = min_objects, max_objects, num_slots
        self.num_classes = NUM_ANSWERS
        (self.objects, self.object_mask, self.question, self.question_mask, self.answer,
         self.question_type, self.subject, self.num_objects) = _generate(
            n_samples, min_objects, max_objects, num_slots, generator
        )

    def __len__(self) -> int:
        return self.n_samples

    def __getitem__(self, idx):
        return tuple(t[idx] for t in self.tensors())

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """``(objects, question, object_mask, question_mask, answer)``."""
        return self.objects, self.question, self.object_mask, self.question_mask, self.answer

    def subset(self, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``tensors()`` restricted to ``rows`` (a bool mask or indices), e.g. one question type."""
        return tuple(t[rows] for t in self.tensors())

    def describe(self, idx: int) -> str:
        """The sample in words: its objects, its question and its answer."""
        objects = []
        for s in range(self.num_slots):
            if self.object_mask[idx, s]:
                continue
            token = self.objects[idx, s]
            colour = COLORS[int(token[: len(COLORS)].argmax())]
            shape = SHAPES[int(token[Y_FEATURE + 1 :].argmax())]
            x, y = token[X_FEATURE].item(), token[Y_FEATURE].item()
            objects.append(f"{colour} {shape} at ({x:.2f}, {y:.2f})")
        return (
            "; ".join(objects)
            + f"\nQ: {decode_question(self.question[idx])}?  A: {ANSWERS[self.answer[idx]]}"
        )

    def __repr__(self) -> str:
        return (
            f"SortOfClevr(n_samples={self.n_samples}, min_objects={self.min_objects}, "
            f"max_objects={self.max_objects}, num_slots={self.num_slots})"
        )


def _generate(n, min_objects, max_objects, num_slots, g):
    S = num_slots
    num_objects = torch.randint(min_objects, max_objects + 1, (n,), generator=g)
    valid = torch.arange(S) < num_objects[:, None]  # (n, S)
    # colours and grid cells without replacement: the first S of a random permutation each
    colour = torch.rand(n, len(COLORS), generator=g).argsort(dim=1)[:, :S]  # (n, S)
    cell = torch.rand(n, GRID * GRID, generator=g).argsort(dim=1)[:, :S]  # (n, S)
    inside = CELL_MARGIN + (1 - 2 * CELL_MARGIN) * torch.rand(n, S, 2, generator=g)
    x = ((cell % GRID) + inside[..., 0]) / GRID
    y = ((cell // GRID) + inside[..., 1]) / GRID
    shape = torch.randint(0, len(SHAPES), (n, S), generator=g)

    objects = torch.cat(
        [
            torch.nn.functional.one_hot(colour, len(COLORS)).float(),
            x[..., None],
            y[..., None],
            torch.nn.functional.one_hot(shape, len(SHAPES)).float(),
        ],
        dim=-1,
    ) * valid[..., None]  # (n, S, OBJECT_DIM), padding all zeros

    question_type = torch.arange(n) % len(QUESTION_TYPES)
    subject = (torch.rand(n, generator=g) * num_objects).long().clamp(max=num_objects - 1)
    rows = torch.arange(n)
    subject_colour = colour[rows, subject]

    templates, colour_at = _template_tensor()
    question = templates[question_type].clone()  # (n, L)
    question[rows, colour_at[question_type]] = WORD_ID[COLORS[0]] + subject_colour
    question_mask = question == WORD_ID[PAD]

    answer = _answers(x, y, shape, colour, valid, subject, question_type)
    return (objects, ~valid, question, question_mask, answer, question_type, subject,
            num_objects)


def _pick(key: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """Slot of the smallest ``key`` in each row; among equal keys, the first colour wins."""
    best = key.min(dim=1, keepdim=True).values
    tied = key == best
    return torch.where(tied, colour, len(COLORS)).argmin(dim=1)


def _answers(x, y, shape, colour, valid, subject, question_type):
    n = x.shape[0]
    rows = torch.arange(n)
    sx, sy = x[rows, subject], y[rows, subject]  # (n,)
    distance = torch.sqrt((x - sx[:, None]) ** 2 + (y - sy[:, None]) ** 2)  # (n, S)
    others = valid.clone()
    others[rows, subject] = False
    closest = _pick(distance.masked_fill(~others, float("inf")), colour)
    furthest = _pick((-distance).masked_fill(~others, float("inf")), colour)
    subject_shape = shape[rows, subject]
    count = ((shape == subject_shape[:, None]) & valid).sum(dim=1)  # 1 .. num_objects

    yes, no = ANSWER_ID["yes"], ANSWER_ID["no"]
    by_type = torch.stack(
        [
            ANSWER_ID[SHAPES[0]] + subject_shape,
            torch.where(sx < 0.5, yes, no),
            torch.where(sy < 0.5, yes, no),
            ANSWER_ID[SHAPES[0]] + shape[rows, closest],
            ANSWER_ID[SHAPES[0]] + shape[rows, furthest],
            ANSWER_ID["1"] + count - 1,
        ]
    )  # (6, n)
    return by_type[question_type, rows]


def make_scene_splits(
    seed: int = 0, n_train: int = 6000, n_test: int = 1200, **kwargs
) -> tuple[SortOfClevr, SortOfClevr]:
    """Train and test sets of the same distribution from one seed (independent streams)."""
    train = SortOfClevr(n_samples=n_train, seed=2 * seed, **kwargs)
    test = SortOfClevr(n_samples=n_test, seed=2 * seed + 1, **kwargs)
    return train, test


def decode_question(ids: torch.Tensor) -> str:
    """Word ids ``(L,)`` back to the question's words, padding dropped."""
    return " ".join(WORDS[i] for i in ids.tolist() if i != WORD_ID[PAD])


# ----------------------------------------------------------------------------- reports


def answer_balance(dataset: SortOfClevr) -> dict[str, dict]:
    """For each question type: how often each answer occurs and the majority-class baseline.

    Returns ``{type: {"n": samples, "answers": {answer: fraction}, "majority": answer,
    "baseline": fraction}}``; ``"baseline"`` is the accuracy of always giving that type's most
    frequent answer (a model that reads the question but not the scene can reach it). Answers
    that never occur for a type are left out.
    """
    report = {}
    for t, name in enumerate(QUESTION_TYPES):
        answers = dataset.answer[dataset.question_type == t]
        counts = torch.bincount(answers, minlength=NUM_ANSWERS)
        total = max(int(counts.sum()), 1)
        majority = int(counts.argmax())
        report[name] = {
            "n": int(counts.sum()),
            "answers": {ANSWERS[a]: int(c) / total for a, c in enumerate(counts.tolist()) if c},
            "majority": ANSWERS[majority],
            "baseline": int(counts[majority]) / total,
        }
    return report


def format_answer_balance(report: dict[str, dict]) -> str:
    """``answer_balance``'s report as a small text table."""
    lines = [f"{'type':<9} {'n':>5}  {'baseline':>8}  answers"]
    for name, row in report.items():
        shares = ", ".join(f"{a} {share:.2f}" for a, share in row["answers"].items())
        lines.append(f"{name:<9} {row['n']:>5}  {row['baseline']:>8.3f}  {shares}")
    return "\n".join(lines)


def accuracy_by_type(
    predictions: torch.Tensor, dataset: SortOfClevr, types: Sequence[str] = QUESTION_TYPES
) -> dict[str, float]:
    """Accuracy of ``predictions`` ``(n,)`` (answer ids) on each question type, plus
    ``"non-relational"``, ``"relational"`` and ``"all"``."""
    predictions = torch.as_tensor(predictions).cpu()
    if predictions.shape != dataset.answer.shape:
        raise ValueError(
            f"predictions must have shape ({len(dataset)},), got {tuple(predictions.shape)}"
        )
    correct = (predictions == dataset.answer).float()
    result = {}
    for name in types:
        rows = dataset.question_type == QUESTION_TYPES.index(name)
        result[name] = correct[rows].mean().item() if rows.any() else float("nan")
    for group, names in (("non-relational", NON_RELATIONAL), ("relational", RELATIONAL)):
        rows = torch.isin(dataset.question_type, torch.tensor([QUESTION_TYPES.index(t)
                                                               for t in names]))
        result[group] = correct[rows].mean().item()
    result["all"] = correct.mean().item()
    return result
