"""Every comparative sentence and quoted number of the Part 2 notebook's experiments, with a
margin that its measured spread supports.

Each test opens with the sentences it backs, word for word (``tests/part2/test_notebooks.py``
checks that the notebook holds them), then says where its bounds come from. Every seed draws
its own scenes *and* its own initial weights (``tests.part2.measure``), and the models are built
on the master's own exercise solutions, trained with the notebook's settings
(``fusionlab.part2.experiments``). The notebook runs seeds 0-2; so do these tests.

Where the bounds come from:
- 6.7 (the relational section): ``python -m tests.part2.measure --seeds 0 ... 9 --only
  relational few`` under ``ATEN_CPU_CAPABILITY=default``, ``avx2`` and ``avx512`` (30 runs;
  ``few`` on AVX2 only, 10 runs), summarised with ``--summarize``
  (``benchmarks/PART2_MEASUREMENTS.md``, section 10); plus this file's own runs under all
  three paths.
- 6.1-6.6: ``python -m tests.part2.measure --seeds 0 ... 9 --only binding mix grid`` under
  ``ATEN_CPU_CAPABILITY=default``, ``avx2`` and ``avx512`` (30 runs), summarised with
  ``--notebook-means`` (section 11 of ``benchmarks/PART2_MEASUREMENTS.md``). A claim "on
  average" is a claim about the notebook's three seeds: its range is that of the mean of every 3
  of the 10 seeds under each path (360 means); a claim "on every seed" ranges over the 30 single
  runs.
A test's bound is the observed range widened by the margin it names (at least 0.015 for
6.1-6.6; 6.7's tests say theirs). If a number here disagrees with the notebook's text, change
the text (or the experiment), never the test.
"""

import statistics

import pytest

from fusionlab.part2 import experiments as lab
from fusionlab.part2.scenes import ANSWER_ID, SortOfClevr
from tests.part2 import measure

pytestmark = pytest.mark.slow

SEEDS = (0, 1, 2)
ATTENTION = ("cross-attn 1 layer", "cross-attn 2 layers", "co-attention")
SHORTCUTS = ("flat early", "pooled late")
mean = statistics.fmean


@pytest.fixture(scope="module")
def binding():
    return measure.binding(SEEDS)


@pytest.fixture(scope="module")
def mix():
    return measure.mix(SEEDS)


@pytest.fixture(scope="module")
def grid():
    # the grid's 1- and 3-layer rows: the sentences compare those (the 2-layer row is shown only)
    return measure.grid(SEEDS, layers=(1, 3))


@pytest.fixture(scope="module")
def relational():
    return measure.claimed({"relational": measure.relational(SEEDS)}, SEEDS)


@pytest.fixture(scope="module")
def few():
    return measure.claimed({"few": measure.few(SEEDS)}, SEEDS)


# ----------------------------------------------------------------------------- 6.1 binding


def test_the_scenes_majority_shape_is_right_about_seven_times_in_ten():
    """"guess the scene's majority shape (about 0.7 of the time"

    Data only (ties go to "square"): 0.665 to 0.708 on the 1000 training questions of seeds 0-9.
    Bound: 0.7 ± 0.05 on every seed."""
    for s in SEEDS:
        data = lab.only(SortOfClevr(lab.BINDING_SCENES, seed=2 * s), "shape")
        shapes = data.objects[..., -2:].sum(dim=1)  # (n, 2): squares, circles
        guess = ANSWER_ID["square"] + (shapes[:, 1] > shapes[:, 0]).long()
        assert abs((guess == data.answer).float().mean().item() - 0.7) < 0.05, s


def test_attention_selects_and_the_pooled_models_stay_at_the_shortcut(binding):
    """"The attention models (cross-attention with 1 or 2 layers, co-attention) answer "what shape
    is X" almost perfectly (0.95 or more on average), while pooled late fusion and flat early
    fusion stay at the "majority shape of the scene" shortcut, below 0.8 on every seed"

    Seen (30 runs): attention 3-seed means 0.968 to 1.000, single seeds 0.965 to 1.000; pooled
    late 0.640 to 0.750, flat early 0.635 to 0.725 per seed. Bounds: mean >= 0.95 (0.018 below),
    every seed >= 0.9; every shortcut seed < 0.8 (0.05 above the largest)."""
    for name in ATTENTION:
        accs = binding[name]["acc"]
        assert mean(accs) >= 0.95 and min(accs) >= 0.9, (name, accs)
    for name in SHORTCUTS:
        assert max(binding[name]["acc"]) < 0.8, (name, binding[name]["acc"])


