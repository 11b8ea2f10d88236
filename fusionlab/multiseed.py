"""Train K seeds of one architecture at once, as one stacked ensemble.

    histories = fit_seeds_vectorized(LateFusion, train, test, seeds=range(10), config=config)

The idea: K copies of a small model do the same ops on different numbers, so do each op once
on K-times-larger tensors. Every ``nn.Linear`` of the K models becomes one batched matmul over
stacked weights ``(K, in, out)`` and every ``nn.LayerNorm`` a stacked affine; the K
mini-batches travel concatenated along the batch dimension, model-major (rows ``k*B`` to
``(k+1)*B`` belong to seed ``k``), so every parameter-free op (ReLU, dropout, reshapes,
attention within a sample) already acts on each seed's samples separately. The loss is the sum
of the K per-seed mean losses, so each seed's weights receive exactly that seed's gradient,
and one Adam over the stacked tensors is K independent Adams, since Adam is elementwise.

On the course's models this trains 10 seeds in about the time of 2-4 sequential runs
(numbers in ``benchmarks/RESULTS.md``). The seeds may share one dataset or each have their own.

**What is reproduced, and the tolerance.** ``fit_seeds_vectorized(make_model, train, test,
seeds, config)`` is a drop-in for ``fusionlab.train.fit_seeds``: the same ``History`` list,
and the models ``make_model`` returned trained in place. For each seed:

- the initial weights are identical (built the same way: ``seed_everything(seed)``, then
  ``make_model()``), and so is the shuffling order of every epoch;
- without dropout, training follows the same arithmetic up to the order of float additions
  inside the batched matmuls, so the histories agree to round-off: test accuracies within one
  test sample (in practice equal) and training losses within 1e-3 relative (in practice 1e-6;
  ``tests/test_multiseed.py`` asserts both);
- with dropout, the masks of all K seeds are drawn at once from one generator seeded with
  ``seeds[0]``, so they differ from the sequential runs' masks (vmap with
  ``randomness="different"`` has the same limit). The runs are then equally likely outcomes of
  the same training, not the same runs: each seed's final accuracy stays within 2 points of
  the sequential one and the mean over seeds within 0.5 point (asserted in the tests on the
  original dataset; measured: 0.7 and 0.15 at most). With dropout a seed's history therefore
  depends on the whole seed list; the same list always gives the same histories, and a single
  seed gives exactly ``fit``'s run.

**Which models stack.** Any model whose parameters are all trainable and live in
``nn.Linear`` and ``nn.LayerNorm`` layers, that has no buffers, and whose forward treats the
samples of a batch independently with the batch dimension first: every model in
``fusionlab.models``. Before training, a forward pass of the ensemble is compared with each
model's own forward pass, so a model that breaks the contract is detected rather than trained
wrongly. Models that do not stack (a bare ``nn.Parameter`` such as a learnable gate, batch
norm, convolutions) are trained one seed after the other, exactly as
``fusionlab.train.fit_seeds`` trains them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import replace

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data import as_tensors, per_seed
from .train import History, TrainConfig, _dropout_seed, adam, fit
from .utils import cpu_threads, default_cpu_threads, get_device, seed_everything


class UnstackableModelError(ValueError):
    """The models cannot be trained as one stacked ensemble (the message says why)."""


# ----------------------------------------------------------------------------- stacked layers


class StackedLinear(nn.Module):
    """K ``nn.Linear`` layers as one: ``(K*M, ..., in)`` model-major -> ``(K*M, ..., out)``.

    The weights are stored transposed, ``(K, in, out)``, so that the batched matmul reads them
    contiguously (about 10% faster on the CPU than a transposed view).
    """

    def __init__(self, layers: Sequence[nn.Linear]):
        super().__init__()
        self.num_models = len(layers)
        weights = torch.stack([layer.weight.detach().t() for layer in layers])  # (K, in, out)
        self.weight = nn.Parameter(weights.contiguous())
        if layers[0].bias is None:
            self.bias = None
        else:  # (K, 1, out): broadcasts over each model's rows
            biases = torch.stack([layer.bias.detach() for layer in layers])[:, None]
            self.bias = nn.Parameter(biases)

    def forward(self, x):
        rows = x.reshape(self.num_models, -1, x.shape[-1])  # (K, M, in)
        if self.bias is None:
            out = torch.bmm(rows, self.weight)
        else:
            out = torch.baddbmm(self.bias, rows, self.weight)  # (K, M, out)
        return out.reshape(*x.shape[:-1], out.shape[-1])

    def state_of(self, k: int) -> dict[str, torch.Tensor]:
        """Model k's ``weight`` and ``bias`` in ``nn.Linear``'s layout."""
        state = {"weight": self.weight[k].t()}
        if self.bias is not None:
            state["bias"] = self.bias[k, 0]
        return state


class StackedLayerNorm(nn.Module):
    """K ``nn.LayerNorm`` over the last dimension as one: normalise, then each model's affine."""

    def __init__(self, layers: Sequence[nn.LayerNorm]):
        super().__init__()
        self.num_models = len(layers)
        self.normalized_shape = tuple(layers[0].normalized_shape)
        self.eps = layers[0].eps
        weights = torch.stack([layer.weight.detach() for layer in layers])[:, None]  # (K, 1, D)
        self.weight = nn.Parameter(weights)
        if layers[0].bias is None:
            self.bias = None
        else:
            self.bias = nn.Parameter(
                torch.stack([layer.bias.detach() for layer in layers])[:, None]
            )

    def forward(self, x):
        normed = F.layer_norm(x, self.normalized_shape, eps=self.eps)
        rows = normed.reshape(self.num_models, -1, x.shape[-1])  # (K, M, D)
        if self.bias is None:
            out = rows * self.weight
        else:
            out = torch.addcmul(self.bias, rows, self.weight)
        return out.reshape(x.shape)

    def state_of(self, k: int) -> dict[str, torch.Tensor]:
        """Model k's ``weight`` and ``bias`` in ``nn.LayerNorm``'s layout."""
        state = {"weight": self.weight[k, 0]}
        if self.bias is not None:
            state["bias"] = self.bias[k, 0]
        return state


