"""fusionlab.part3.data: the switch and absence tasks against slow per-sample references,
seeding, and the missing-modality rule and statistics."""

import math

import pytest
import torch

from fusionlab.models import EarlyFusion, LateFusion
from fusionlab.part3.data import (
    AbsenceDataset,
    RedundantDataset,
    SwitchDataset,
    drop_tokens,
    drop_vectors,
    make_absence_splits,
    make_redundant_splits,
    make_switch_splits,
    missing_mask,
    with_missing,
)


def five_standard_errors(p: float, n: int) -> float:
    return 5 * math.sqrt(p * (1 - p) / n)


# ----------------------------------------------------------------------------- switch task


def first_draws(n, img_dim, txt_dim, noise, seed):
    """The draws both tasks start with, in their order: one coin per sample, then the image
    noise, then the text noise."""
    g = torch.Generator().manual_seed(seed)
    coins = torch.rand(n, generator=g)
    img = torch.randn(n, img_dim, generator=g) * noise
    txt = torch.randn(n, txt_dim, generator=g) * noise
    return coins, img, txt


def slow_switch(n, img_dim, txt_dim, num_classes, signal, noise, p_image, seed):
    """SwitchDataset's definition written sample by sample, from the same random draws."""
    coins, img, txt = first_draws(n, img_dim, txt_dim, noise, seed)
    labels, switch = [], []
    for i in range(n):
        y = i % num_classes
        m = int(coins[i] < p_image)
        if m == 1:
            img[i, y] += signal  # the image speaks, the text is noise
        else:
            txt[i, y] += signal
        labels.append(y)
        switch.append(m)
    return img, txt, torch.tensor(labels), torch.tensor(switch)


@pytest.mark.parametrize("num_classes, p_image", [(2, 0.5), (3, 0.8)])
def test_switch_task_matches_its_definition(num_classes, p_image):
    ds = SwitchDataset(301, img_dim=8, txt_dim=5, num_classes=num_classes, signal=1.5,
                       noise=0.4, p_image=p_image, seed=7)
    img, txt, labels, switch = slow_switch(301, 8, 5, num_classes, 1.5, 0.4, p_image, 7)
    assert torch.equal(ds.labels, labels)
    assert torch.equal(ds.switch, switch)
    assert torch.allclose(ds.img_features, img) and torch.allclose(ds.txt_features, txt)
    assert ds.tensors() == (ds.img_features, ds.txt_features, ds.labels)
    assert len(ds) == 301 and ds.num_classes == num_classes


def test_switch_statistics():
    ds = SwitchDataset(40000, num_classes=2, noise=0.5, p_image=0.3, seed=1)
    assert abs(ds.switch.float().mean().item() - 0.3) < five_standard_errors(0.3, 40000)
    assert torch.bincount(ds.labels).tolist() == [20000, 20000]
    for modality, feats, speaks in (("img", ds.img_features, ds.switch == 1),
                                    ("txt", ds.txt_features, ds.switch == 0)):
        for y in (0, 1):
            rows = speaks & (ds.labels == y)
            mean = feats[rows].mean(0)
            expected = torch.zeros(feats.shape[1])
            expected[y] = 1.0
            tolerance = 5 * 0.5 / math.sqrt(int(rows.sum()))
            assert torch.allclose(mean, expected, atol=tolerance), modality
            # the silent modality is centred noise whatever the label
            silent = ~speaks & (ds.labels == y)
            assert feats[silent].mean(0).abs().max() < 5 * 0.5 / math.sqrt(int(silent.sum()))
        assert abs(feats.std().item() - 0.5) < 0.05  # noise, plus a little signal


def test_switch_is_independent_of_the_label():
    ds = SwitchDataset(40000, seed=3)
    for y in (0, 1):
        frac = ds.switch[ds.labels == y].float().mean().item()
        assert abs(frac - 0.5) < five_standard_errors(0.5, 20000)


# ----------------------------------------------------------------------------- absence task


def slow_absence(n, img_dim, txt_dim, noise, seed):
    coins, img, txt = first_draws(n, img_dim, txt_dim, noise, seed)
    labels, mentions = [], []
    for i in range(n):
        y = i % 3
        if y == 0:  # A, mentioned
            img[i, 0] += 1.0
            txt[i, 0] += 1.0
            mentioned = True
        elif y == 1:  # B, mentioned or not
            img[i, 1] += 1.0
            mentioned = bool(coins[i] < 0.5)
            if mentioned:
                txt[i, 1] += 1.0
        else:  # A, not mentioned: nothing added to the text
            img[i, 0] += 1.0
            mentioned = False
        labels.append(y)
        mentions.append(mentioned)
    return img, txt, torch.tensor(labels), torch.tensor(mentions)