def test_the_relation_network_gets_most_of_the_way(binding):
    """"The Relation Network gets most of the way (above 0.8 on average), but on average not as far
    as co-attention."

    Seen (30 runs): RN 3-seed means 0.857 to 0.980 (the old "0.85 to 0.97" and "not all of it
    on every seed" failed on some of them), single seeds 0.775 to 0.990; co-attention 0.995 to
    1.000 on every seed, so co-attention's mean - the RN's >= 0.015. Bounds: 0.8 (0.057 below);
    the RN's mean below co-attention's."""
    rn = binding["relation network"]["acc"]
    assert mean(rn) > 0.8, rn
    assert mean(rn) < mean(binding["co-attention"]["acc"]), rn


# ----------------------------------------------------------------------------- 6.3 mask


def _by_padding(binding, variant, key):
    return {p: e[key] for p, e in binding["padding"][variant].items()}


def test_without_the_mask_attention_lands_on_padding_in_proportion(binding):
    """"Without the mask, attention lands on padding, and the more padding, the more of it (see the
    numbers above): less than 0.15 of the words' attention with 1 padded slot, and between 0.2 and
    0.4 with 3 (on average over seeds). With the mask it is exactly 0."

    Seen (30 runs, 3-seed means): 1 padded slot 0.054 to 0.106, 2 slots 0.132 to 0.223, 3 slots
    0.226 to 0.342 (the old "about 0.07", "0.17" and "0.2 to 0.35" each failed on some);
    single seeds: 3 padded slots draw more than 1 on all 30. Bounds: 0.15 (0.044 above), 0.2 to
    0.4 (0.026 below, 0.058 above); the means rise with the padding, and on every seed 3
    padded slots draw more than 1."""
    masked = _by_padding(binding, "with mask", "mass")
    assert all(m == 0.0 for values in masked.values() for m in values), masked
    unmasked = _by_padding(binding, "without mask", "mass")
    assert mean(unmasked[1]) < 0.15, unmasked[1]
    assert 0.2 < mean(unmasked[3]) < 0.4, unmasked[3]
    means = [mean(unmasked[p]) for p in (0, 1, 2, 3)]
    assert means == sorted(means), means
    assert all(three > one for one, three in zip(unmasked[1], unmasked[3])), unmasked


def test_the_unmasked_model_answers_about_as_well_even_with_junk(binding):
    """"The unmasked model answers about as well as the masked one (within 0.05 on average, see
    the numbers above), and still does with random numbers in the padded slots"

    Seen (30 runs): unmasked - masked -0.023 to 0.020 on 3-seed means (the old "0.03" had 0.007
    to spare); with junk 3-seed means 0.955 to 1.000, single seeds 0.950 to 1.000. Bounds: 0.05
    (0.027 above the largest gap); junk mean > 0.93, every seed > 0.88."""
    masked = binding["cross-attn 1 layer"]["acc"]
    unmasked = binding["cross-attn 1 layer, no mask"]
    assert abs(mean(unmasked["acc"]) - mean(masked)) < 0.05, (masked, unmasked)
    assert mean(unmasked["acc_junk"]) > 0.93 and min(unmasked["acc_junk"]) > 0.88, unmasked


def test_with_the_mask_junk_in_the_padding_changes_nothing(binding):
    """"with it, the answers do not change at all, whatever the padded slots hold."

    Exact, on every kernel path: the masked slots get weight exactly 0."""
    entry = binding["cross-attn 1 layer"]
    assert entry["acc_junk"] == entry["acc"]


# ----------------------------------------------------------------------------- 6.4 set size


def test_attention_carries_over_to_eight_objects_and_the_rest_drops(binding):
    """"The attention models carry over to 8 objects (0.9 or more on average) ... Pooled late
    fusion drops further ..., and so does the Relation Network (see the numbers above)"

    Seen (30 runs): attention on 8 objects, 3-seed means 0.948 to 1.000 (the old "0.95" failed
    on some), single seeds 0.930 to 1.000; drops to 8 objects on 3-seed means: pooled late 0.043
    to 0.122, the RN 0.017 to 0.147 (single seeds 0.005 to 0.195: "by several points" did not
    hold). Bounds: mean >= 0.9, every seed >= 0.85; drops > 0 (the RN's smallest 3-seed drop is
    0.017 above: a drop, of a size the text leaves to the printed numbers)."""
    for name in ATTENTION:
        eight = binding[name]["acc_8"]
        assert mean(eight) >= 0.9 and min(eight) >= 0.85, (name, eight)
    for name in ("pooled late", "relation network"):
        entry = binding[name]
        assert mean(entry["acc"]) - mean(entry["acc_8"]) > 0, (name, entry)


