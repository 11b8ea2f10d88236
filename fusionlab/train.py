"""A training loop that knows nothing of the model, plus evaluation.

Any ``nn.Module`` whose forward takes the dataset's input tensors positionally and returns
logits ``(B, C)`` trains with ``fit``. Data is a dataset with ``.tensors()`` or a tuple of
tensors whose last one holds the labels (see ``fusionlab.data.as_tensors``).

    config = TrainConfig(epochs=30, lr=1e-3, batch_size=64, seed=0)
    history = fit(model, train, test, config)
    history.test_acc[-1]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data import BatchIterator, as_tensors, per_seed
from .utils import cpu_threads, default_cpu_threads, get_device, seed_everything


@dataclass
class TrainConfig:
    """Plain settings for ``fit``. The defaults are the seed notebook's hyperparameters."""

    epochs: int = 30
    lr: float = 1e-3
    batch_size: int = 64
    seed: int = 0  # shuffling order and dropout
    device: str | None = None  # None: cuda, then mps, then cpu
    progress: bool = True  # tqdm bar over epochs
    patience: int | None = None  # stop after this many epochs without a better test accuracy
    num_threads: int | None = None  # CPU threads; None: default_cpu_threads()
    desc: str = "training"  # label of the progress bar


@dataclass
class History:
    """What ``fit`` measured: one entry per epoch run."""

    train_loss: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    stopped_early: bool = False

    @property
    def epochs_run(self) -> int:
        return len(self.train_loss)

    @property
    def final_acc(self) -> float:
        return self.test_acc[-1] if self.test_acc else float("nan")

    @property
    def best_acc(self) -> float:
        return max(self.test_acc) if self.test_acc else float("nan")


def fit(model: nn.Module, train, test=None, config: TrainConfig | None = None, **overrides):
    """Train ``model`` with Adam and cross-entropy; return its ``History``.

    ``overrides`` replace single fields of ``config``: ``fit(model, train, test, epochs=5)``.
    The model's initial weights are the caller's (build it after ``seed_everything``); the
    shuffling order and dropout come from ``config.seed``, so equal seeds give equal histories.
    """
    config = replace(config or TrainConfig(), **overrides)
    device = get_device(config.device)
    threads = (config.num_threads or default_cpu_threads()) if device.type == "cpu" else None
    model.to(device)
    batches = BatchIterator(
        train, config.batch_size, shuffle=True, seed=config.seed, device=device
    )
    test_tensors = tuple(t.to(device) for t in as_tensors(test)) if test is not None else None
    optimizer = adam(model.parameters(), lr=config.lr)
    history = History()
    best, since_best = -1.0, 0

    with cpu_threads(threads), _dropout_seed(config.seed):
        bar = tqdm(range(config.epochs), desc=config.desc, disable=not config.progress)
        for _ in bar:
            model.train()
            total, count = torch.zeros((), device=device), 0
            for *inputs, labels in batches:
                loss = F.cross_entropy(model(*inputs), labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.detach()
                count += 1
            # one host sync per epoch, not per step
            history.train_loss.append(total.item() / count)
            if test_tensors is None:
                continue
            history.test_acc.append(accuracy(model, test_tensors))
            bar.set_postfix(loss=f"{history.train_loss[-1]:.4f}", acc=f"{history.test_acc[-1]:.4f}")
            if config.patience is not None:
                if history.test_acc[-1] > best:
                    best, since_best = history.test_acc[-1], 0
                else:
                    since_best += 1
                    if since_best >= config.patience:
                        history.stopped_early = True
                        break
    return history


def adam(params, lr: float) -> torch.optim.Adam:
    """Adam with torch's fused kernel where this torch and device have one, else the default.

    The fused kernel updates every parameter in one call instead of about ten small ops per
    parameter tensor; on the course's tiny models that saves a quarter to a third of a CPU
    step (see ``benchmarks/RESULTS.md``). The update rule is Adam's either way.
    """
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):  # torch < 2.4 on the CPU, or an odd device
        return torch.optim.Adam(params, lr=lr)


