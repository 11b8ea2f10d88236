"""fusionlab.part2.scenes: Sort-of-CLEVR's definitions, checked against a slow reference that reads
each sample's tokens back one by one; seeding, masks, shapes and the balance report."""

import math

import pytest
import torch

from fusionlab.data import as_tensors
from fusionlab.part2.scenes import (
    ANSWERS,
    COLORS,
    OBJECT_DIM,
    QUESTION_LENGTH,
    QUESTION_TYPES,
    SHAPES,
    TEMPLATES,
    VOCAB_SIZE,
    WORD_ID,
    WORDS,
    SortOfClevr,
    _answers,
    accuracy_by_type,
    answer_balance,
    decode_question,
    format_answer_balance,
    make_scene_splits,
)


def reference_answer(objects, object_mask, question) -> str:
    """The answer computed from the tokens alone, one object at a time, in plain Python."""
    scene = []
    for token, pad in zip(objects.tolist(), object_mask.tolist()):
        if pad:
            continue
        colour = COLORS[token[: len(COLORS)].index(1.0)]
        shape = SHAPES[token[len(COLORS) + 2 :].index(1.0)]
        scene.append((colour, token[len(COLORS)], token[len(COLORS) + 1], shape))
    words = [WORDS[i] for i in question.tolist() if WORDS[i] != "<pad>"]
    colour = next(w for w in words if w in COLORS)
    kind = next(t for t, template in TEMPLATES.items()
                if [w for w in template if w != "{}"] == [w for w in words if w != colour])
    subject = next(obj for obj in scene if obj[0] == colour)
    others = [obj for obj in scene if obj is not subject]

    def distance(obj):
        return math.hypot(obj[1] - subject[1], obj[2] - subject[2])

    def tie_break(obj):  # among equal distances, the colour listed first wins
        return COLORS.index(obj[0])

    if kind == "shape":
        return subject[3]
    if kind == "left":
        return "yes" if subject[1] < 0.5 else "no"
    if kind == "top":
        return "yes" if subject[2] < 0.5 else "no"
    if kind == "closest":
        return min(others, key=lambda o: (distance(o), tie_break(o)))[3]
    if kind == "furthest":
        return min(others, key=lambda o: (-distance(o), tie_break(o)))[3]
    return str(sum(obj[3] == subject[3] for obj in scene))


@pytest.mark.parametrize("kwargs", [{}, {"min_objects": 2, "max_objects": 8},
                                    {"min_objects": 3, "max_objects": 6, "num_slots": 8}])
def test_answers_match_the_slow_reference(kwargs):
    ds = SortOfClevr(n_samples=600, seed=11, **kwargs)
    for i in range(len(ds)):
        want = reference_answer(ds.objects[i], ds.object_mask[i], ds.question[i])
        assert ANSWERS[ds.answer[i]] == want, ds.describe(i)


def test_ties_go_to_the_colour_listed_first():
    # red at the centre; blue (a circle) and green (a square) at the same distance on either
    # side, in exactly representable coordinates
    x = torch.tensor([[0.25, 0.5, 0.75]])
    y = torch.full((1, 3), 0.5)
    colour = torch.tensor([[COLORS.index("blue"), COLORS.index("red"), COLORS.index("green")]])
    shape = torch.tensor([[SHAPES.index("circle"), 0, SHAPES.index("square")]])
    valid = torch.ones(1, 3, dtype=torch.bool)
    subject = torch.tensor([1])
    for kind in ("closest", "furthest"):
        answer = _answers(x, y, shape, colour, valid, subject,
                          torch.tensor([QUESTION_TYPES.index(kind)]))
        assert ANSWERS[answer] == "square", kind  # green is listed before blue


def test_shapes_dtypes_and_masks():
    ds = SortOfClevr(n_samples=240, min_objects=3, max_objects=6, num_slots=8, seed=0)
    objects, question, object_mask, question_mask, answer = ds.tensors()
    assert objects.shape == (240, 8, OBJECT_DIM) and objects.dtype == torch.float32
    assert question.shape == (240, QUESTION_LENGTH) and question.dtype == torch.long
    assert object_mask.dtype == torch.bool and question_mask.dtype == torch.bool
    assert answer.shape == (240,) and ds.num_classes == len(ANSWERS)
    assert int(question.max()) < VOCAB_SIZE
    # padding is at the end, all zeros, and True in the mask; every real object is one-hot
    assert torch.equal((~object_mask).sum(1), ds.num_objects)
    assert torch.equal(object_mask, torch.arange(8) >= ds.num_objects[:, None])
    assert (objects[object_mask] == 0).all()
    real = objects[~object_mask]
    assert (real[:, : len(COLORS)].sum(1) == 1).all() and (real[:, -2:].sum(1) == 1).all()
    assert ((real[:, len(COLORS) : len(COLORS) + 2] > 0) & (real[:, 8:10] < 1)).all()
    assert torch.equal(question_mask, question == WORD_ID["<pad>"])
    assert ds.num_objects.min() >= 3 and ds.num_objects.max() <= 6
    assert set(ds.num_objects.tolist()) == {3, 4, 5, 6}
    # one colour per object, and objects never share a grid cell
    for i in range(40):
        real = objects[i][~object_mask[i]]
        assert len(set(real[:, : len(COLORS)].argmax(1).tolist())) == len(real)
        cells = {(int(x * 4), int(y * 4)) for x, y in real[:, 8:10].tolist()}
        assert len(cells) == len(real)
    assert as_tensors(ds)[0] is objects


