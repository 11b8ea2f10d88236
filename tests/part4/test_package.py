"""Part 4's package (``fusionlab.part4``): the data, the models, the contrastive loop, the
measurement helpers and the figures. Cheap: nothing here trains for more than a few steps.

The losses, recall@K and the zero-shot classifier are the students' TODOs and are not in the
package: where a test needs one it writes its own, here, in the simplest form."""

from __future__ import annotations

import math
from dataclasses import replace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from fusionlab.part4 import data as digits  # noqa: E402
from fusionlab.part4 import experiments as lab  # noqa: E402
from fusionlab.part4 import plots as figures  # noqa: E402
from fusionlab.part4.models import (  # noqa: E402
    MAX_LOGIT_SCALE,
    DualEncoder,
    ImageEncoder,
    MatchingModel,
    TextEncoder,
)
from fusionlab.part4.train import ContrastiveConfig, ContrastiveHistory, embed, fit_contrastive  # noqa: E402,E501


@pytest.fixture(scope="module")
def splits():
    return digits.make_splits(seed=0)


def _mse_loss(image_emb, text_emb, logit_scale, logit_bias=None):
    """A loss for testing the loop, not a contrastive one: pulls each pair together."""
    loss = (F.normalize(image_emb, dim=-1) - F.normalize(text_emb, dim=-1)).pow(2).sum(1).mean()
    return loss + 0.0 * logit_scale + (0.0 if logit_bias is None else 0.0 * logit_bias)


def _recall(similarity, k):
    true = similarity.diagonal()
    return (((similarity >= true[:, None]).sum(1) <= k).float().mean().item(),
            ((similarity >= true[None, :]).sum(0) <= k).float().mean().item())


# ----------------------------------------------------------------------------- data

def test_the_digits_are_the_real_ones_scaled_to_one():
    images, labels = digits.load_digits()
    assert images.shape == (1797, 64) and labels.shape == (1797,)
    assert images.min() == 0 and images.max() == 1
    assert labels.bincount().tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_splits_are_disjoint_complete_and_seeded(splits):
    train, test = splits
    assert (len(train), len(test)) == (1200, 597)
    assert set(train.index.tolist()).isdisjoint(test.index.tolist())
    assert len(set(train.index.tolist()) | set(test.index.tolist())) == 1797
    again, _ = digits.make_splits(seed=0)
    assert torch.equal(again.index, train.index) and again.captions == train.captions
    other, _ = digits.make_splits(seed=1)
    assert not torch.equal(other.index, train.index)
    with pytest.raises(ValueError, match="n_test"):
        digits.make_splits(n_test=0)


def test_every_caption_states_its_images_digit_and_stroke_width(splits):
    train, _ = splits
    for caption, label, thick in zip(train.captions, train.labels.tolist(), train.thick.tolist()):
        words = caption.split()
        assert digits.DIGIT_WORDS[label] in words or digits.NUMERALS[label] in words, caption
        width = digits.THICK if thick else digits.THIN
        assert any(w in words for w in width), caption
        others = [w for w in words if w in digits.DIGIT_WORDS + digits.NUMERALS]
        assert len(others) == 1, caption


def test_thick_means_at_least_the_median_ink_of_its_digit():
    images, labels = digits.load_digits()
    thick = digits.thick_strokes(images, labels)
    for c in range(10):
        ink = images[labels == c].sum(1)
        assert (ink[thick[labels == c]] >= ink.median()).all()
        assert (ink[~thick[labels == c]] < ink.median()).all()
        assert 0.4 < thick[labels == c].float().mean() < 0.6


def test_tokens_round_trip_and_unknown_or_long_text_is_explained():
    ids = digits.tokenize(["a bold handwritten 7", "a purple seven"])
    assert ids.shape == (2, digits.MAX_LEN) and ids.dtype == torch.long
    assert digits.decode(ids[0]) == "a bold handwritten 7"
    assert ids[1, 1] == digits.UNK and ids[1, 3] == digits.PAD
    with pytest.raises(ValueError, match="at most 8 fit"):
        digits.tokenize("one two three four five six seven eight nine")


