"""Train one fresh model per seed, all seeds at once, as one stacked ensemble.

    histories = fit_seeds(LateFusion, train, test, seeds=range(10), config=config)

The idea: K copies of a small model do the same ops on different numbers, so do each op once
on K-times-larger tensors. Every ``nn.Linear`` of the K models becomes one batched matmul over
stacked weights ``(K, in, out)``, every ``nn.LayerNorm`` a stacked affine, and every bare
``nn.Parameter`` (a learnable gate) one ``(K, *shape)`` parameter; the K mini-batches travel
concatenated along the batch dimension, model-major (rows ``k*B`` to ``(k+1)*B`` belong to seed
``k``), so every parameter-free op (ReLU, dropout, reshapes, attention within a sample) already
acts on each seed's samples separately. The loss is the sum of the K per-seed mean losses, so
each seed's weights receive exactly that seed's gradient, and one Adam over the stacked tensors
is K independent Adams, since Adam is elementwise. On the course's models this is several times
faster than training the seeds one after the other (measurement 2 of ``benchmarks/RESULTS.md``).

**What is reproduced, and the tolerance.** For each seed:

- the initial weights are identical to a sequential run's (``seed_everything(seed)``, then
  ``make_model()``), and so is the shuffling order of every epoch;
- without dropout, training follows ``fit``'s arithmetic up to the order of float additions
  inside the batched matmuls, so the histories agree to round-off: test accuracies within one
  test sample (in practice equal) and training losses within 1e-3 relative (in practice 1e-6;
  ``tests/core/test_multiseed.py`` asserts both);
- with dropout, the masks of all K seeds are drawn at once from one generator seeded with
  ``seeds[0]``, so they differ from the sequential runs' masks (vmap with
  ``randomness="different"`` has the same limit). The runs are then equally likely outcomes of
  the same training, not the same runs: each seed's final accuracy stays within 2 points of
  the sequential one and the mean over seeds within 0.5 point (asserted in the tests on the
  original dataset). With dropout a seed's history therefore depends on the whole seed list;
  the same list always gives the same histories, and a single seed gives exactly ``fit``'s run.

**Which models stack.** Models whose parameters are all trainable, that have no buffers, whose
forward treats the samples of a batch independently with the batch dimension first, and whose
parameters live in ``nn.Linear`` and ``nn.LayerNorm`` layers or are bare parameters that the
forward broadcasts against per-sample features of their own rank (a gate of shape ``(1,)`` times
``(B, D)`` features). Every model of ``fusionlab.models`` and the notebooks' gated model stack.
Before training, the ensemble's forward pass is compared with each model's own, on copies whose
weights differ from model to model, so a model that breaks the contract is detected rather than
trained wrongly. Models that do not stack (batch norm, convolutions, a bare weight matrix used
in a matmul) train one seed after the other with ``fit``, as ``vectorize=False`` does.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import as_tensors, per_seed
from .train import EarlyStopping, History, TrainConfig, adam, fit, seeded_rng
from .utils import cpu_threads, epoch_bar, get_device, seed_everything, training_threads


class UnstackableModelError(ValueError):
    """The models cannot be trained as one stacked ensemble (the message says why)."""


# ----------------------------------------------------------------------------- stacked layers


class StackedLinear(nn.Module):
    """K ``nn.Linear`` layers as one: ``(K*M, ..., in)`` model-major -> ``(K*M, ..., out)``.

    The weights are stored transposed, ``(K, in, out)``, the layout ``torch.baddbmm`` takes.
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


