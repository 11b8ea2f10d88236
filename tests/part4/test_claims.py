"""Every comparative sentence and quoted number of the Part 4 notebook, measured over 3 seeds.

Each test quotes the sentence it backs. Every seed draws its own split, captions and initial
weights (``tests.part4.measure.measure_seed``); the exercises are the master's solution cells,
run as they are, with the notebook's settings. The bounds come from
``python -m tests.part4.measure --claims`` over 10 seeds under each of torch's CPU kernel paths
(``ATEN_CPU_CAPABILITY=default``, ``avx2``, ``avx512``: 30 runs); each test says which range it
saw and how the bound was set (the range, widened by the margin it names). If a number here
disagrees with the notebook's text, change the text (or the experiment), never the test.
"""

from __future__ import annotations

import statistics

import pytest

from tests.part4 import measure

pytestmark = pytest.mark.slow

SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def runs():
    """The claimed quantities of each seed: {quantity: [value per seed]}."""
    per_seed = [measure.claimed(measure.measure_seed(seed)) for seed in SEEDS]
    return {key: [run[key] for run in per_seed] for key in per_seed[0]}


def mean(values):
    return statistics.fmean(values)


# ----------------------------------------------------------------------------- 5.1 training

def test_the_sigmoid_loss_first_sits_on_a_plateau(runs):
    """"The sigmoid loss first sits on a plateau: from the second to the fourth epoch it falls by
    less than a tenth, while the softmax loss falls by a fifth or more."
    Measured (30 runs): sigmoid 0.007 to 0.081, softmax 0.232 to 0.442."""
    assert max(runs["siglip loss drop, epochs 2 to 4"]) < 0.1
    assert min(runs["clip loss drop, epochs 2 to 4"]) > 0.2


def test_the_learned_scale_moves_little_in_20_epochs(runs):
    """"The CLIP scale starts at 14.3 and ends between 15 and 20 after 20 epochs."
    (5.5: "in 20 epochs its scale only moves from 14.3 to between 15 and 20".)
    Measured: 16.2 to 17.3; the bounds leave 1.2 and 2.7."""
    assert all(15 < s < 20 for s in runs["clip final scale"])


def test_the_similarity_matrix_shows_digit_blocks(runs):
    """"Within a block, images and captions of the same digit are similar ... Between blocks the
    similarity is near zero ... The pairs themselves (the diagonal) stand out only a little
    within their block (by 0.1 to 0.2 on average)."
    Measured (40 held-out pairs): same digit - other digit 0.468 to 0.561; other digits -0.050
    to 0.016; pairs - same digit 0.099 to 0.168. Bounds: 0.35; +-0.1; 0.07 to 0.22."""
    assert all(d > 0.35 for d in runs["same digit - other digit"])
    assert all(abs(s) < 0.1 for s in runs["other digit similarity"])
    assert all(0.07 < d < 0.22 for d in runs["pairs - same digit"])


# ----------------------------------------------------------------------------- 5.2 retrieval

def test_recall_at_5_is_far_above_chance_and_close_to_the_ceiling(runs):
    """"Recall@5 is far above chance (0.05) in both directions and for both losses, and close to
    the ceiling (within 0.2 of it). Recall@1 is low for everyone, the ceiling included (below
    0.25)."
    Measured: recall@5 0.652 to 0.798; ceiling - recall@5 -0.006 to 0.174; recall@1 0.128 to
    0.222, the ceiling's 0.164 to 0.212. Bounds: 0.5; -0.05 to 0.2 (0.026 above the largest);
    0.25 (0.028 above the largest)."""
    for model in ("clip", "siglip"):
        for direction in ("image→text", "text→image"):
            assert min(runs[f"{model} {direction} R@5"]) > 0.5
            assert all(-0.05 < d < 0.2 for d in runs[f"ceiling - {model} {direction} R@5"])
            assert max(runs[f"{model} {direction} R@1"]) < 0.25
    for direction in ("image→text", "text→image"):
        assert max(runs[f"ceiling {direction} R@1"]) < 0.25


# ----------------------------------------------------------------------------- 5.3 zero-shot