def test_zero_shot_prompts_are_new_sentences_of_known_words(splits):
    train, _ = splits
    prompts = digits.prompts()
    assert len(prompts) == 10 and all(len(row) == 10 for row in prompts)
    flat = {p for row in prompts for p in row}
    assert flat.isdisjoint(train.captions)  # no prompt is a training caption
    training_words = {w for c in train.captions for w in c.split()}
    assert {w for p in flat for w in p.split()} <= training_words
    assert digits.prompt_tokens().shape == (10, 10, digits.MAX_LEN)
    assert (digits.prompt_tokens() != digits.UNK).all()


def test_matching_pairs_are_half_matches_and_every_negative_is_false(splits):
    train, _ = splits
    images, tokens, labels = digits.matching_pairs(train, 2000, seed=3)
    assert images.shape == (2000, 64) and tokens.shape == (2000, digits.MAX_LEN)
    assert 0.45 < labels.float().mean() < 0.55
    caption_of = {tuple(t.tolist()): i for i, t in enumerate(train.tokens)}
    row_of = {tuple(img.tolist()): i for i, img in enumerate(train.images)}
    for img, tok, label in zip(images[:300], tokens[:300], labels[:300]):
        i, j = row_of[tuple(img.tolist())], caption_of[tuple(tok.tolist())]
        same = (train.labels[i] == train.labels[j]) and (train.thick[i] == train.thick[j])
        assert bool(same) == bool(label)  # a negative's caption is false of the image


def test_subset_keeps_pairs_together(splits):
    train, _ = splits
    part = train.subset([5, 2])
    assert part.captions == [train.captions[5], train.captions[2]]
    assert torch.equal(part.images[1], train.images[2]) and len(part) == 2


# ----------------------------------------------------------------------------- models

def test_encoders_give_tokens_and_embeddings_of_the_documented_shapes():
    torch.manual_seed(0)
    image, text = ImageEncoder(dim=16, embed_dim=8), TextEncoder(dim=16, embed_dim=8)
    assert image.tokens(torch.rand(3, 64)).shape == (3, 16, 16)
    assert image(torch.rand(3, 64)).shape == (3, 8)
    tokens, padding = text.tokens(digits.tokenize(["a bold 7", "the digit seven"]))
    assert tokens.shape == (2, 8, 16) and padding.tolist()[0] == [False] * 3 + [True] * 5
    assert text(digits.tokenize(["a bold 7"])).shape == (1, 8)


def test_wrong_inputs_name_the_expected_shape():
    with pytest.raises(ValueError, match=r"\(B, 64\)"):
        ImageEncoder()(torch.rand(2, 8, 8))
    with pytest.raises(ValueError, match="word ids"):
        TextEncoder()(torch.rand(2, 8))
    with pytest.raises(ValueError, match="patch must divide"):
        ImageEncoder(patch=3)
    with pytest.raises(ValueError, match="temperature"):
        DualEncoder(temperature=0.0)
    with pytest.raises(ValueError, match="token widths"):
        MatchingModel(ImageEncoder(dim=16), TextEncoder(dim=32))


def test_the_logit_scale_starts_at_clips_temperature_and_is_clamped_at_100():
    model = DualEncoder()
    assert model.logit_scale.shape == () and model.logit_scale.requires_grad
    assert math.isclose(model.scale, 1 / 0.07, rel_tol=1e-6)
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    model.clamp_logit_scale()
    assert math.isclose(model.scale, MAX_LOGIT_SCALE, rel_tol=1e-5)
    assert model.loss_parameters() == (model.logit_scale,)
    fixed = DualEncoder(temperature=0.5, learn_temperature=False, bias=-3.0)
    assert not fixed.logit_scale.requires_grad and fixed.logit_bias.item() == -3.0
    assert len(fixed.loss_parameters()) == 2


