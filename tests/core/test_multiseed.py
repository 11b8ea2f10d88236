"""fusionlab.multiseed: K seeds trained as one stacked ensemble reproduce K sequential runs.

The tolerance is the one the module docstring states: without dropout the histories agree to
round-off (accuracies within one test sample, losses within 1e-3 relative); with dropout the
masks differ, so each seed's final accuracy agrees within 2 points and the mean within 0.5.
"""

import statistics
from dataclasses import replace

import pytest
import torch
import torch.nn as nn

from fusionlab.data import make_splits
from fusionlab.models import CrossAttentionFusion, EarlyFusion, LateFusion
from fusionlab.multiseed import StackedEnsemble, UnstackableModelError, fit_seeds, stack_models
from fusionlab.train import TrainConfig, accuracy, fit
from fusionlab.utils import seed_everything

QUICK = TrainConfig(epochs=4, progress=False)


def sequential_runs(make_model, train, test, seeds, config):
    """The reference: one ``fit`` per seed, as ``fit_seeds`` runs them when it does not stack
    them (written out so that the reference never is the code under test)."""
    histories = []
    for seed in seeds:
        seed_everything(seed)
        histories.append(fit(make_model(), train, test, replace(config, seed=seed)))
    return histories


def assert_histories_close(vectorized, sequential, n_test):
    assert len(vectorized) == len(sequential)
    for v, s in zip(vectorized, sequential):
        assert v.epochs_run == s.epochs_run
        assert v.stopped_early == s.stopped_early
        assert v.test_acc == pytest.approx(s.test_acc, abs=1.0 / n_test + 1e-6)
        assert v.train_loss == pytest.approx(s.train_loss, rel=1e-3)


def build(cls, seeds):
    models = []
    for seed in seeds:
        seed_everything(seed)
        models.append(cls())
    return models


# ----------------------------------------------------------------------------- the ensemble


@pytest.mark.parametrize("cls", [EarlyFusion, LateFusion, CrossAttentionFusion])
def test_ensemble_forward_equals_each_model(cls):
    models = build(cls, [0, 1, 2])
    for m in models:
        m.eval()
    ensemble = stack_models(models).eval()
    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(3 * 5, 32, generator=g), torch.randn(3 * 5, 16, generator=g)
    with torch.no_grad():
        got = ensemble(img, txt).view(3, 5, -1)
        for k, m in enumerate(models):
            want = m(img[5 * k : 5 * (k + 1)], txt[5 * k : 5 * (k + 1)])
            torch.testing.assert_close(got[k], want, rtol=1e-5, atol=1e-6)


def test_unstack_round_trips_the_weights():
    models = build(CrossAttentionFusion, [0, 1])
    before = [{n: p.clone() for n, p in m.state_dict().items()} for m in models]
    ensemble = StackedEnsemble(models)
    with torch.no_grad():  # train a little: perturb the stacked weights
        for p in ensemble.parameters():
            p.add_(1.0)
    ensemble.unstack()
    for m, old in zip(models, before):
        for name, value in m.state_dict().items():
            torch.testing.assert_close(value, old[name] + 1.0)


class GateModel(nn.Module):
    """A bare nn.Parameter gate, as in the notebook's GatedFusionModel."""

    def __init__(self):
        super().__init__()
        self.img_proj = nn.Linear(32, 8)
        self.txt_proj = nn.Linear(16, 8)
        self.gate = nn.Parameter(torch.zeros(1))
        self.classifier = nn.Linear(8, 3)

    def forward(self, img, txt):
        alpha = torch.sigmoid(self.gate)  # (1,)
        return self.classifier(alpha * self.img_proj(img) + (1 - alpha) * self.txt_proj(txt))


class FirstGateModel(GateModel):
    """Reads ``alpha[0]``: in the ensemble that is model 0's gate for every model."""

    def forward(self, img, txt):
        alpha = torch.sigmoid(self.gate)[0]
        return self.classifier(alpha * self.img_proj(img) + (1 - alpha) * self.txt_proj(txt))


class BareMatrixModel(nn.Module):
    """A bare weight matrix used in a matmul: its per-row copies give other shapes."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(32 + 16, 3) * 0.1)

    def forward(self, img, txt):
        return torch.cat([img, txt], dim=-1) @ self.weight


class TemperatureModel(nn.Module):
    """A scalar parameter: its per-row copies ``(K*M,)`` do not broadcast against ``(K*M, C)``."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(32 + 16, 3)
        self.temperature = nn.Parameter(torch.tensor(1.0))

    def forward(self, img, txt):
        return self.proj(torch.cat([img, txt], dim=-1)) / self.temperature