def test_absence_task_matches_its_definition():
    ds = AbsenceDataset(302, img_dim=6, txt_dim=4, noise=0.2, seed=5)
    img, txt, labels, mentions = slow_absence(302, 6, 4, 0.2, 5)
    assert torch.equal(ds.labels, labels) and torch.equal(ds.text_mentions, mentions)
    assert torch.allclose(ds.img_features, img) and torch.allclose(ds.txt_features, txt)
    assert ds.num_classes == 3 and len(ds) == 302


def test_absence_class_text_carries_no_feature():
    ds = AbsenceDataset(30000, noise=0.3, seed=2)
    n = int((ds.labels == 2).sum())
    assert not ds.text_mentions[ds.labels == 2].any()
    assert ds.txt_features[ds.labels == 2].mean(0).abs().max() < 5 * 0.3 / math.sqrt(n)
    frac = ds.text_mentions[ds.labels == 1].float().mean().item()
    assert abs(frac - 0.5) < five_standard_errors(0.5, 10000)
    # class 2's image is class 0's
    mean0 = ds.img_features[ds.labels == 0].mean(0)
    mean2 = ds.img_features[ds.labels == 2].mean(0)
    assert torch.allclose(mean0, mean2, atol=10 * 0.3 / math.sqrt(n))


# ----------------------------------------------------------------------------- redundant task


def test_redundant_task_matches_its_definition():
    ds = RedundantDataset(203, img_dim=6, txt_dim=5, num_classes=4, signal=2.0, img_noise=0.7,
                          txt_noise=0.1, seed=8)
    g = torch.Generator().manual_seed(8)
    img = torch.randn(203, 6, generator=g) * 0.7
    txt = torch.randn(203, 5, generator=g) * 0.1
    for i in range(203):
        img[i, i % 4] += 2.0
        txt[i, i % 4] += 2.0
    assert torch.equal(ds.labels, torch.arange(203) % 4)
    assert torch.allclose(ds.img_features, img) and torch.allclose(ds.txt_features, txt)


def test_redundant_task_noise_levels():
    ds = RedundantDataset(40000, seed=1)
    for feats, noise in ((ds.img_features, 0.8), (ds.txt_features, 0.2)):
        centred = feats.clone()
        centred[torch.arange(40000), ds.labels] -= 1.0
        assert abs(centred.std().item() - noise) < 0.01
        assert centred.mean(0).abs().max() < 5 * noise / math.sqrt(40000)


# ----------------------------------------------------------------------------- seeding


@pytest.mark.parametrize("cls", [SwitchDataset, AbsenceDataset, RedundantDataset])
def test_seeding(cls):
    a, b, c = cls(200, seed=4), cls(200, seed=4), cls(200, seed=5)
    assert all(torch.equal(x, y) for x, y in zip(a.tensors(), b.tensors()))
    assert not torch.equal(a.img_features, c.img_features)
    g = torch.Generator().manual_seed(4)
    assert torch.equal(cls(200, seed=None, generator=g).txt_features, a.txt_features)


@pytest.mark.parametrize("cls", [SwitchDataset, AbsenceDataset, RedundantDataset])
def test_the_global_rng_is_neither_used_nor_moved(cls):
    torch.manual_seed(0)
    first = cls(100, seed=1).img_features
    state = torch.random.get_rng_state()
    torch.manual_seed(123)
    assert torch.equal(cls(100, seed=1).img_features, first)
    torch.random.set_rng_state(state)
    cls(100, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    with pytest.raises(ValueError, match="seed or a torch.Generator"):
        cls(100, seed=None)


def test_splits_are_independent_draws():
    for make in (make_switch_splits, make_absence_splits, make_redundant_splits):
        train, test = make(seed=0, n_train=300, n_test=300)
        assert not torch.equal(train.img_features, test.img_features)
        again, _ = make(seed=0, n_train=300, n_test=300)
        assert torch.equal(train.img_features, again.img_features)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="p_image"):
        SwitchDataset(10, p_image=1.5)
    with pytest.raises(ValueError, match="img_dim and txt_dim must be >= 4"):
        SwitchDataset(10, img_dim=3, num_classes=4)
    with pytest.raises(ValueError, match="num_classes"):
        SwitchDataset(10, num_classes=1)


# ----------------------------------------------------------------------------- missing modalities


@pytest.mark.parametrize("n, rate", [(10, 0.0), (10, 0.25), (600, 0.5), (7, 1.0), (0, 0.5)])
def test_missing_mask_has_the_exact_count(n, rate):
    mask = missing_mask(n, rate, seed=0)
    assert mask.dtype == torch.bool and mask.shape == (n,)
    assert int(mask.sum()) == round(rate * n)