def test_matching_model_decides_per_pair_and_can_start_frozen():
    torch.manual_seed(0)
    dual = DualEncoder(dim=16)
    scratch = lab.matching_model(None, seed=0)
    aligned = lab.matching_model(dual, seed=0)
    images, tokens = torch.rand(4, 64), digits.tokenize(["a 7"] * 4)
    assert scratch(images, tokens).shape == (4, 2) and aligned(images, tokens).shape == (4, 2)
    assert not any(p.requires_grad for p in aligned.image_encoder.parameters())
    assert all(p.requires_grad for p in scratch.image_encoder.parameters())
    assert aligned.image_encoder is not dual.image_encoder  # a copy: the dual stays as it is


# ----------------------------------------------------------------------------- training

def test_the_loop_calls_the_loss_on_groups_of_the_batch_and_clamps(splits):
    train, _ = splits
    calls = []

    def recording(image_emb, text_emb, logit_scale):
        calls.append(image_emb.shape[0])
        return _mse_loss(image_emb, text_emb, logit_scale) - 10.0 * logit_scale  # raise it

    model = DualEncoder(dim=16)
    pairs = train.subset(range(100))
    history = fit_contrastive(model, pairs, recording, ContrastiveConfig(
        epochs=2, batch_size=32, group_size=8, lr=1.0, progress=False))
    assert calls == [8] * 4 * 3 * 2  # 3 full batches of 32 per epoch, 4 groups each
    assert len(history.loss) == 2 and math.isclose(history.scale[-1], 100.0, rel_tol=1e-5)
    unclamped = DualEncoder(dim=16)
    fit_contrastive(unclamped, pairs, recording, ContrastiveConfig(
        epochs=2, batch_size=32, lr=1.0, clamp=False, progress=False))
    assert unclamped.scale > 100


def test_the_loop_is_seeded_and_refuses_impossible_batches(splits):
    train, _ = splits
    pairs = train.subset(range(64))
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = DualEncoder(dim=16, bias=-1.0)
        runs.append(fit_contrastive(model, pairs, _mse_loss, ContrastiveConfig(
            epochs=2, batch_size=16, progress=False)))
    assert runs[0].loss == runs[1].loss and len(runs[0].bias) == 2
    with pytest.raises(ValueError, match="batch_size"):
        fit_contrastive(model, pairs, _mse_loss, ContrastiveConfig(batch_size=1, progress=False))
    with pytest.raises(ValueError, match="group_size"):
        fit_contrastive(model, pairs, _mse_loss, ContrastiveConfig(
            batch_size=16, group_size=5, progress=False))


def test_embed_gives_unit_vectors_for_any_leading_shape():
    model = DualEncoder(dim=16)
    image_emb, prompt_emb = embed(model, torch.rand(5, 64), digits.prompt_tokens(),
                                  normalize=True)
    assert image_emb.shape == (5, 32) and prompt_emb.shape == (10, 10, 32)
    assert torch.allclose(prompt_emb.norm(dim=-1), torch.ones(10, 10), atol=1e-5)
    assert model.training  # left as it was


# ----------------------------------------------------------------------------- measurements

def test_the_oracle_is_the_ceiling_of_retrieval(splits):
    _, test = splits
    oracle = lab.retrieval(lambda rows: lab.oracle_similarity(test, rows), test, _recall)
    assert set(oracle) == {"image→text R@1", "text→image R@1", "image→text R@5",
                           "text→image R@5"}
    assert 0.1 < oracle["image→text R@1"] < 0.35 and 0.7 < oracle["image→text R@5"] < 0.95
    perfect = lab.retrieval(lambda rows: torch.eye(100), test, _recall)
    assert all(v == 1.0 for v in perfect.values())