# ----------------------------------------------------------------------------- 6.5 the mix


def test_at_this_budget_the_mix_teaches_little(mix):
    """"At this budget the mix teaches little. On "what shape is X" every model stays below 0.8 on
    average ... Closest and furthest stay near the "majority shape" level (between 0.55 and 0.8 on
    average), left and top between 0.4 and 0.65, and count between 0.25 and 0.6"

    Seen (30 runs, 3-seed means of each model): shape 0.613 to 0.752, closest 0.623 to 0.710,
    furthest 0.595 to 0.737, left 0.472 to 0.597, top 0.477 to 0.587, count 0.297 to 0.527
    (count - its majority baseline -0.050 to 0.173: the old "near its majority baseline" and
    "no model has learned any question type beyond its shortcut" did not hold for count, nor
    "about 0.7", "near 0.5" and "0.3 to 0.5" on every 3 seeds). 200 test questions per type and
    seed make these wide. Bounds: shape < 0.8 (0.048 above); closest, furthest 0.55 to 0.8
    (0.045 below, 0.063 above); left, top 0.4 to 0.65 (0.072, 0.053); count 0.25 to 0.6 (0.047,
    0.073)."""
    for name, accs in mix.items():
        if name == "majority baseline":
            continue
        assert mean(accs["shape"]) < 0.8, (name, accs["shape"])
        for column in ("closest", "furthest"):
            assert 0.55 < mean(accs[column]) < 0.8, (name, column, accs[column])
        for column in ("left", "top"):
            assert 0.4 < mean(accs[column]) < 0.65, (name, column, accs[column])
        assert 0.25 < mean(accs["count"]) < 0.6, (name, accs["count"])


def test_the_mix_gives_each_type_300_questions_and_the_relational_section_10000():
    """"The mix gives each type a sixth of its scenes, 300 questions per seed. Here the Relation
    Network and the 1-layer cross-attention learn "what shape is closest to X" alone, from 10,000
    questions per seed (a sixth of 60,000 scenes), 25 epochs at learning rate 3e-3, tested after
    every epoch on 1,000 new questions."

    The settings themselves (exact)."""
    assert lab.MIX_SCENES // 6 == 300 and lab.RELATIONAL_SCENES // 6 == 10_000
    assert lab.RELATIONAL_TEST_SCENES // 6 == 1000
    assert (lab.RELATIONAL.epochs, lab.RELATIONAL.lr) == (25, 3e-3)
    trains, tests = lab.scene_splits([0], lab.MIX_SCENES, question_type="closest")
    assert len(trains[0]) == 300


# ----------------------------------------------------------------------------- 6.6 grid


def _row(grid, layers):
    return [a for (h, n), accs in grid.items() if n == layers for a in accs]


def test_three_layers_are_still_near_the_shortcut_where_one_layer_has_bound(grid):
    """"With 3 layers most seeds are still near the shortcut after these 10 epochs (the row's mean
    stays below 0.8), while with 1 layer most seeds have bound the colour word (above 0.8 on
    average)."

    Seen (30 runs, 3-seed row means): 3 layers 0.649 to 0.773, 1 layer 0.841 to 0.948 (the old
    "above 0.85" failed on some), the gap 0.131 to 0.261; in all 360 3-seed sets most 3-layer
    models are below 0.8 and most 1-layer models above 0.85. Bounds: 3 layers < 0.8 (0.027
    above the largest), 1 layer > 0.8 (0.041), the gap > 0.1 (0.031)."""
    one, three = _row(grid, 1), _row(grid, 3)
    assert mean(three) < 0.8 and sum(a < 0.8 for a in three) > len(three) / 2, three
    assert mean(one) > 0.85 and sum(a > 0.85 for a in one) > len(one) / 2, one
    assert mean(one) - mean(three) > 0.1