class StackedParameter(nn.Module):
    """K bare ``nn.Parameter`` of one shape ``S`` as one ``(K, *S)`` parameter.

    ``rows(M)`` hands each of the ``K*M`` model-major rows its own model's value, ``(K*M, *S)``:
    a gate of shape ``(1,)`` becomes ``(K*M, 1)`` and scales each row of ``(K*M, D)`` features by
    its model's gate, as the gate scales each row of ``(M, D)`` in one model.
    """

    def __init__(self, params: Sequence[nn.Parameter]):
        super().__init__()
        self.num_models = len(params)
        self.weight = nn.Parameter(torch.stack([p.detach() for p in params]))  # (K, *S)

    def rows(self, rows_per_model: int) -> torch.Tensor:
        return self.weight.repeat_interleave(rows_per_model, dim=0)  # (K*M, *S)


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
        self.layer_names = []  # modules replaced by a stacked layer
        self.parameter_names = []  # bare parameters, each replaced by a StackedParameter
        self.bare = nn.ModuleList()
        self.bare_slots = []  # (module of the body, attribute) that reads each bare parameter
        for name, module in list(self.body.named_modules()):
            own = [n for n, p in module.named_parameters(recurse=False)]
            if not own:
                continue
            stacked = _stacked_layer([mods[name] for mods in modules])
            if stacked is not None:
                if name == "":  # the model is itself one layer
                    self.body = stacked
                else:
                    parent, _, attr = name.rpartition(".")
                    setattr(self.body.get_submodule(parent), attr, stacked)
                self.layer_names.append(name)
                continue
            for attr in own:
                params = [getattr(mods[name], attr) for mods in modules]
                self.bare.append(StackedParameter(params))
                del module._parameters[attr]  # the forward reads rows(M) there instead
                self.bare_slots.append((module, attr))
                self.parameter_names.append(f"{name}.{attr}" if name else attr)

    def forward(self, *inputs):
        rows_per_model = inputs[0].shape[0] // self.num_models
        for (module, attr), stacked in zip(self.bare_slots, self.bare):
            setattr(module, attr, stacked.rows(rows_per_model))  # (K*M, *S)
        try:
            return self.body(*inputs)
        finally:
            for module, attr in self.bare_slots:  # hold no graph between calls
                setattr(module, attr, None)

    def state_of(self, k: int) -> dict[str, torch.Tensor]:
        """Model k's current weights as a state dict of the original model (detached copies
        on the CPU)."""
        state = {}
        for name in self.layer_names:
            prefix = f"{name}." if name else ""
            for key, value in self.body.get_submodule(name).state_of(k).items():
                state[prefix + key] = value
        for name, stacked in zip(self.parameter_names, self.bare):
            state[name] = stacked.weight[k]
        return {key: value.detach().cpu().clone() for key, value in state.items()}

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
    named = list(models[0].named_parameters(remove_duplicate=False))
    if len(named) != len({id(p) for _, p in named}):
        raise UnstackableModelError("models that share one parameter between layers do not stack")


def stack_models(models: Sequence[nn.Module], example_inputs=None, atol: float = 1e-5):
    """A ``StackedEnsemble`` of ``models``, verified on ``example_inputs``.

    ``example_inputs`` is a tuple of input tensors ``(B, ...)``. The check stacks copies of the
    models whose weights are perturbed differently for each model, so that a forward pass that
    reads another model's weights shows; each copy's own eval-mode output must equal the
    ensemble's slice for that copy to ``atol`` (relative to the output's scale). Otherwise the
    model breaks the contract of the module docstring and ``UnstackableModelError`` is raised.
    """
    ensemble = StackedEnsemble(models)
    if example_inputs is not None:
        _verify(_perturbed_copies(models), example_inputs, atol)
    return ensemble


@torch.no_grad()
def _perturbed_copies(models):
    generator = torch.Generator().manual_seed(0)  # never the global RNG: training is seeded
    copies = [copy.deepcopy(m) for m in models]
    for k, model in enumerate(copies):
        for p in model.parameters():
            p.add_(0.1 * (k + 1) * torch.randn(p.shape, generator=generator).to(p))
    return copies


@torch.no_grad()
def _verify(models, inputs, atol):
    K = len(models)
    ensemble = StackedEnsemble(models).eval()
    for m in models:
        m.eval()
    # each model sees different rows (rolled and scaled), so that the check notices rows
    # swapped between models and statistics taken over the batch
    per_model = [tuple(_variant(t, k) for t in inputs) for k in range(K)]
    want = torch.cat([m(*ts) for m, ts in zip(models, per_model)])
    try:
        got = ensemble(*(torch.cat(ts) for ts in zip(*per_model)))
    except Exception as error:  # e.g. a bare weight matrix that cannot broadcast per row
        raise UnstackableModelError(
            f"the stacked ensemble's forward pass failed ({type(error).__name__}: {error})"
        ) from error
    if got.shape != want.shape:
        raise UnstackableModelError(
            f"the stacked ensemble's output has shape {tuple(got.shape)}, expected "
            f"{tuple(want.shape)}: a parameter's per-model copies do not broadcast as in one model"
        )
    if not torch.allclose(
        got, want, atol=atol * (1.0 + want.abs().max().item()), rtol=0.0
    ):
        raise UnstackableModelError(
            "the stacked ensemble's output differs from the models' own: the forward pass must "
            "treat the samples of a batch independently, with the batch dimension first"
        )