def test_modality_gap_and_separation():
    class Same(torch.nn.Module):  # both "encoders" return the same vectors
        def __init__(self):
            super().__init__()
            self.image_encoder = lambda x: x[:, :4]
            self.text_encoder = lambda t: t[:, :4].float()

    data = digits.make_splits(seed=0)[1].subset(range(20))
    data.tokens = (data.images[:, :8] * 100).long()
    data.images = data.tokens.float()
    assert lab.modality_gap(Same(), data) == pytest.approx(0.0, abs=1e-6)
    eye = torch.eye(5)
    assert lab.separated(eye, eye) and not lab.separated(eye, eye.flip(0))


def test_distinct_pairs_and_the_loss_against_scale(splits):
    train, _ = splits
    few = lab.distinct_pairs(train, 64)
    assert len(set(few.captions)) == 64
    with pytest.raises(ValueError, match="different captions"):
        lab.distinct_pairs(train.subset([0, 0, 0]), 2)

    def clip_like(image_emb, text_emb, logit_scale):
        logits = logit_scale.exp() * F.normalize(image_emb, dim=-1) @ F.normalize(text_emb,
                                                                                  dim=-1).T
        return F.cross_entropy(logits, torch.arange(len(logits)))

    losses = lab.loss_against_scale(clip_like, torch.eye(4), torch.eye(4))
    assert len(losses) == len(lab.SCALES)
    assert all(b <= a for a, b in zip(losses, losses[1:]))  # told apart: never rises


# ----------------------------------------------------------------------------- figures

def _history(n=3):
    return ContrastiveHistory(loss=[3.0, 2.0, 1.0][:n], scale=[14.3, 15.0, 16.0][:n])


def test_every_figure_draws(splits, tmp_path):
    train, test = splits
    made = [
        figures.plot_digits(train),
        figures.plot_training({"a": [_history(), _history()], "b": [_history()]}),
        figures.plot_similarity(torch.rand(12, 12) * 2 - 1, test.labels[:12]),
        figures.plot_negatives({"a": {2: {"recall@5": [0.5, 0.6], "zero-shot": [0.8, 0.9]},
                                      128: {"recall@5": [0.7, 0.7], "zero-shot": [0.9, 0.9]}}}),
        figures.plot_zero_shot({"p1": [0.9, 0.92], "p2": [0.88, 0.9]}, [0.93, 0.94],
                               [0.96, 0.97]),
        figures.plot_embeddings({"x": (F.normalize(torch.rand(30, 8), dim=-1),
                                       F.normalize(torch.rand(30, 8), dim=-1))},
                                test.labels[:30]),
        figures.plot_loss_against_scale({"a": [3.0, 2.0, 0.0]}, [1.0, 10.0, 100.0]),
        figures.plot_align_before_fuse({("aligned", 250): [0.6, 0.62],
                                        ("scratch", 250): [0.5, 0.5],
                                        ("aligned", 1000): [0.75, 0.77],
                                        ("scratch", 1000): [0.7, 0.68]}),
    ]
    for i, fig in enumerate(made):
        fig.savefig(tmp_path / f"{i}.png")
        assert (tmp_path / f"{i}.png").stat().st_size > 5000
        plt.close(fig)


def test_pca_keeps_the_two_clouds_apart_when_they_are():
    a = torch.randn(50, 6) * 0.1 + torch.tensor([1.0, 0, 0, 0, 0, 0])
    b = torch.randn(50, 6) * 0.1 - torch.tensor([1.0, 0, 0, 0, 0, 0])
    a2, b2 = figures.pca_2d(a, b)
    assert (a2[:, 0] * b2[:, 0].mean()).lt(0).all()  # the first component separates them


def test_settings_are_the_notebooks():
    assert lab.MAIN.epochs == 20 and lab.MAIN.batch_size == 64 and not lab.MAIN.progress
    assert lab.SWEEP.batch_size == max(lab.GROUP_SIZES) == 128
    assert replace(lab.SWEEP, group_size=2).group_size == 2