def test_heads_matter_less_than_layers(grid):
    """"Averaged over the 1- and 3-layer rows, 1, 2 and 4 heads are within 0.15 of each other, less
    than the gap between 1 and 3 layers."

    Seen (30 runs, 3-seed means): best - worst heads up to 0.094 (the old "0.1" had 0.006 to
    spare), always less than the layer gap (0.131 to 0.261). Bound: 0.15 (0.056 above)."""
    per_heads = {h: [a for (hh, _), accs in grid.items() if hh == h for a in accs]
                 for h in measure.HEADS}
    means = [mean(v) for v in per_heads.values()]
    assert max(means) - min(means) < 0.15, means
    assert max(means) - min(means) < mean(_row(grid, 1)) - mean(_row(grid, 3)), means


# ----------------------------------------------------------------------------- 6.7 relational


def test_the_shortcut_reads_shapes_and_is_usually_right():
    """"Most scenes have more objects of one shape than of the other, so the nearest object usually
    has that shape too."

    Data only: 0.716 to 0.722 on the 10,000 training questions of seeds 0-2. Bound: > 0.65 on every
    seed (and below 0.8: a shortcut, not a solution)."""
    trains, _ = lab.scene_splits(SEEDS, lab.RELATIONAL_SCENES, question_type="closest")
    assert all(0.65 < a < 0.8 for a in lab.shortcut_accuracy(trains))


def test_with_enough_questions_the_relation_network_learns_closest_and_cross_attention_not(
        relational):
    """"With enough questions the Relation Network learns "closest"; cross-attention does not.
    After 25 epochs the Relation Network is above the shortcut on every seed (see the table
    above), while cross-attention ends within a few points of the shortcut."

    Seen (section 10, 30 runs: 10 seeds under each kernel path): the RN 0.773 to 0.937, RN -
    shortcut 0.064 to 0.215 per seed; cross-attention - shortcut -0.018 to 0.030. Bounds: the RN
    more than 0.02 above the shortcut on every seed (a third of the smallest gap);
    cross-attention within 0.05 (0.02 beyond the largest)."""
    over = relational["6.7 relation network - shortcut"]
    assert min(over) > 0.02, over
    cross = relational["6.7 cross-attn 1 layer - shortcut"]
    assert max(abs(d) for d in cross) < 0.05, cross


def test_cross_attention_underfits(relational):
    """"On its own training questions cross-attention does no better than the shortcut either: it
    does not overfit, it underfits."

    Seen (section 10, 30 runs): cross-attention's training accuracy - the shortcut's on the same
    questions -0.005 to 0.027 (the RN's: 0.107 to 0.237). Bound: below 0.05 (0.023 beyond the
    largest)."""
    gap = relational["6.7 cross-attn 1 layer: train - shortcut's train"]
    assert max(gap) < 0.05, gap


def test_the_relation_network_leaves_the_shortcut_late(relational):
    """"The Relation Network leaves the shortcut late. For its first 10 epochs it is no better than
    the shortcut, and it climbs only after that"

    Seen (section 10, 30 runs): its best test accuracy over epochs 1-10 - the shortcut -0.023 to
    0.022; from epoch 10 to 25 it gains 0.074 to 0.233. Bounds: below 0.04 (0.018 beyond the
    largest); a gain above 0.03 on every seed."""
    early = relational["6.7 relation network - shortcut, best of epochs 1-10"]
    assert max(early) < 0.04, early
    climb = relational["6.7 relation network: climb after epoch 10"]
    assert min(climb) > 0.03, climb


def test_with_1000_questions_the_relation_network_memorises_them(few):
    """"With 1,000 questions, the Relation Network memorises them. Trained on 1,000 "closest"
    questions (the share of 6,000 scenes) for 100 epochs, it answers all of its training questions
    right and new ones no better than the shortcut."

    Seen (section 10, 10 seeds on AVX2): train 1.000 on every seed; test - shortcut -0.078 to
    -0.015. Bounds: train >= 0.98; test - shortcut < 0.03."""
    assert min(few["6.7 few closest, train"]) >= 0.98, few
    assert max(few["6.7 few closest, test - shortcut"]) < 0.03, few


def test_count_needs_fewer_questions_than_closest(few):
    """"Count needs fewer questions than closest. With the same 1,000 questions and 100 epochs, the
    Relation Network's answers to "how many have the shape of X" carry over to new scenes, far
    above that type's majority baseline."

    Seen (section 10, 10 seeds on AVX2): count's test accuracy 0.567 to 0.656, its majority
    baseline's 0.33 to 0.34: 0.232 to 0.325 above it. Bound: > 0.15 on every seed (closest stays
    at the shortcut: previous test)."""
    assert min(few["6.7 few count, test - baseline"]) > 0.15, few
