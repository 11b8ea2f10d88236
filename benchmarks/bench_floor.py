"""Measurement 4: the floor, microseconds per optimiser step at batch 64 on the CPU.

The floor is one training step (forward, cross-entropy, backward, Adam) of a model on one
fixed batch of 64, in a tight loop, one thread: no data loading, no evaluation, nothing but
the framework. It is measured for fusionlab's models and for the seed notebook's own classes
(the same layers without input validation), with the three Adam implementations: torch's
CPU default (a for-loop over parameters), ``foreach`` and ``fused`` (what ``fit`` uses). A
training loop's per-step cost is then compared with it.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from fusionlab.data import make_splits
from fusionlab.train import TrainConfig, fit
from fusionlab.utils import cpu_threads

from . import original
from .bench_loop import EPOCHS, FUSIONLAB_MODELS, steps_per_epoch
from .timing import Samples, Timer, table_row

OPTIMISERS = {
    "for-loop": {"foreach": False},
    "foreach": {"foreach": True},
    "fused": {"fused": True},
}


def step_us(model, optimiser: str, steps: int, blocks: int) -> Samples:
    """Microseconds per step, one sample per block of ``steps`` steps."""
    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(64, 32, generator=g), torch.randn(64, 16, generator=g)
    labels = torch.randint(0, 3, (64,), generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, **OPTIMISERS[optimiser])
    model.train()

    def step():
        loss = F.cross_entropy(model(img, txt), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(max(20, steps // 10)):
        step()
    samples = Samples()
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        samples.add((time.perf_counter() - start) / steps * 1e6)
    return samples


def run(repeats: int, steps: int = 300, epochs: int = 10, log=print) -> dict:
    result = {"floor": {}, "seed_floor": {}, "fit_no_eval": {}, "steps": steps, "epochs": epochs}
    result["default_threads"] = torch.get_num_threads()
    result["floor_default_threads"] = {}
    for name, cls in FUSIONLAB_MODELS.items():  # the thread claim of default_cpu_threads
        torch.manual_seed(0)
        result["floor_default_threads"][name] = step_us(cls(), "fused", steps, repeats)
    with cpu_threads(1):
        for name, cls in FUSIONLAB_MODELS.items():
            torch.manual_seed(0)
            result["floor"][name] = {o: step_us(cls(), o, steps, repeats) for o in OPTIMISERS}
            torch.manual_seed(0)
            result["seed_floor"][name] = step_us(original.MODELS[name](), "fused", steps, repeats)
            log(
                f"  floor {name}: "
                + ", ".join(f"{o} {s.median:.0f} us" for o, s in result["floor"][name].items())
            )
    train, _ = make_splits(0)
    for name, cls in FUSIONLAB_MODELS.items():
        fit(cls(), train, None, TrainConfig(epochs=1, progress=False))  # warm-up, untimed
        samples = Samples()
        for _ in range(repeats):
            torch.manual_seed(0)
            model = cls()
            with Timer() as t:
                fit(model, train, None, TrainConfig(epochs=epochs, progress=False))
            samples.add(t.wall / (epochs * steps_per_epoch()) * 1e6)
        result["fit_no_eval"][name] = samples
    return result


def summary(result) -> tuple[str, str, str]:
    closeness = [
        result["floor"][m]["fused"].median / result["fit_no_eval"][m].median
        for m in result["floor"]
    ]
    floors = ", ".join(f"{m} {v['fused'].median:.0f}" for m, v in result["floor"].items())
    return (
        "measure the floor (us per step, batch 64, CPU) and how close the loop comes",
        f"floor {floors} us; fit's loop runs at {min(closeness):.0%}-{max(closeness):.0%} "
        "of the floor's speed",
        "measured",
    )


def markdown(result, loop=None, multiseed=None) -> str:
    lines = [
        "## 4. The floor",
        "",
        "Microseconds per optimiser step (forward, cross-entropy, backward, Adam) at batch 64, "
        f"one thread, on one fixed batch: median (min-max) of blocks of {result['steps']} steps. "
        "The seed notebook's classes are the same layers without fusionlab's input checks.",
        "",
        "| model | Adam for-loop (torch's CPU default) | Adam foreach | Adam fused (floor) "
        f"| seed notebook's class, fused | fused, {result['default_threads']} thread(s) "
        "(torch's default) |",
        "|---|---|---|---|---|---|",
    ]
    for m, by_opt in result["floor"].items():
        cells = [by_opt[o].fmt(0) for o in OPTIMISERS]
        cells += [result["seed_floor"][m].fmt(0), result["floor_default_threads"][m].fmt(0)]
        lines.append(table_row(m, *cells))
    lines += [
        "",
        "The loops' cost per step, against the fused floor (floor / loop: 100% would be no "
        "overhead at all). `fit` without a test set is the training loop alone; the others "
        "include the test pass after every epoch (measurements 1 and 2); the original's steps "
        "also run on "
        + (f"{loop['threads']['original']} thread(s)" if loop else "torch's default threads")
        + ". Microseconds per step, medians.",
        "",
        "| model | floor | fit, no test set | fit (measurement 1) | original loop (measurement 1) "
        "| vectorized, per seed (measurement 2) |",
        "|---|---|---|---|---|---|",
    ]
    steps = EPOCHS * steps_per_epoch()
    for m in result["floor"]:
        floor = result["floor"][m]["fused"].median
        no_eval = result["fit_no_eval"][m].median
        cells = [f"{floor:.0f}", f"{no_eval:.0f} ({floor / no_eval:.0%})"]
        for source, side in ((loop, "fusionlab"), (loop, "original")):
            if source is None:
                cells.append("n/a")
            else:
                us = source[side]["wall"][m].median / steps * 1e6
                cells.append(f"{us:.0f} ({floor / us:.0%})")
        if multiseed is None:
            cells.append("n/a")
        else:
            us = (
                multiseed["wall"]["vectorized, 1 thread"][m].median
                / steps
                / multiseed["seeds"]
                * 1e6
            )
            cells.append(f"{us:.0f} ({floor / us:.0%})")
        lines.append(table_row(m, *cells))
    lines += [
        "",
        "A step of these models is a few dozen tiny kernels, so its cost is the framework's "
        "per-op overhead (dispatch, autograd bookkeeping), not arithmetic: one model cannot go "
        "much below the floor in eager PyTorch. Stacking seeds amortises that overhead, which is "
        "why a vectorized seed-step can cost less than the floor.",
        "",
    ]
    return "\n".join(lines)