def _variant(t: torch.Tensor, k: int) -> torch.Tensor:
    t = t.roll(k, dims=0)
    return t * (1.0 + 0.25 * k) if t.is_floating_point() else t


# ----------------------------------------------------------------------------- training


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
    """Train one fresh model per seed: ``seed_everything(seed)``, ``make_model()``, train.

    Returns the ``History`` of every seed, or ``(histories, models)`` with ``return_models``,
    the trained models in seed order (the very objects ``make_model`` returned). ``overrides``
    replace single fields of ``config``, as in ``fit``; ``config.patience`` stops each seed on
    its own, and a stopped seed's model keeps the weights it stopped with.

    ``train`` and ``test`` are each one dataset shared by every seed, or a list with one
    dataset per seed (all of the same size), e.g. ``[make_splits(s)[0] for s in seeds]``.

    The seeds train side by side as one stacked ensemble (see the module docstring for what is
    reproduced). A model that does not stack, or ``vectorize=False``, trains the seeds one
    after the other, each run exactly ``fit(model, train, test, config, seed=seed)``.
    """
    config = replace(config or TrainConfig(), **overrides)
    seeds = list(seeds)
    trains = per_seed(train, len(seeds), "train")
    tests = per_seed(test, len(seeds), "test")
    models = []
    for seed in seeds:
        seed_everything(seed)
        models.append(make_model())
    ensemble = None
    if vectorize and seeds:
        example = tuple(t[:8] for t in as_tensors(trains[0])[:-1])
        try:
            ensemble = stack_models(models, example)
        except UnstackableModelError:
            pass  # trained one after the other below
    if ensemble is None:
        histories = [
            fit(model, train_k, test_k, replace(config, seed=seed, desc=f"seed {seed}"))
            for model, train_k, test_k, seed in zip(models, trains, tests, seeds)
        ]
    else:
        histories = _fit_stacked(ensemble, trains, tests, seeds, config)
    return (histories, models) if return_models else histories


def _stack_data(datasets, K: int, device) -> tuple[torch.Tensor, ...]:
    """The K datasets as tensors ``(K, n, ...)``; a shared dataset is expanded, not copied."""
    if all(d is datasets[0] for d in datasets):
        return tuple(t.to(device).unsqueeze(0).expand(K, *t.shape) for t in as_tensors(datasets[0]))
    tensors = [as_tensors(d) for d in datasets]
    shapes = {tuple(tuple(t.shape) for t in ts) for ts in tensors}
    if len(shapes) != 1:
        raise ValueError(f"the per-seed datasets must all have the same shapes, got {shapes}")
    return tuple(torch.stack(ts).to(device) for ts in zip(*tensors))


def _fit_stacked(ensemble, trains, tests, seeds, config) -> list[History]:
    """``fit``'s loop over the ensemble; leaves the trained weights in the original models."""
    K = len(seeds)
    device = get_device(config.device)
    ensemble.to(device)
    train_tensors = _stack_data(trains, K, device)  # (K, n, ...)
    test_tensors = _stack_data(tests, K, device) if tests[0] is not None else None
    n, batch_size = train_tensors[0].shape[1], config.batch_size
    # one shuffling generator per seed, as BatchIterator(seed=seed) draws them in fit
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    rows = torch.arange(K, device=device)[:, None]
    optimizer = adam(ensemble.parameters(), lr=config.lr)
    histories = [History() for _ in seeds]
    stoppings = [EarlyStopping(config.patience) for _ in seeds]
    stopped = [None] * K  # the weights of the seeds that stopped early

    label = f"{config.desc} ({K} seeds)" if config.desc else f"{K} seeds"
    with (cpu_threads(training_threads(device, config.num_threads)), seeded_rng(seeds[0]),
          epoch_bar(config.epochs, label, config.progress) as bar):
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
                if stopped[k] is not None:
                    continue
                histories[k].train_loss.append(epoch_loss[k])
                if accs is None:
                    continue
                histories[k].test_acc.append(accs[k])
                if stoppings[k].should_stop(accs[k]):
                    histories[k].stopped_early = True
                    stopped[k] = ensemble.state_of(k)
            if accs is not None:
                bar.set_postfix(acc=f"{sum(accs) / K:.4f}")
            if all(state is not None for state in stopped):
                break
    ensemble.unstack()
    with torch.no_grad():
        for model, state in zip(ensemble.models, stopped):
            if state is not None:
                model.load_state_dict(state)
            model.to(device)  # where fit leaves a model
    return histories


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
