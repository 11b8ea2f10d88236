"""A training loop that knows nothing of the model, plus evaluation.

Any ``nn.Module`` whose forward takes the dataset's input tensors positionally and returns
logits ``(B, C)`` trains with ``fit``. Data is a dataset with ``.tensors()`` or a tuple of
tensors whose last one holds the labels (see ``fusionlab.data.as_tensors``).

    config = TrainConfig(epochs=30, lr=1e-3, batch_size=64, seed=0)
    history = fit(model, train, test, config)
    history.test_acc[-1]

``fit`` is built from small public pieces that ``fusionlab.multiseed`` (several seeds at once)
reuses: ``adam``, ``EarlyStopping``, ``seeded_rng`` and ``fusionlab.utils.training_threads``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import BatchIterator, as_tensors
from .utils import cpu_threads, epoch_bar, get_device, training_threads


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
    num_threads: int | None = None  # CPU threads; None: see fusionlab.utils.training_threads
    desc: str | None = None  # label of the progress bar ("training"; fit_seeds: "K seeds")


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
    model.to(device)
    batches = BatchIterator(
        train, config.batch_size, shuffle=True, seed=config.seed, device=device
    )
    test_tensors = tuple(t.to(device) for t in as_tensors(test)) if test is not None else None
    optimizer = adam(model.parameters(), lr=config.lr)
    history = History()
    stopping = EarlyStopping(config.patience)

    with (cpu_threads(training_threads(device, config.num_threads)), seeded_rng(config.seed),
          epoch_bar(config.epochs, config.desc or "training", config.progress) as bar):
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
            if stopping.should_stop(history.test_acc[-1]):
                history.stopped_early = True
                break
    return history


# ----------------------------------------------------------------------------- building blocks

def adam(params, lr: float):
    """Adam (betas 0.9 and 0.999, eps 1e-8, no weight decay) with torch's fused kernel where
    this torch and device have one (``FusedAdam``), else ``torch.optim.Adam``.

    The fused kernel updates every parameter in one call instead of about ten small ops per
    parameter tensor, which makes a CPU step of the course's tiny models cheaper (measurement 4
    of ``benchmarks/RESULTS.md`` compares the three Adam implementations). The update rule is
    Adam's either way.
    """
    params = list(params)
    try:
        return FusedAdam(params, lr=lr)
    except (AttributeError, RuntimeError, TypeError, ValueError):  # no fused kernel here
        return torch.optim.Adam(params, lr=lr)


class FusedAdam:
    """The update of ``torch.optim.Adam(params, lr, fused=True)``, number for number, without
    ``torch.optim``.

    Why not ``torch.optim.Adam`` itself: its ``step`` imports ``torch._dynamo`` (the compiler),
    about 1.2 s of a fresh process on the CPU, which every notebook kernel, every clean room of
    the grader and every training subprocess of the tests would pay for a model that trains in
    less. This class calls the same fused kernel (``torch._fused_adam_``) on the same state
    (``step`` as a float32 tensor on the parameter's device, then ``exp_avg``, ``exp_avg_sq``),
    so the weights it trains are bit for bit those of ``torch.optim.Adam(fused=True)``
    (``tests/core/test_train.py`` compares them). Parameters without a gradient are skipped, as
    torch's Adam skips them.

    >>> w = torch.nn.Parameter(torch.ones(2))
    >>> opt = FusedAdam([w], lr=0.1)
    >>> w.sum().backward(); opt.step(); [round(v, 4) for v in w.tolist()]
    [0.9, 0.9]
    """

    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        self.params = list(params)
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        self.lr, self.betas, self.eps = lr, betas, eps
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}
        fused = torch._fused_adam_  # AttributeError on a torch without it: the caller falls back
        for device, dtype in {(p.device, p.dtype) for p in self.params}:
            probe = torch.zeros(1, device=device, dtype=dtype)
            fused([probe.clone()], [probe.clone()], [probe.clone()], [probe.clone()], [],
                  [torch.zeros((), device=device)], lr=lr, beta1=betas[0], beta2=betas[1],
                  weight_decay=0.0, eps=eps, amsgrad=False, maximize=False)  # raises if none

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        groups: dict[tuple, tuple[list, ...]] = {}
        for p in self.params:
            if p.grad is None:
                continue
            state = self.state.get(p)
            if state is None:  # as torch's Adam initialises it, on the first step with a gradient
                state = self.state[p] = {
                    "step": torch.zeros((), dtype=torch.float32, device=p.device),
                    "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
            group = groups.setdefault((p.device, p.dtype), ([], [], [], [], []))
            for items, value in zip(group, (p, p.grad, state["exp_avg"], state["exp_avg_sq"],
                                            state["step"])):
                items.append(value)
        beta1, beta2 = self.betas
        for params, grads, exp_avgs, exp_avg_sqs, steps in groups.values():
            torch._foreach_add_(steps, 1)
            torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], steps, lr=self.lr,
                               beta1=beta1, beta2=beta2, weight_decay=0.0, eps=self.eps,
                               amsgrad=False, maximize=False)


class EarlyStopping:
    """Stop after ``patience`` epochs in a row without a better test accuracy (``None``: never).

    >>> stopping = EarlyStopping(patience=2)
    >>> [stopping.should_stop(acc) for acc in (0.5, 0.7, 0.6, 0.7)]
    [False, False, False, True]
    """

    def __init__(self, patience: int | None):
        self.patience = patience
        self.best = float("-inf")
        self.epochs_since_best = 0

    def should_stop(self, acc: float) -> bool:
        """Record one epoch's accuracy; ``True`` once ``patience`` epochs brought no progress."""
        if acc > self.best:
            self.best, self.epochs_since_best = acc, 0
        else:
            self.epochs_since_best += 1
        return self.patience is not None and self.epochs_since_best >= self.patience


@contextlib.contextmanager
def seeded_rng(seed: int):
    """Seed torch's global generators for a block, then restore them.

    Training draws its dropout masks from the global generator: seeding it makes them depend on
    ``config.seed`` alone, and restoring it leaves the caller's random stream untouched.
    """
    state = torch.random.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.random.set_rng_state(state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)


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