class BatchMixingModel(nn.Module):
    """Subtracts the batch mean: samples are not independent, so stacking would be wrong."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(32 + 16, 3)

    def forward(self, img, txt):
        x = torch.cat([img, txt], dim=-1)
        return self.proj(x - x.mean(dim=0))


def test_a_bare_parameter_stacks_and_round_trips():
    models = build(GateModel, [0, 1, 2])
    with torch.no_grad():
        for k, m in enumerate(models):
            m.gate.fill_(float(k))  # a different gate per model
    ensemble = stack_models(models, (torch.randn(8, 32), torch.randn(8, 16)))
    assert ensemble.parameter_names == ["gate"]
    assert ensemble.bare[0].weight.shape == (3, 1)
    assert [ensemble.state_of(k)["gate"].item() for k in range(3)] == [0.0, 1.0, 2.0]
    with torch.no_grad():
        ensemble.bare[0].weight.add_(0.5)
    ensemble.unstack()
    assert [m.gate.item() for m in models] == [0.5, 1.5, 2.5]


def test_unstackable_models_are_detected():
    inputs = (torch.randn(8, 32), torch.randn(8, 16))
    with pytest.raises(UnstackableModelError, match="independently"):
        stack_models(build(BatchMixingModel, [0, 1]), inputs)
    # equal gates at initialisation: only the check's per-model perturbation shows the mix-up
    with pytest.raises(UnstackableModelError, match="differs"):
        stack_models(build(FirstGateModel, [0, 1]), inputs)
    with pytest.raises(UnstackableModelError, match=r"shape \(16, 16, 3\), expected \(16, 3\)"):
        stack_models(build(BareMatrixModel, [0, 1]), inputs)
    with pytest.raises(UnstackableModelError, match="forward pass failed.*RuntimeError"):
        stack_models(build(TemperatureModel, [0, 1]), inputs)
    with pytest.raises(UnstackableModelError, match="buffers"):
        StackedEnsemble([nn.BatchNorm1d(4), nn.BatchNorm1d(4)])
    frozen = build(LateFusion, [0, 1])
    for m in frozen:
        m.fusion_head[0].weight.requires_grad_(False)
    with pytest.raises(UnstackableModelError, match="frozen"):
        StackedEnsemble(frozen)
    tied = build(LateFusion, [0, 1])
    for m in tied:
        m.txt_encoder[2].weight = m.img_encoder[2].weight
    with pytest.raises(UnstackableModelError, match="share"):
        StackedEnsemble(tied)


def test_different_architectures_are_rejected():
    with pytest.raises(ValueError, match="same architecture"):
        StackedEnsemble([LateFusion(), LateFusion(embed_dim=16)])


# ----------------------------------------------------------------------------- training


@pytest.mark.parametrize("cls", [LateFusion, CrossAttentionFusion])
def test_dropout_free_models_reproduce_sequential_runs(cls, original_splits):
    train, test = original_splits
    seeds = [0, 1, 2]
    vectorized = fit_seeds(cls, train, test, seeds, QUICK)
    sequential = sequential_runs(cls, train, test, seeds, QUICK)
    assert_histories_close(vectorized, sequential, len(test))


def test_early_stopping_is_per_seed(original_splits):
    train, test = original_splits
    config = TrainConfig(epochs=12, patience=2, progress=False)
    seeds = [0, 1, 2, 3]
    vectorized = fit_seeds(LateFusion, train, test, seeds, config)
    sequential = sequential_runs(LateFusion, train, test, seeds, config)
    assert any(h.stopped_early for h in sequential)  # the case under test happens
    assert_histories_close(vectorized, sequential, len(test))


def test_models_are_trained_in_place_and_returned(original_splits):
    # the notebook's pattern: make_model records the models it builds, as with fit_seeds
    train, test = original_splits
    config = TrainConfig(epochs=12, patience=2, progress=False)
    built = []

    def build():
        built.append(LateFusion())
        return built[-1]

    histories, models = fit_seeds(
        build, train, test, [0, 1, 2, 3], config, return_models=True
    )
    assert any(h.stopped_early for h in histories)
    assert all(m is b for m, b in zip(models, built))
    for history, model in zip(histories, models):
        # the last recorded accuracy belongs to the weights kept, also for early stops
        assert accuracy(model, test) == pytest.approx(history.final_acc, abs=1e-6)


def test_one_dataset_per_seed_reproduces_sequential_runs():
    seeds = [0, 1, 2]
    splits = [make_splits(seed, n_train=640, n_test=200) for seed in seeds]
    trains, tests = [s[0] for s in splits], [s[1] for s in splits]
    vectorized = fit_seeds(CrossAttentionFusion, trains, tests, seeds, QUICK)
    sequential = []
    for seed, train, test in zip(seeds, trains, tests):
        (history,) = sequential_runs(CrossAttentionFusion, train, test, [seed], QUICK)
        sequential.append(history)
    assert_histories_close(vectorized, sequential, 200)
    with pytest.raises(ValueError, match="one per seed"):
        fit_seeds(LateFusion, trains[:2], None, seeds, QUICK)


@pytest.mark.slow
def test_dropout_model_matches_sequential_in_distribution(original_splits):
    train, test = original_splits
    config = TrainConfig(progress=False)  # the seed notebook's 30 epochs
    seeds = list(range(5))
    vectorized = fit_seeds(EarlyFusion, train, test, seeds, config)
    sequential = sequential_runs(EarlyFusion, train, test, seeds, config)
    for v, s in zip(vectorized, sequential):
        assert v.epochs_run == s.epochs_run == 30
        assert abs(v.final_acc - s.final_acc) <= 0.02
    mean_v = statistics.mean(h.final_acc for h in vectorized)
    mean_s = statistics.mean(h.final_acc for h in sequential)
    assert abs(mean_v - mean_s) <= 0.005


def test_same_seeds_give_identical_histories(original_splits):
    train, test = original_splits
    first = fit_seeds(EarlyFusion, train, test, [3, 4], QUICK)
    second = fit_seeds(EarlyFusion, train, test, [3, 4], QUICK)
    assert [h.train_loss for h in first] == [h.train_loss for h in second]
    assert [h.test_acc for h in first] == [h.test_acc for h in second]


def test_one_seed_with_dropout_is_the_sequential_run(original_splits):
    # with K = 1 the masks come from the same generator, in the same order, as in fit
    train, test = original_splits
    (vectorized,) = fit_seeds(EarlyFusion, train, test, [7], QUICK)
    (sequential,) = sequential_runs(EarlyFusion, train, test, [7], QUICK)
    assert_histories_close([vectorized], [sequential], len(test))


def test_a_model_with_a_bare_parameter_trains_stacked_like_sequential_runs(
    original_splits, capsys
):
    train, test = original_splits
    config = replace(QUICK, progress=True)
    histories, models = fit_seeds(GateModel, train, test, [0, 1, 2], config, return_models=True)
    assert "3 seeds" in capsys.readouterr().err  # one progress bar: the seeds trained stacked
    sequential = sequential_runs(GateModel, train, test, [0, 1, 2], QUICK)
    assert_histories_close(histories, sequential, len(test))
    for seed, model in zip([0, 1, 2], models):  # the gates trained, each its own way
        seed_everything(seed)
        single = GateModel()
        fit(single, train, test, replace(QUICK, seed=seed))
        assert model.gate.item() != 0.0
        torch.testing.assert_close(model.gate, single.gate, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "cls", [FirstGateModel, BareMatrixModel, TemperatureModel, BatchMixingModel]
)
def test_unstackable_models_fall_back_to_sequential_runs(cls, original_splits, capsys):
    train, test = original_splits
    vectorized = fit_seeds(cls, train, test, [0, 1], replace(QUICK, progress=True))
    assert "seed 1" in capsys.readouterr().err  # one progress bar per seed
    sequential = sequential_runs(cls, train, test, [0, 1], QUICK)
    assert [h.train_loss for h in vectorized] == [h.train_loss for h in sequential]
    assert [h.test_acc for h in vectorized] == [h.test_acc for h in sequential]


def test_sequential_runs_on_request_are_fits_runs():
    """``vectorize=False``, with one dataset per seed: each run is exactly ``fit``'s."""
    seeds = [0, 1]
    splits = [make_splits(seed, n_train=300, n_test=90) for seed in seeds]
    trains, tests = [s[0] for s in splits], [s[1] for s in splits]
    histories, models = fit_seeds(EarlyFusion, trains, tests, seeds, QUICK, vectorize=False,
                                  return_models=True)
    for seed, history, model, train, test in zip(seeds, histories, models, trains, tests):
        seed_everything(seed)
        single = EarlyFusion()
        reference = fit(single, train, test, replace(QUICK, seed=seed))
        assert history.train_loss == reference.train_loss
        assert history.test_acc == reference.test_acc
        for a, b in zip(model.state_dict().values(), single.state_dict().values()):
            assert torch.equal(a, b)


def test_no_test_set_and_no_seeds(original_splits):
    train, _ = original_splits
    (history,) = fit_seeds(LateFusion, train, None, [0], QUICK)
    assert history.epochs_run == 4 and history.test_acc == []
    assert fit_seeds(LateFusion, train, None, [], QUICK) == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_stacked_training_runs_on_the_gpu(original_splits):
    train, test = original_splits
    config = replace(QUICK, device="cuda")
    histories, models = fit_seeds(GateModel, train, test, [0, 1], config, return_models=True)
    assert all(next(m.parameters()).device.type == "cuda" for m in models)
    sequential = sequential_runs(GateModel, train, test, [0, 1], config)
    assert_histories_close(histories, sequential, len(test))