class MaskDropout(nn.Module):
    """``nn.Dropout`` with the mask drawn as ``uniform >= p``: the same distribution as
    ``nn.Dropout``, about twice as fast on the CPU for the ensemble's ``(K*B, D)`` tensors.
    Masks differ from the sequential run's either way (see the module docstring)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        if self.p == 1.0:
            return x * 0.0
        keep = torch.rand_like(x).ge_(self.p).mul_(1.0 / (1.0 - self.p))  # 0 or 1/(1-p)
        return x * keep


def _stacked_layer(layers: Sequence[nn.Module]) -> nn.Module | None:
    first = layers[0]
    if type(first) is nn.Linear:
        return StackedLinear(layers)
    if (
        type(first) is nn.LayerNorm
        and first.elementwise_affine
        and len(first.normalized_shape) == 1
    ):
        return StackedLayerNorm(layers)
    return None


class StackedEnsemble(nn.Module):
    """K models of one architecture as one module (see the module docstring).

    ``ensemble(*inputs)`` takes the K mini-batches concatenated model-major along dimension 0
    and returns the K outputs the same way; ``unstack()`` writes the trained weights back into
    the original models.
    """

    def __init__(self, models: Sequence[nn.Module]):
        super().__init__()
        if len(models) == 0:
            raise ValueError("need at least one model")
        _check_same_architecture(models)
        self.num_models = len(models)
        self.models = list(models)  # a plain list: not registered, not trained through
        self.body = copy.deepcopy(models[0])
        modules = [dict(m.named_modules()) for m in models]
        self.stacked_names = []
        for name, module in list(self.body.named_modules()):
            if not any(True for _ in module.parameters(recurse=False)):
                continue
            stacked = _stacked_layer([mods[name] for mods in modules])
            if stacked is None:
                own = [n for n, _ in module.named_parameters(recurse=False)]
                raise UnstackableModelError(
                    f"module {name or '(root)'!r} ({type(module).__name__}) holds parameters "
                    f"{own} and is not an nn.Linear or an nn.LayerNorm over the last dimension"
                )
            if name == "":  # the model is itself one layer
                self.body = stacked
            else:
                parent, _, attr = name.rpartition(".")
                setattr(self.body.get_submodule(parent), attr, stacked)
            self.stacked_names.append(name)
        for name, module in list(self.body.named_modules()):
            if type(module) is nn.Dropout and name and self.num_models > 1:
                # with one model, keep nn.Dropout: the run is then exactly fit's
                parent, _, attr = name.rpartition(".")
                setattr(
                    self.body.get_submodule(parent) if parent else self.body,
                    attr,
                    MaskDropout(module.p),
                )
        leftovers = [
            n
            for n, _ in self.body.named_parameters()
            if n.rpartition(".")[0] not in self.stacked_names
        ]
        if leftovers:  # e.g. one layer reachable under two names
            raise UnstackableModelError(f"parameters outside stackable layers: {leftovers}")

    def forward(self, *inputs):
        return self.body(*inputs)

    def state_of(self, k: int) -> dict[str, torch.Tensor]:
        """Model k's current weights as a state dict of the original model (detached copies
        on the CPU)."""
        state = {}
        for name in self.stacked_names:
            prefix = f"{name}." if name else ""
            for key, value in self.body.get_submodule(name).state_of(k).items():
                state[prefix + key] = value.detach().cpu().clone()
        return state

    @torch.no_grad()
    def unstack(self) -> list[nn.Module]:
        """Copy the trained weights back into the K original models and return them."""
        for k, model in enumerate(self.models):
            model.load_state_dict(self.state_of(k))
        return self.models


def _check_same_architecture(models):
    shapes = [{n: tuple(p.shape) for n, p in m.state_dict().items()} for m in models]
    if any(s != shapes[0] for s in shapes[1:]):
        raise ValueError(
            "all models must have the same architecture (same parameter names and shapes)"
        )
    if any(True for _ in models[0].buffers()):
        raise UnstackableModelError("models with buffers (e.g. batch norm statistics) do not stack")
    if any(not p.requires_grad for m in models for p in m.parameters()):
        raise UnstackableModelError("models with frozen parameters do not stack")


def stack_models(models: Sequence[nn.Module], example_inputs=None, atol: float = 1e-5):
    """A ``StackedEnsemble`` of ``models``, verified against them on ``example_inputs``.

    ``example_inputs`` is a tuple of input tensors ``(B, ...)``. Each model's own eval-mode
    output on them must equal the ensemble's slice for that model to ``atol`` (relative to
    the output's scale); otherwise the model's forward does not treat samples independently
    and ``UnstackableModelError`` is raised.
    """
    ensemble = StackedEnsemble(models)
    if example_inputs is not None:
        _verify(ensemble, models, example_inputs, atol)
    return ensemble


@torch.no_grad()
def _verify(ensemble, models, inputs, atol):
    K = len(models)
    states = [m.training for m in models] + [ensemble.training]
    for m in models:
        m.eval()
    ensemble.eval()
    try:
        # each model sees different rows (rolled and scaled), so that the check notices rows
        # swapped between models and statistics taken over the batch
        per_model = [tuple(_variant(t, k) for t in inputs) for k in range(K)]
        stacked = tuple(torch.cat(ts) for ts in zip(*per_model))
        got = ensemble(*stacked)
        want = torch.cat([m(*ts) for m, ts in zip(models, per_model)])
    finally:
        for m, training in zip(models, states):
            m.train(training)
        ensemble.train(states[-1])
    if got.shape != want.shape or not torch.allclose(
        got, want, atol=atol * (1.0 + want.abs().max().item()), rtol=0.0
    ):
        raise UnstackableModelError(
            "the stacked ensemble's output differs from the models' own: the forward pass must "
            "treat the samples of a batch independently, with the batch dimension first"
        )


def _variant(t: torch.Tensor, k: int) -> torch.Tensor:
    t = t.roll(k, dims=0)
    return t * (1.0 + 0.25 * k) if t.is_floating_point() else t


def can_stack(models: Sequence[nn.Module], example_inputs=None) -> bool:
    """Whether ``models`` train as one ``StackedEnsemble`` (see ``stack_models``)."""
    try:
        stack_models(models, example_inputs)
    except UnstackableModelError:
        return False
    return True


# ----------------------------------------------------------------------------- training


def fit_seeds_vectorized(
    make_model: Callable[[], nn.Module],
    train,
    test,
    seeds: Sequence[int],
    config: TrainConfig | None = None,
    *,
    return_models: bool = False,
    **overrides,
):
    """Train one fresh model per seed, all seeds at once; return their ``History`` list.

    The drop-in for ``fusionlab.train.fit_seeds``: same arguments, same result type, same
    per-seed initial weights and shuffling (see the module docstring for the tolerance), and,
    as there, the models that ``make_model`` returned are trained in place. Early stopping
    (``config.patience``) stops each seed on its own, as in ``fit``: its history ends and its
    model keeps the weights it stopped with. With ``return_models=True`` the result is
    ``(histories, models)``, the trained models in seed order.

    ``train`` and ``test`` are each one dataset shared by every seed, or a list with one
    dataset per seed (all of the same size), e.g. ``[make_splits(s)[0] for s in seeds]``.
    Models that do not stack are trained one after the other, exactly as ``fit_seeds`` does.
    """
    config = replace(config or TrainConfig(), **overrides)
    seeds = list(seeds)
    if not seeds:
        return ([], []) if return_models else []
    trains = per_seed(train, len(seeds), "train")
    tests = per_seed(test, len(seeds), "test") if test is not None else [None] * len(seeds)
    models = []
    for seed in seeds:  # the same construction as fit_seeds: same initial weights per seed
        seed_everything(seed)
        models.append(make_model())
    try:
        example = tuple(t[:8] for t in as_tensors(trains[0])[:-1])
        ensemble = stack_models(models, example)
    except UnstackableModelError:
        histories = [  # what fit_seeds does, on the models already built
            fit(model, train_k, test_k, replace(config, seed=seed, desc=f"seed {seed}"))
            for model, train_k, test_k, seed in zip(models, trains, tests, seeds)
        ]
    else:
        histories, stopped = _fit_stacked(ensemble, trains, tests, seeds, config)
        ensemble.unstack()
        device = next(ensemble.parameters()).device
        with torch.no_grad():
            for model, state in zip(models, stopped):
                if state is not None:
                    model.load_state_dict(state)
                model.to(device)  # where fit leaves a model
    return (histories, models) if return_models else histories


def _stack_data(datasets, K: int, device) -> tuple[torch.Tensor, ...]:
    """The K datasets as tensors ``(K, n, ...)``; a shared dataset is expanded, not copied."""
    if all(d is datasets[0] for d in datasets):
        return tuple(t.to(device).unsqueeze(0).expand(K, *t.shape) for t in as_tensors(datasets[0]))
    per_seed = [as_tensors(d) for d in datasets]
    shapes = {tuple(tuple(t.shape) for t in tensors) for tensors in per_seed}
    if len(shapes) != 1:
        raise ValueError(f"the per-seed datasets must all have the same shapes, got {shapes}")
    return tuple(torch.stack(ts).to(device) for ts in zip(*per_seed))


def _fit_stacked(ensemble, trains, tests, seeds, config):
    K = len(seeds)
    device = get_device(config.device)
    threads = (config.num_threads or default_cpu_threads()) if device.type == "cpu" else None
    ensemble.to(device)
    train_tensors = _stack_data(trains, K, device)  # (K, n, ...)
    test_tensors = _stack_data(tests, K, device) if tests[0] is not None else None
    n, batch_size = train_tensors[0].shape[1], config.batch_size
    # one shuffling generator per seed, as BatchIterator(seed=seed) draws them in fit
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    rows = torch.arange(K, device=device)[:, None]
    optimizer = adam(ensemble.parameters(), lr=config.lr)
    histories = [History() for _ in seeds]
    best, since_best = [-1.0] * K, [0] * K
    running = [True] * K
    stopped = [None] * K  # the weights of the seeds that stopped early

    with cpu_threads(threads), _dropout_seed(seeds[0]):
        bar = tqdm(range(config.epochs), desc=f"{K} seeds", disable=not config.progress)
        for _ in bar:
            ensemble.train()
            order = torch.stack([torch.randperm(n, generator=g) for g in generators]).to(device)
            shuffled = tuple(t[rows, order] for t in train_tensors)  # (K, n, ...)
            total, count = torch.zeros(K, device=device), 0
            for start in range(0, n, batch_size):
                *inputs, labels = (
                    t[:, start : start + batch_size].reshape(-1, *t.shape[2:]) for t in shuffled
                )  # (K*B, ...), model-major
                logits = ensemble(*inputs)  # (K*B, C)
                losses = F.cross_entropy(logits, labels, reduction="none").view(K, -1).mean(dim=1)
                optimizer.zero_grad(set_to_none=True)
                losses.sum().backward()  # seed k's weights get the gradient of seed k's loss
                optimizer.step()
                total += losses.detach()
                count += 1
            epoch_loss = [x / count for x in total.tolist()]  # one host sync per epoch, as fit
            accs = _accuracies(ensemble, test_tensors) if test_tensors is not None else None
            for k in range(K):
                if not running[k]:
                    continue
                histories[k].train_loss.append(epoch_loss[k])
                if accs is None:
                    continue
                histories[k].test_acc.append(accs[k])
                if config.patience is not None:
                    if accs[k] > best[k]:
                        best[k], since_best[k] = accs[k], 0
                    else:
                        since_best[k] += 1
                        if since_best[k] >= config.patience:
                            histories[k].stopped_early, running[k] = True, False
                            stopped[k] = ensemble.state_of(k)
            if accs is not None:
                bar.set_postfix(acc=f"{sum(accs) / K:.4f}")
            if not any(running):
                break
    return histories, stopped


@torch.no_grad()
def _accuracies(ensemble, test_tensors, chunk: int = 4096) -> list[float]:
    """Test accuracy of each of the K models, computed as ``fusionlab.train.accuracy`` does.

    ``test_tensors`` are ``(K, m, ...)``: seed k is evaluated on its own row.
    """
    ensemble.eval()
    *inputs, labels = test_tensors
    K, m = labels.shape[:2]
    preds = []
    for start in range(0, m, chunk):
        batch = [t[:, start : start + chunk].reshape(-1, *t.shape[2:]) for t in inputs]
        preds.append(ensemble(*batch).argmax(dim=-1).view(K, -1))  # (K, chunk)
    preds = torch.cat(preds, dim=1).cpu()
    return (preds == labels.cpu()).float().mean(dim=1).tolist()
