"""Every comparative sentence of the Part 2 notebook's experiments, measured over 5 seeds with a
margin.

Each test quotes the sentence it backs. Every seed draws its own scenes *and* its own initial
weights (``tests.measure_part2``), and the models are built on the master's own exercise
solutions, trained with the notebook's settings (``fusionlab.scene_experiments``). The notebook
runs seeds 0-2 of these.

If a number here disagrees with the notebook's text, change the text (or the data), never the
test.
"""

import statistics

import pytest

from tests import measure_part2 as measure

pytestmark = pytest.mark.slow

SEEDS = (0, 1, 2, 3, 4)
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


# ----------------------------------------------------------------------------- 6.1 binding


def test_attention_selects_and_the_pooled_models_stay_at_the_shortcut(binding):
    """"The attention models (cross-attention with 1 or 2 layers, co-attention) answer "what shape
    is X" almost perfectly (0.98 to 1.00 on average), while pooled late fusion (about 0.71) and
    flat early fusion (about 0.68) stay at the "majority shape of the scene" shortcut, on every
    seed." """
    for name in ATTENTION:
        accs = binding[name]["acc"]
        assert mean(accs) >= 0.97 and min(accs) >= 0.93, (name, accs)
    for name, level in zip(SHORTCUTS, (0.68, 0.71)):
        accs = binding[name]["acc"]
        assert abs(mean(accs) - level) < 0.04 and max(accs) < 0.78, (name, accs)
    worst_attention = min(min(binding[n]["acc"]) for n in ATTENTION)
    best_shortcut = max(max(binding[n]["acc"]) for n in SHORTCUTS)
    assert worst_attention - best_shortcut > 0.15


def test_the_relation_network_gets_most_of_the_way(binding):
    """"The Relation Network gets most of the way (about 0.95 on average, its worst seed about
    0.88), but not all of it on every seed, as co-attention does." """
    rn = binding["relation network"]["acc"]
    assert abs(mean(rn) - 0.95) < 0.03 and min(rn) > 0.84, rn
    assert min(rn) < 0.95 <= min(binding["co-attention"]["acc"]), rn
    assert min(rn) > max(max(binding[n]["acc"]) for n in SHORTCUTS) + 0.08


# ----------------------------------------------------------------------------- 6.3 mask


def _by_padding(binding, variant, key):
    return {p: e[key] for p, e in binding["padding"][variant].items()}


def test_without_the_mask_attention_lands_on_padding_in_proportion(binding):
    """"about 0.07 of the words' attention with 1 padded slot, 0.17 with 2, 0.30 with 3. With the
    mask it is exactly 0." """
    masked = _by_padding(binding, "with mask", "mass")
    assert all(m == 0.0 for values in masked.values() for m in values), masked
    unmasked = _by_padding(binding, "without mask", "mass")
    for padded, level in ((1, 0.07), (2, 0.17), (3, 0.30)):
        assert abs(mean(unmasked[padded]) - level) < 0.03, (padded, unmasked[padded])
    for k in range(len(SEEDS)):  # on every seed, more padding draws more attention
        assert unmasked[0][k] < unmasked[1][k] < unmasked[2][k] < unmasked[3][k]


def test_the_unmasked_model_answers_about_as_well_even_with_junk(binding):
    """"The unmasked model answers about as well as the masked one (0.98 against 0.99), and still
    does with random numbers in the padded slots" """
    masked = binding["cross-attn 1 layer"]["acc"]
    unmasked = binding["cross-attn 1 layer, no mask"]
    assert abs(mean(masked) - 0.99) < 0.015 and abs(mean(unmasked["acc"]) - 0.98) < 0.015
    assert abs(mean(unmasked["acc"]) - mean(masked)) < 0.03
    assert mean(unmasked["acc_junk"]) > 0.93 and min(unmasked["acc_junk"]) > 0.88, unmasked


def test_with_the_mask_junk_in_the_padding_changes_nothing(binding):
    """"with it, the answers do not change at all, whatever the padded slots hold." """
    entry = binding["cross-attn 1 layer"]
    assert entry["acc_junk"] == entry["acc"]


# ----------------------------------------------------------------------------- 6.4 set size


def test_attention_carries_over_to_eight_objects_and_the_rest_drops(binding):
    """"The attention models carry over to 8 objects (0.98 to 1.00 on average) ... Pooled late
    fusion drops further ..., and so does the Relation Network (to about 0.84)" """
    for name in ATTENTION:
        eight = binding[name]["acc_8"]
        assert mean(eight) >= 0.97 and min(eight) >= 0.9, (name, eight)
    for name in ("pooled late", "relation network"):
        entry = binding[name]
        assert mean(entry["acc"]) - mean(entry["acc_8"]) > 0.04, (name, entry)
    assert abs(mean(binding["relation network"]["acc_8"]) - 0.84) < 0.05


# ----------------------------------------------------------------------------- 6.5 the mix


def test_at_this_budget_no_model_learns_a_type_beyond_its_shortcut(mix):
    """"On "what shape is X" every model stays below 0.8 ... Closest and furthest sit at the
    "majority shape" level (about 0.7), left and top near 0.5, and count between 0.35 and 0.47
    (its baseline is about 0.34)." """
    for name, accs in mix.items():
        assert max(accs["shape"]) < 0.8, (name, accs["shape"])
        for column in ("closest", "furthest"):
            assert 0.62 < mean(accs[column]) < 0.75 and max(accs[column]) < 0.78, (name, column)
        for column in ("left", "top"):
            assert abs(mean(accs[column]) - 0.5) < 0.07, (name, column, accs[column])
        assert 0.33 < mean(accs["count"]) < 0.49, (name, accs["count"])


# ----------------------------------------------------------------------------- 6.6 grid


def _row(grid, layers):
    return [a for (h, n), accs in grid.items() if n == layers for a in accs]


def test_three_layers_are_still_at_the_shortcut_where_one_layer_has_bound(grid):
    """"With 3 layers the models are still at the shortcut after these 10 epochs (about 0.70),
    while with 1 layer most seeds have bound the colour word (about 0.9)." """
    one, three = _row(grid, 1), _row(grid, 3)
    assert abs(mean(three) - 0.70) < 0.04 and max(three) < 0.85, three
    assert abs(mean(one) - 0.9) < 0.05, one
    assert sum(a > 0.85 for a in one) > len(one) / 2, one
    assert mean(one) - mean(three) > 0.12


def test_the_number_of_heads_makes_no_consistent_difference(grid):
    """"averaged over the layers, 1, 2 and 4 heads are within a few points of each other, less
    than the spread over seeds." """
    per_heads = {h: [a for (hh, _), accs in grid.items() if hh == h for a in accs]
                 for h in measure.HEADS}
    means = [mean(v) for v in per_heads.values()]
    assert max(means) - min(means) < 0.05, means
    spread = mean(statistics.stdev(accs) for accs in grid.values())
    assert max(means) - min(means) < spread, (means, spread)
