"""fusionlab.data: the original dataset's distribution, the XOR variant, the batch iterator."""

import math
from functools import partial

import pytest
import torch

from fusionlab.data import BatchIterator, MultimodalDataset, as_tensors, make_splits
from fusionlab.models import EarlyFusion, UnimodalClassifier
from fusionlab.multiseed import fit_seeds

NOISE = 0.3
# class 2's first coordinates are |N(0, 1)| + 0.5: the half-normal's mean and spread
HALF_NORMAL_MEAN = 0.5 + math.sqrt(2 / math.pi)
HALF_NORMAL_STD = math.sqrt(1 - 2 / math.pi)


def unit(dim, k):
    v = torch.zeros(dim)
    v[k] = 1.0
    return v


@pytest.fixture(scope="module")
def big():
    """Many samples, so that sample means sit within a few thousandths of the true ones."""
    return MultimodalDataset(n_samples=30000, seed=123)


def test_shapes_and_sizes_match_the_original():
    ds = MultimodalDataset()
    assert ds.img_features.shape == (3000, 32)
    assert ds.txt_features.shape == (3000, 16)
    assert ds.labels.shape == (3000,) and ds.labels.dtype == torch.long
    assert len(ds) == 3000 and ds.num_classes == 3
    img, txt, label = ds[5]
    assert img.shape == (32,) and txt.shape == (16,) and label.item() == 0


def test_classes_are_balanced_and_the_remainder_goes_to_class_2():
    assert torch.bincount(MultimodalDataset(n_samples=3000).labels).tolist() == [1000] * 3
    assert torch.bincount(MultimodalDataset(n_samples=3001).labels).tolist() == [1000, 1000, 1001]
    # grouped by class, as in the original
    labels = MultimodalDataset(n_samples=600).labels
    assert torch.equal(labels, torch.arange(3).repeat_interleave(200))


@pytest.mark.parametrize(
    "label, img_mean, txt_mean",
    [(0, unit(32, 0), unit(16, 1)), (1, unit(32, 1), unit(16, 0))],
)
def test_class_means_and_noise_of_classes_0_and_1(big, label, img_mean, txt_mean):
    rows = big.labels == label
    n = int(rows.sum())
    tolerance = 5 * NOISE / math.sqrt(n)  # five standard errors
    for feats, mean in ((big.img_features[rows], img_mean), (big.txt_features[rows], txt_mean)):
        assert torch.allclose(feats.mean(0), mean, atol=tolerance)
        centred = feats - mean
        assert centred.std(0).sub(NOISE).abs().max() < 0.02


def test_class_2_is_noise_with_half_normal_first_coordinates(big):
    rows = big.labels == 2
    n = int(rows.sum())
    for feats in (big.img_features[rows], big.txt_features[rows]):
        first = feats[:, 0]
        assert first.min() >= 0.5
        assert abs(first.mean().item() - HALF_NORMAL_MEAN) < 5 * HALF_NORMAL_STD / math.sqrt(n)
        assert abs(first.std().item() - HALF_NORMAL_STD) < 0.02
        rest = feats[:, 1:]
        assert rest.mean(0).abs().max() < 5 * NOISE / math.sqrt(n)
        assert rest.std(0).sub(NOISE).abs().max() < 0.02


def test_generation_depends_on_the_seed_only():
    torch.manual_seed(1)
    a = MultimodalDataset(seed=7)
    torch.manual_seed(2)
    b = MultimodalDataset(seed=7)
    c = MultimodalDataset(generator=torch.Generator().manual_seed(7))
    for x, y, z in zip(a.tensors(), b.tensors(), c.tensors()):
        assert torch.equal(x, y) and torch.equal(x, z)
    assert not torch.equal(a.img_features, MultimodalDataset(seed=8).img_features)


