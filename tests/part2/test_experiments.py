"""fusionlab.part2.experiments: the pieces Part 2's experiments are made of (fast: no training but
two epochs of a tiny model)."""

from dataclasses import replace

import torch

from autograder.hidden.part2.formulas import MaskedAttention
from fusionlab.part2 import experiments as lab
from fusionlab.part2.models import RelationNetwork, SceneCrossAttention
from fusionlab.part2.scenes import ANSWERS, QUESTION_TYPES, SortOfClevr


def test_only_keeps_one_question_type_and_every_attribute_in_step():
    data = SortOfClevr(60, seed=0)
    shape = lab.only(data, "count")
    rows = data.question_type == QUESTION_TYPES.index("count")
    assert len(shape) == int(rows.sum()) == 10
    assert (shape.question_type == QUESTION_TYPES.index("count")).all()
    for name in ("objects", "object_mask", "question", "answer", "subject", "num_objects"):
        assert torch.equal(getattr(shape, name), getattr(data, name)[rows]), name
    assert len(data) == 60  # the original is untouched


def test_scene_splits_give_each_seed_its_own_data():
    trains, tests = lab.scene_splits([0, 1], 12, n_test=6, question_type="shape")
    assert [len(t) for t in trains] == [2, 2] and [len(t) for t in tests] == [1, 1]
    assert not torch.equal(trains[0].objects, trains[1].objects)
    eights = lab.eight_objects([0], n_test=12)
    assert eights[0].objects.shape[1] == 8 and not eights[0].object_mask.any()


def test_junk_fills_only_the_padded_slots():
    data = SortOfClevr(30, seed=1)
    junk = lab.with_junk_in_padding(data, seed=0)
    pad = data.object_mask
    assert torch.equal(junk.objects[~pad], data.objects[~pad])
    assert (junk.objects[pad] != 0).any() and (data.objects[pad] == 0).all()
    assert torch.equal(junk.object_mask, data.object_mask)


def test_attention_on_padding_is_zero_with_the_mask_and_not_without():
    data = SortOfClevr(30, seed=2)
    torch.manual_seed(0)
    masked = SceneCrossAttention(embed_dim=16, num_heads=2, attention=MaskedAttention)
    unmasked = SceneCrossAttention(embed_dim=16, num_heads=2, use_object_mask=False,
                                   attention=MaskedAttention)
    assert lab.attention_on_padding(masked, data).abs().max() == 0
    mass = lab.attention_on_padding(unmasked, data)
    padded = data.object_mask.any(dim=1)
    assert (mass[padded] > 0).all() and (mass[~padded] == 0).all()
    report = lab.padding_report([unmasked], [data])
    assert sorted(report) == sorted(set(data.object_mask.sum(dim=1).tolist()))
    assert report[0]["mass"] == [0.0] and report[max(report)]["mass"][0] > 0


def test_mean_std_over_one_or_several_seeds():
    assert lab.mean_std([0.5]) == "0.500 ± 0.000"
    assert lab.mean_std([0.4, 0.6]) == "0.500 ± 0.141"


def test_the_shortcut_answers_the_majority_shape_of_the_other_objects():
    data = SortOfClevr(60, seed=4)
    answers = lab.majority_of_the_others(data)
    for i in range(len(data)):
        shapes = [int(data.objects[i, s, -1]) for s in range(data.num_slots)
                  if not data.object_mask[i, s] and s != int(data.subject[i])]  # 1: circle
        circles, squares = sum(shapes), len(shapes) - sum(shapes)
        assert ANSWERS[int(answers[i])] == ("circle" if circles > squares else "square"), i
    closest = lab.only(data, "closest")
    correct = (lab.majority_of_the_others(closest) == closest.answer).float().mean().item()
    assert lab.shortcut_accuracy([closest]) == [correct]


def test_train_models_records_a_learning_curve_per_seed():
    trains, tests = lab.scene_splits([0, 1], 60, n_test=30, question_type="closest")
    curves = {}
    config = replace(lab.RELATIONAL, epochs=2)
    models = lab.train_models({"rn": lambda: RelationNetwork(hidden_dim=8)}, trains, [0, 1],
                              config, tests, curves)
    assert len(models["rn"]) == 2 and [len(c) for c in curves["rn"]] == [2, 2]
    assert [c[-1] for c in curves["rn"]] == lab.accuracy_per_type(models["rn"], tests)["closest"]