class _dropout_seed:
    """Seed torch's global generator for the duration of training, then restore it, so that
    dropout masks depend on ``config.seed`` and the caller's RNG stream is left untouched."""

    def __init__(self, seed: int):
        self.seed = seed

    def __enter__(self):
        self.state = torch.random.get_rng_state()
        self.cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        torch.manual_seed(self.seed)

    def __exit__(self, *exc):
        torch.random.set_rng_state(self.state)
        if self.cuda_states is not None:
            torch.cuda.set_rng_state_all(self.cuda_states)


def fit_seeds(
    make_model: Callable[[], nn.Module],
    train,
    test,
    seeds: Sequence[int],
    config: TrainConfig | None = None,
    *,
    vectorize: bool = True,
    return_models: bool = False,
    **overrides,
):
    """Train one fresh model per seed: ``seed_everything(seed)``, build, ``fit(seed=seed)``.

    Returns the ``History`` of every seed, or ``(histories, models)`` with ``return_models``.
    ``train`` and ``test`` are one dataset for every seed or a list with one per seed.

    With ``vectorize`` (the default) the seeds train side by side as one stacked model
    (``fusionlab.multiseed``), several times faster. Each seed keeps its initial weights and
    batch order; a model without dropout follows the sequential run to round-off, one with
    dropout draws other masks and matches it in distribution (tolerances in
    ``fusionlab.multiseed``). Either way the same call always gives the same results.
    ``vectorize=False`` trains the seeds one after the other, each run equal to ``fit``'s.
    """
    config = replace(config or TrainConfig(), **overrides)
    if vectorize:
        from .multiseed import fit_seeds_vectorized  # imported here: it builds on this module

        return fit_seeds_vectorized(make_model, train, test, seeds, config,
                                    return_models=return_models)
    seeds = list(seeds)
    trains, tests = per_seed(train, len(seeds), "train"), per_seed(test, len(seeds), "test")
    histories, models = [], []
    for seed, train_k, test_k in zip(seeds, trains, tests):
        seed_everything(seed)
        models.append(make_model())
        run_config = replace(config, seed=seed, desc=f"seed {seed}")
        histories.append(fit(models[-1], train_k, test_k, run_config))
    return (histories, models) if return_models else histories


# ----------------------------------------------------------------------------- evaluation

@torch.no_grad()
def predict(model: nn.Module, data, batch_size: int = 4096) -> torch.Tensor:
    """Predicted class for every sample, on the CPU, with the model in eval mode."""
    tensors = as_tensors(data)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    preds = []
    for *inputs, _ in BatchIterator(tensors, batch_size, device=device):
        preds.append(model(*inputs).argmax(dim=-1).cpu())
    model.train(was_training)
    return torch.cat(preds)


def accuracy(model: nn.Module, data) -> float:
    """Fraction of samples classified correctly."""
    labels = as_tensors(data)[-1].cpu()
    return (predict(model, data) == labels).float().mean().item()


def confusion_from_predictions(labels, predictions, num_classes: int) -> torch.Tensor:
    """Counts ``(C, C)``: row = true class, column = predicted class."""
    labels = torch.as_tensor(labels).long().cpu()
    predictions = torch.as_tensor(predictions).long().cpu()
    if labels.shape != predictions.shape:
        raise ValueError(
            f"labels and predictions must have the same shape, got {tuple(labels.shape)} "
            f"and {tuple(predictions.shape)}"
        )
    index = labels * num_classes + predictions
    return torch.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def per_class_from_confusion(confusion: torch.Tensor) -> list[float]:
    """Recall of each class: the diagonal over the row sums (0 for a class with no samples)."""
    confusion = confusion.double()
    totals = confusion.sum(dim=1).clamp(min=1)
    return (confusion.diagonal() / totals).tolist()


def confusion_matrix(model: nn.Module, data, num_classes: int | None = None) -> torch.Tensor:
    """Confusion matrix of ``model`` on ``data`` (rows: true class, columns: predicted)."""
    labels = as_tensors(data)[-1].cpu()
    num_classes = num_classes or getattr(data, "num_classes", None) or int(labels.max()) + 1
    return confusion_from_predictions(labels, predict(model, data), num_classes)


def per_class_accuracy(model: nn.Module, data, num_classes: int | None = None) -> list[float]:
    """Accuracy within each true class, as a list indexed by class."""
    return per_class_from_confusion(confusion_matrix(model, data, num_classes))