def test_generation_leaves_the_global_rng_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    MultimodalDataset(seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_train_and_test_splits_differ():
    train, test = make_splits(seed=0)
    assert len(train) == 3000 and len(test) == 600
    assert not torch.equal(train.img_features[:600], test.img_features)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"interaction": "and"}, "interaction must be one of"),
        ({"img_dim": 1}, "must be >= 2"),
        ({"seed": None}, "pass a seed"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MultimodalDataset(**kwargs)


# ----------------------------------------------------------------------------- XOR variant

def test_xor_labels_are_the_xor_of_the_signs(xor_splits):
    train, _ = xor_splits
    assert train.num_classes == 2
    assert torch.bincount(train.labels).tolist() == [1500, 1500]
    img_bit = (train.img_features[:, 0] > 0).long()
    txt_bit = (train.txt_features[:, 0] > 0).long()
    # the bits are noisy (noise 0.3 around +-1), so a handful may flip
    agreement = ((img_bit ^ txt_bit) == train.labels).float().mean().item()
    assert agreement > 0.99


def test_xor_carries_no_single_modality_information():
    """Each modality's bit is a fair coin whatever the label: the conditional frequencies of
    the bit given the label stay within sampling error of 1/2."""
    ds = MultimodalDataset(n_samples=40000, interaction="xor", seed=3)
    for feats in (ds.img_features, ds.txt_features):
        bit = (feats[:, 0] > 0).float()
        for label in (0, 1):
            freq = bit[ds.labels == label].mean().item()
            assert abs(freq - 0.5) < 4 * 0.5 / math.sqrt(20000)
        # nor does any other coordinate's mean depend on the label
        gap = feats[ds.labels == 0].mean(0) - feats[ds.labels == 1].mean(0)
        assert gap[1:].abs().max() < 0.02


SEEDS = [0, 1, 2, 3, 4]


@pytest.mark.slow
def test_on_xor_unimodal_models_score_chance_and_early_fusion_solves_it(xor_splits):
    train, test = xor_splits
    for modality, dim in (("img", 32), ("txt", 16)):
        runs = fit_seeds(partial(UnimodalClassifier, dim, num_classes=2, modality=modality),
                         train, test, SEEDS, epochs=15, progress=False)
        accs = [h.final_acc for h in runs]
        assert all(abs(a - 0.5) < 0.08 for a in accs), (modality, accs)
    runs = fit_seeds(lambda: EarlyFusion(num_classes=2), train, test, SEEDS, epochs=15,
                     progress=False)
    accs = [h.final_acc for h in runs]
    assert min(accs) >= 0.9, accs


# ----------------------------------------------------------------------------- batches

def test_batches_cover_every_sample_once_per_epoch():
    ds = MultimodalDataset(n_samples=300, seed=0)
    batches = BatchIterator(ds, batch_size=64, shuffle=True, seed=0)
    assert len(batches) == 5
    for _ in range(2):
        parts = list(batches)
        assert [p[0].shape[0] for p in parts] == [64, 64, 64, 64, 44]
        seen = torch.cat([p[0] for p in parts])
        assert torch.equal(seen.sort(dim=0).values, ds.img_features.sort(dim=0).values)
        # rows stay paired: each batch row's image finds its dataset row, whose text and
        # label must come along with it
        for img, txt, label in parts:
            rows = (img[:, None, :] == ds.img_features[None]).all(-1).float().argmax(1)
            assert torch.equal(ds.txt_features[rows], txt)
            assert torch.equal(ds.labels[rows], label)


def test_shuffling_is_reproducible_and_changes_each_epoch():
    ds = MultimodalDataset(n_samples=200, seed=0)
    first = [b[2] for b in BatchIterator(ds, 50, shuffle=True, seed=3)]
    again = [b[2] for b in BatchIterator(ds, 50, shuffle=True, seed=3)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    two_epochs = BatchIterator(ds, 200, shuffle=True, seed=3)
    epoch1, epoch2 = next(iter(two_epochs))[0], next(iter(two_epochs))[0]
    assert not torch.equal(epoch1, epoch2)


def test_batches_without_shuffle_keep_order_and_drop_last():
    ds = MultimodalDataset(n_samples=100, seed=0)
    parts = list(BatchIterator(ds, 30, drop_last=True))
    assert len(parts) == 3
    assert torch.equal(torch.cat([p[0] for p in parts]), ds.img_features[:90])


def test_batches_move_to_the_device():
    # "meta" tensors have a shape but no data: a device that every machine has, other than cpu
    ds = MultimodalDataset(n_samples=10, seed=0)
    batches = list(BatchIterator(ds, 4, shuffle=True, device="meta"))
    assert all(t.device.type == "meta" for batch in batches for t in batch)
    assert [batch[0].shape for batch in batches] == [(4, 32), (4, 32), (2, 32)]


def test_as_tensors_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="first dimension"):
        as_tensors((torch.zeros(3, 2), torch.zeros(4)))
    with pytest.raises(TypeError, match="tensors"):
        as_tensors([1, 2, 3])