def test_zero_shot_comes_within_a_few_points_of_the_probe(runs):
    """"Zero-shot, with no label at all, comes within about 4 points of the probe trained with
    1,200 labels."  Measured: probe - zero-shot -0.003 to 0.035. Bound: 0.045."""
    assert all(abs(d) < 0.045 for d in runs["probe - zero-shot"])


def test_the_ensemble_beats_the_average_prompt_and_no_prompt_beats_it_clearly(runs):
    """"The ensemble beats the average single prompt on every seed, and no single prompt is
    clearly better than the ensemble (by more than 2 points) ... Prompts with the numeral and
    prompts with the word work equally well (within 3 points)."
    Measured: ensemble - mean prompt 0.012 to 0.031; best prompt - ensemble -0.013 to 0.013;
    word - numeral -0.017 to 0.021. Bounds: 0.004; 0.02; 0.03."""
    assert all(d > 0.004 for d in runs["ensemble - mean single prompt"])
    assert all(d < 0.02 for d in runs["best single prompt - ensemble"])
    assert all(abs(d) < 0.03 for d in runs["word - numeral prompts"])


# ----------------------------------------------------------------------------- 5.4 negatives

def test_with_one_negative_both_lose_and_the_sigmoid_loss_far_more(runs):
    """"With a single negative per pair both lose, and the sigmoid loss loses far more than the
    softmax loss: here, SigLIP does not hold up better at small batches."
    Measured (recall@5 at 127 negatives - at 1): softmax 0.030 to 0.129, sigmoid 0.251 to
    0.595, their difference 0.171 to 0.553. Bounds: 0.01, 0.15, 0.1."""
    assert all(d > 0.01 for d in runs["clip: R@5 at 127 negatives - at 1"])
    assert all(d > 0.15 for d in runs["siglip: R@5 at 127 negatives - at 1"])
    assert all(d > 0.1 for d in runs["siglip drop - clip drop (1 negative)"])


def test_with_many_negatives_the_losses_end_up_close_and_stop_gaining(runs):
    """"With 127 negatives the two losses end up close (within 0.07 in recall@5) ... From 15
    negatives on, neither loss gains (recall@5 at 15 and at 127 negatives differ by less than
    0.08)."  Measured: softmax - sigmoid at 127 -0.032 to 0.055; 15 - 127 negatives -0.029 to
    0.051 (softmax), -0.061 to 0.032 (sigmoid)."""
    assert all(abs(d) < 0.07 for d in runs["clip - siglip R@5 at 127 negatives"])
    for name in ("clip", "siglip"):
        assert all(abs(d) < 0.08 for d in runs[f"{name}: R@5 at 15 negatives - at 127"])


# ----------------------------------------------------------------------------- 5.5 temperature

def test_a_high_temperature_keeps_zero_shot_and_loses_retrieval_on_average(runs):
    """"At tau = 1 ... zero-shot is at least as good as with the learned temperature on every seed
    we measured (2 points better on average) but retrieval ... is lower on average."
    Measured (tau 1 - learned): zero-shot 0.002 to 0.040 (mean 0.021); recall@5 -0.225 to
    0.021, mean over seeds 0-2 -0.029 to -0.039 under the three kernel paths. Bounds: -0.01
    per seed and 0.005 on the mean; the mean of recall@5 below 0."""
    assert all(d > -0.01 for d in runs["zero-shot: tau 1.0 - learned"])
    assert mean(runs["zero-shot: tau 1.0 - learned"]) > 0.005
    assert mean(runs["R@5: tau 1.0 - learned"]) < 0


def test_tau_0_2_beats_the_learned_temperature_on_both(runs):
    """"At tau = 0.2 both are better than with the learned temperature, on every seed."
    Measured (tau 0.2 - learned): zero-shot 0.007 to 0.034, recall@5 0.015 to 0.087. Bounds:
    each seed above -0.005 (a margin for other CPUs), the mean above 0.005."""
    for key in ("zero-shot: tau 0.2 - learned", "R@5: tau 0.2 - learned"):
        assert all(d > -0.005 for d in runs[key]), key
        assert mean(runs[key]) > 0.005, key


