"""Measurement 1: the seed notebook's training code against ``fusionlab.train.fit``.

Both sides train the same three architectures with the same hyperparameters (Adam 1e-3,
batch 64, 30 epochs, a test-set pass after every epoch). Repeat ``r`` runs the notebook with
``SEED = 42 + r``. Each side generates its own data (timed as the "data" phase), but the
training is paired so that the accuracy comparison measures the loop and nothing else:
``fit`` trains on the original's tensors, from the original model's initial weights (the
parameter names are the same), with ``TrainConfig.seed = 42 + r`` for its shuffling and dropout.
Each side runs as its users run it: the original with torch's default thread count, ``fit``
with its own default (one thread for these tiny models). One untimed epoch of each warms both
up first.
"""

from __future__ import annotations

import contextlib
import copy
import io
import statistics
from functools import cache

import torch

from fusionlab.data import BatchIterator, make_splits
from fusionlab.models import CrossAttentionFusion, EarlyFusion, LateFusion
from fusionlab.train import TrainConfig, fit
from fusionlab.utils import training_threads

from . import original
from .timing import Samples, Timer

FUSIONLAB_MODELS = {
    "early": EarlyFusion,
    "late": LateFusion,
    "cross_attention": CrossAttentionFusion,
}
PHASES = ["data", *FUSIONLAB_MODELS, "total"]
EPOCHS = TrainConfig().epochs  # the seed notebook's 30, also train_model's default


@cache
def steps_per_epoch() -> int:
    """Optimiser steps in one epoch of the notebook's data at its batch size."""
    train, _ = make_splits(0)
    return len(BatchIterator(train, TrainConfig().batch_size))


def run_original(seed: int, epochs: int = EPOCHS):
    """The notebook's cells in order.

    Returns ``({phase: (wall, cpu)}, {model: final accuracy}, paired)`` where ``paired`` holds
    the datasets' tensors and each model's initial weights, for ``run_fusionlab``.
    """
    times, accs, inits = {}, {}, {}
    with contextlib.redirect_stdout(io.StringIO()):  # train_model prints every 10 epochs
        with Timer() as t:
            original.seed_notebook(seed)
            train_loader, test_loader = original.make_loaders()
            original.build_display_models()
        times["data"] = (t.wall, t.cpu)
        for name, cls in original.MODELS.items():
            with Timer() as t:
                model = cls().to(original.device)
                inits[name] = copy.deepcopy(model.state_dict())
                _, test_accs = original.train_model(model, train_loader, test_loader, epochs=epochs)
            times[name], accs[name] = (t.wall, t.cpu), test_accs[-1]
    paired = {
        "train": _tensors(train_loader.dataset),
        "test": _tensors(test_loader.dataset),
        "inits": inits,
    }
    return times, accs, paired


def _tensors(dataset):
    return dataset.img_features, dataset.txt_features, dataset.labels


def run_fusionlab(seed: int, paired: dict, epochs: int = EPOCHS):
    """The same work with fusionlab (see the module docstring); returns the first two dicts."""
    times, accs = {}, {}
    with Timer() as t:
        make_splits(seed)  # fusionlab's own data generation, timed; training uses `paired`
    times["data"] = (t.wall, t.cpu)
    for name, cls in FUSIONLAB_MODELS.items():
        with Timer() as t:
            model = cls()
            model.load_state_dict(paired["inits"][name])
            config = TrainConfig(epochs=epochs, seed=seed, progress=False)
            history = fit(model, paired["train"], paired["test"], config)
        times[name], accs[name] = (t.wall, t.cpu), history.final_acc
    return times, accs


def batch_us(paired: dict, epochs: int = 5) -> dict[str, float]:
    """Microseconds to fetch one training batch: the original's DataLoader (per-sample items
    and the default collate) against fusionlab's BatchIterator (tensor slices)."""
    dataset = original.MultimodalDataset.__new__(original.MultimodalDataset)
    dataset.img_features, dataset.txt_features, dataset.labels = paired["train"]
    dataset.n_samples = len(dataset.labels)
    loader = original.DataLoader(dataset, batch_size=64, shuffle=True)
    iterator = BatchIterator(paired["train"], 64, shuffle=True)
    out = {}
    for name, batches in (("DataLoader", loader), ("BatchIterator", iterator)):
        with Timer() as t:
            for _ in range(epochs):
                for _ in batches:
                    pass
        out[name] = t.wall / (epochs * len(batches)) * 1e6
    return out


def run(repeats: int, log=print) -> dict:
    threads = torch.get_num_threads()
    _, _, paired = run_original(0, epochs=1)
    run_fusionlab(0, paired, epochs=1)
    loader = batch_us(paired)
    result = {
        side: {
            "wall": {p: Samples() for p in PHASES},
            "cpu": {p: Samples() for p in PHASES},
            "acc": {m: [] for m in FUSIONLAB_MODELS},
        }
        for side in ("original", "fusionlab")
    }
    for r in range(repeats):
        seed = 42 + r
        runs = {"original": run_original(seed)}
        runs["fusionlab"] = run_fusionlab(seed, runs["original"][2])
        for side, (times, accs, *_) in runs.items():
            res = result[side]
            for phase, (wall, cpu) in times.items():
                res["wall"][phase].add(wall)
                res["cpu"][phase].add(cpu)
            res["wall"]["total"].add(sum(w for w, _ in times.values()))
            res["cpu"]["total"].add(sum(c for _, c in times.values()))
            for m, a in accs.items():
                res["acc"][m].append(a)
            log(f"  loop repeat {r + 1}/{repeats} {side}: {res['wall']['total'].values[-1]:.2f} s")
    cpu = torch.device("cpu")
    result["threads"] = {"original": threads, "fusionlab": training_threads(cpu)}
    result["batch_us"] = loader
    result["repeats"] = repeats
    return result