def test_missing_mask_is_seeded_uniform_and_nested():
    assert torch.equal(missing_mask(50, 0.3, seed=1), missing_mask(50, 0.3, seed=1))
    assert not torch.equal(missing_mask(50, 0.3, seed=1), missing_mask(50, 0.3, seed=2))
    low, high = missing_mask(100, 0.2, seed=3), missing_mask(100, 0.7, seed=3)
    assert not (low & ~high).any()  # missing at 20% implies missing at 70%
    # every position misses with probability `rate`, over many seeds
    seeds = 3000
    freq = torch.stack([missing_mask(10, 0.3, seed=s) for s in range(seeds)]).float().mean(0)
    assert (freq - 0.3).abs().max() < five_standard_errors(0.3, seeds)
    with pytest.raises(ValueError, match="rate"):
        missing_mask(10, -0.1, seed=0)


def test_drop_vectors_zeroes_exactly_the_missing_rows():
    x = torch.randn(6, 4) + 3.0
    missing = torch.tensor([True, False, False, True, False, False])
    out = drop_vectors(x, missing)
    assert torch.equal(out[missing], torch.zeros(2, 4))
    assert torch.equal(out[~missing], x[~missing])
    assert x.min() > 0  # the input is left alone
    with pytest.raises(ValueError, match=r"shape \(B, D\)"):
        drop_vectors(torch.randn(6, 2, 4), missing)
    with pytest.raises(ValueError, match=r"shape \(B,\) = \(5,\)"):
        drop_vectors(torch.randn(5, 4), missing)


def test_drop_tokens_masks_out_every_token_of_a_missing_sample():
    x = torch.randn(3, 4, 2) + 5.0
    padding = torch.tensor([[False, False, True, True]] * 3)
    missing = torch.tensor([False, True, False])
    tokens, mask = drop_tokens(x, padding, missing)
    assert mask[1].all() and torch.equal(mask[[0, 2]], padding[[0, 2]])
    assert torch.equal(tokens[1], torch.zeros(4, 2))
    assert torch.equal(tokens[[0, 2]], x[[0, 2]])
    tokens, mask = drop_tokens(x, None, missing)
    assert torch.equal(mask, missing[:, None].expand(3, 4))
    with pytest.raises(ValueError, match=r"shape \(B, N\) = \(3, 4\)"):
        drop_tokens(x, torch.zeros(3, 5, dtype=torch.bool), missing)
    with pytest.raises(ValueError, match=r"\(B, N, D\)"):
        drop_tokens(x[:, 0], None, missing)


def test_masked_out_tokens_are_what_the_model_pools_to_zero():
    """EarlyFusion pools raw tokens: a masked-out modality is exactly a zeroed vector. LateFusion
    pools after its encoder: a masked-out modality is a zero embedding."""
    torch.manual_seed(0)
    early, late = EarlyFusion().eval(), LateFusion().eval()
    img, txt = torch.randn(4, 3, 32), torch.randn(4, 5, 16)
    missing = torch.tensor([True, False, True, False])
    txt_tokens, txt_mask = drop_tokens(txt, None, missing)
    with torch.no_grad():
        out = early(img, txt_tokens, None, txt_mask)
        expected = early(img, drop_vectors(txt.mean(dim=1), missing)[:, None])
        assert torch.allclose(out, expected, atol=1e-6)
        out = late(img, txt_tokens, None, txt_mask)
        img_embed = late.img_encoder(img).mean(dim=1)
        txt_embed = drop_vectors(late.txt_encoder(txt).mean(dim=1), missing)
        expected = late.fusion_head(torch.cat([img_embed, txt_embed], dim=-1))
        assert torch.allclose(out, expected, atol=1e-6)


def test_with_missing_drops_one_modality_of_a_dataset():
    ds = SwitchDataset(200, seed=0)
    (img, txt, labels), missing = with_missing(ds, "txt", 0.25, seed=9)
    assert int(missing.sum()) == 50
    assert torch.equal(img, ds.img_features) and torch.equal(labels, ds.labels)
    assert torch.equal(txt[missing], torch.zeros(50, ds.txt_dim))
    assert torch.equal(txt[~missing], ds.txt_features[~missing])
    (img, txt, _), missing_img = with_missing(ds, "img", 0.25, seed=9)
    assert torch.equal(missing_img, missing) and torch.equal(txt, ds.txt_features)
    assert (img[missing] == 0).all()
    with pytest.raises(ValueError, match="modality"):
        with_missing(ds, "audio", 0.5, seed=0)