def test_question_types_are_balanced_and_the_subject_is_in_the_scene():
    ds = SortOfClevr(n_samples=600, seed=1)
    assert torch.bincount(ds.question_type).tolist() == [100] * 6
    assert (ds.subject < ds.num_objects).all()
    for i in range(12):
        words = decode_question(ds.question[i]).split()
        kind = QUESTION_TYPES[ds.question_type[i]]
        assert len(words) == len(TEMPLATES[kind])
        subject_colour = COLORS[int(ds.objects[i, ds.subject[i], : len(COLORS)].argmax())]
        assert subject_colour in words


def test_generation_depends_on_the_seed_only_and_leaves_the_global_rng_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    a = SortOfClevr(n_samples=100, seed=7)
    assert torch.equal(torch.rand(3), expected)
    b = SortOfClevr(n_samples=100, generator=torch.Generator().manual_seed(7))
    for x, y in zip(a.tensors(), b.tensors()):
        assert torch.equal(x, y)
    assert not torch.equal(a.objects, SortOfClevr(n_samples=100, seed=8).objects)
    train, test = make_scene_splits(seed=0, n_train=120, n_test=60)
    assert not torch.equal(train.objects[:60], test.objects)


@pytest.mark.parametrize("kwargs, message", [
    ({"min_objects": 1}, "2 <= min_objects"),
    ({"min_objects": 5, "max_objects": 4}, "min_objects <= max_objects"),
    ({"max_objects": 9, "num_slots": 9}, "num_slots <= 8"),
    ({"max_objects": 6, "num_slots": 5}, "max_objects <= num_slots"),
    ({"seed": None}, "pass a seed"),
    ({"n_samples": 0}, "n_samples"),
])
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SortOfClevr(**kwargs)


def test_answer_balance_reports_shares_and_majority_baselines():
    ds = SortOfClevr(n_samples=6000, seed=0)
    report = answer_balance(ds)
    assert list(report) == list(QUESTION_TYPES)
    for row in report.values():
        assert row["n"] == 1000
        assert math.isclose(sum(row["answers"].values()), 1.0)
        assert row["baseline"] == max(row["answers"].values())
        assert row["answers"][row["majority"]] == row["baseline"]
    # shapes are fair coins and the grid is symmetric: the binary types sit near 1/2
    for name in ("shape", "left", "top", "closest", "furthest"):
        assert set(report[name]["answers"]) <= {"square", "circle", "yes", "no"}
        assert report[name]["baseline"] < 0.56
    # the count is 1 + Binomial(n - 1, 1/2) for n from 3 to 6: never above 6
    assert set(report["count"]["answers"]) <= {"1", "2", "3", "4", "5", "6"}
    assert report["count"]["baseline"] < 0.45
    table = format_answer_balance(report)
    assert "count" in table and "baseline" in table


def test_accuracy_by_type():
    ds = SortOfClevr(n_samples=60, seed=0)
    perfect = accuracy_by_type(ds.answer, ds)
    assert all(v == 1.0 for v in perfect.values())
    wrong_on_count = ds.answer.clone()
    count = ds.question_type == QUESTION_TYPES.index("count")
    wrong_on_count[count] = 0  # "square" is never a count
    acc = accuracy_by_type(wrong_on_count, ds)
    assert acc["count"] == 0.0 and acc["shape"] == 1.0
    assert math.isclose(acc["relational"], 2 / 3, abs_tol=1e-6)
    assert math.isclose(acc["all"], 5 / 6, abs_tol=1e-6)
    with pytest.raises(ValueError, match=r"\(60,\)"):
        accuracy_by_type(ds.answer[:5], ds)


def test_describe_reads_the_sample_back():
    ds = SortOfClevr(n_samples=6, seed=0)
    text = ds.describe(0)
    assert "Q: what shape is" in text and "A: " in text
    assert text.count(" at (") == int(ds.num_objects[0])