def speedup(result, phase: str = "total", best: bool = False) -> float:
    """Original over fusionlab wall time: of the medians, or of the fastest runs (``best``)."""
    o, f = result["original"]["wall"][phase], result["fusionlab"]["wall"][phase]
    return o.min / f.min if best else o.median / f.median


def accuracy_gaps(result) -> dict[str, float]:
    """Mean final accuracy over the repeats, fusionlab minus original, in points."""
    return {
        m: 100
        * (
            statistics.mean(result["fusionlab"]["acc"][m])
            - statistics.mean(result["original"]["acc"][m])
        )
        for m in FUSIONLAB_MODELS
    }


def target_met(result) -> bool:
    """>= 3x on the fastest runs (noise only adds time, so the fastest run of each side is the
    best estimate of its cost on an idle machine) and on the medians, at equal accuracy."""
    fast = min(speedup(result), speedup(result, best=True)) >= 3.0
    return fast and all(abs(g) <= 0.5 for g in accuracy_gaps(result).values())


def summary(result) -> tuple[str, str, str]:
    """(target, result, verdict) for the report's summary table."""
    worst_gap = max(abs(g) for g in accuracy_gaps(result).values())
    return (
        ">= 3x faster than the original's training at equal accuracy (+-0.5 point)",
        f"{speedup(result, best=True):.1f}x (fastest runs), {speedup(result):.1f}x (medians); "
        f"accuracy within {worst_gap:.2f} point",
        "met" if target_met(result) else "NOT met",
    )


def markdown(result) -> str:
    o, f = result["original"], result["fusionlab"]
    lines = [
        "## 1. The original loop against ours",
        "",
        f"Seed notebook code (`benchmarks/original.py`: per-sample dataset from the global RNG, "
        f"`DataLoader`, torch's default {result['threads']['original']} thread(s)) against "
        f"`fusionlab` (`make_splits`, `fit`, {result['threads']['fusionlab']} thread(s), fused "
        f"Adam). Three models, {EPOCHS} epochs of {steps_per_epoch()} steps, "
        f"Adam 1e-3, batch 64, test pass every epoch. Seconds, median (min-max) of "
        f"{result['repeats']} run(s); run r uses seed 42 + r. The data phase is each side's own "
        f"generator; the training phases are paired (same data, same initial weights).",
        "",
        "| phase | original wall | original CPU | fusionlab wall | fusionlab CPU "
        "| speed-up, medians | speed-up, fastest runs |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in PHASES:
        name = f"**{p}**" if p == "total" else p
        lines.append(
            f"| {name} | {o['wall'][p].fmt()} | {o['cpu'][p].fmt()} | {f['wall'][p].fmt()} "
            f"| {f['cpu'][p].fmt()} | {speedup(result, p):.1f}x "
            f"| {speedup(result, p, best=True):.1f}x |"
        )
    gaps = accuracy_gaps(result)
    lines += [
        "",
        "Final test accuracy, mean over the runs (paired: the same data and initial weights on "
        "both sides; the shuffling order and dropout masks differ):",
        "",
        "| model | original | fusionlab | difference (points) |",
        "|---|---|---|---|",
    ]
    for m in FUSIONLAB_MODELS:
        lines.append(
            f"| {m} | {statistics.mean(o['acc'][m]):.4f} | {statistics.mean(f['acc'][m]):.4f} "
            f"| {gaps[m]:+.2f} |"
        )
    verdict = "met" if target_met(result) else "NOT met"
    lines += [
        "",
        f"**Target** (>= 3x faster at equal accuracy, +-0.5 point): **{verdict}**: "
        f"{speedup(result, best=True):.1f}x on the fastest runs' total wall time "
        f"({speedup(result):.1f}x on the medians; the verdict needs both, since CPU contention "
        "slows the original far more than `fit`); accuracy differences "
        + ", ".join(f"{m} {g:+.2f}" for m, g in gaps.items())
        + " points.",
        "",
        "Where the time goes: fetching one batch costs "
        f"{result['batch_us']['DataLoader']:.0f} us with the original's `DataLoader` and "
        f"{result['batch_us']['BatchIterator']:.0f} us with `BatchIterator`; the rest of the "
        "original's step is its for-loop Adam and its threads (measurement 4). `fit` runs close "
        "to the floor of one eager PyTorch step, so on an idle machine the speed-up of one "
        "model's training is bounded by (original step) / (floor): see the fastest runs "
        f"({speedup(result, best=True):.1f}x) and measurement 4. The original suffers more "
        f"under CPU contention: its default {result['threads']['original']} OpenMP thread(s) "
        "spin when another process holds a core, which is where median ratios above the "
        "fastest runs' come from. Going "
        "further needs fewer, larger kernels: several seeds at once (measurement 2), or "
        "compilation (`torch.compile`), whose compile time exceeds these 2-second trainings.",
        "",
    ]
    return "\n".join(lines)