def test_at_the_clamp_neither_zero_shot_nor_retrieval_gains(runs):
    """"At tau = 0.01 (the clamp) neither gains: zero-shot is no better (a point worse on
    average) and retrieval no better either."
    Measured (tau 0.01 - learned, 30 runs): zero-shot -0.044 to 0.012, mean -0.013; recall@5
    -0.059 to 0.014. Bounds: each seed below 0.025 and 0.03."""
    assert all(d < 0.025 for d in runs["zero-shot: tau 0.01 - learned"])
    assert all(d < 0.03 for d in runs["R@5: tau 0.01 - learned"])


def test_the_loss_of_told_apart_pairs_only_falls_and_an_ordinary_batch_has_a_best_scale(runs):
    """"For the pairs that the encoders tell apart, the loss only ever falls as the scale grows,
    until it is 0 to the last digit ... For an ordinary batch the loss has a lowest point at a
    moderate scale (between 10 and 40) and rises after it."
    Measured: told apart on every seed, no rise, 0 at 1,000; the best scale 20.0 to 25.1 and a
    rise of 18.5 to 28.2 after it. Bounds: 10 to 40; a rise above 5."""
    assert all(t == 1.0 for t in runs["clamp: told apart"])
    assert all(r <= 0.0 for r in runs["clamp: told apart: largest rise"])
    assert all(loss < 1e-12 for loss in runs["clamp: told apart: loss at 1000"])
    assert all(10 < s < 40 for s in runs["clamp: ordinary: best scale"])
    assert all(r > 5 for r in runs["clamp: ordinary: rise after the best"])


# ----------------------------------------------------------------------------- 5.6 the gap

def test_the_modality_gap_is_large_at_first_and_shrinks_but_stays(runs):
    """"Before training ... the gap is large (above 1) ... Training ... shrinks it a lot (to
    between 0.1 and 0.4), but not to zero ... at tau = 0.01 ... a large gap remains; at tau = 1
    it is smaller than with the learned temperature ... a cosine of about 0.6 between an image
    and its own caption."
    Measured: before 1.111 to 1.490; after 0.178 to 0.292; at tau 0.01 0.720 to 1.058 (0.458 to
    0.840 above the learned one); tau 1 - learned -0.234 to -0.037; pairs' cosine 0.616 to
    0.667. Bounds: 1.0; 0.1 to 0.4; 0.5 and 0.3; below 0; 0.55 to 0.72."""
    assert all(g > 1.0 for g in runs["gap before training"])
    assert all(0.1 < g < 0.4 for g in runs["gap after training"])
    assert all(g > 0.5 for g in runs["gap at tau 0.01"])
    assert all(d > 0.3 for d in runs["gap: tau 0.01 - learned"])
    assert all(d < 0 for d in runs["gap: tau 1.0 - learned"])
    assert all(0.55 < c < 0.72 for c in runs["clip pair similarity"])


# ----------------------------------------------------------------------------- 5.7 align, fuse

def test_alignment_helps_the_fusion_model_where_labels_are_scarcest(runs):
    """"With 250 labelled pairs the model from scratch stays near chance (below 0.62) ... the
    same fusion block on top of [the aligned encoders] is never behind, and ahead on average.
    With 1,000 labelled pairs the model from scratch has learned too (above 0.6), and the two are
    closer: the aligned start is anywhere from 5 points behind to 15 points ahead."
    Measured (30 runs): scratch at 250 0.487 to 0.586; aligned - scratch at 250 0.001 to 0.185
    (the mean of any three seeds 0.03 or more); scratch at 1000 0.608 to 0.794; aligned -
    scratch at 1000 -0.051 to 0.147. Bounds: 0.62; -0.02 per seed and 0.02 on the mean; 0.6;
    -0.08 to 0.2."""
    assert all(a < 0.62 for a in runs["fuse 250: scratch"])
    assert all(d > -0.02 for d in runs["fuse 250: aligned - scratch"])
    assert mean(runs["fuse 250: aligned - scratch"]) > 0.02
    assert all(a > 0.6 for a in runs["fuse 1000: scratch"])
    assert all(-0.08 < d < 0.2 for d in runs["fuse 1000: aligned - scratch"])
