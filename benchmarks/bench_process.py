"""Measurement 5: the whole process, as a user runs it, and where its fixed costs go.

Measurement 1 times the training alone. A user's run also starts Python, imports torch and
matplotlib (both notebooks draw figures) and the course's code, and pays once for torch's first
optimiser step, which imports ``torch._dynamo``. Here each side runs the same job in a fresh
``python`` process, from start to exit: the original notebook's code (``benchmarks/original.py``:
its seeding, data, three models and ``train_model``) and the same job with ``fusionlab``
(``make_splits``, ``seed_everything``, ``fit`` on the three models), each with its own
defaults (progress output included) and the notebook's seed 42. The child process timestamps
its phases; the first optimiser step is taken on a throw-away parameter before the data, so
that the training phases are what measurement 1 measures. The rest of the process's wall time,
measured by the parent, is Python's start-up and exit.

    python -m benchmarks.bench_process original [SEED [EPOCHS]]   # one child run, as JSON
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from .timing import Samples  # the standard library only: the child's clock is not affected

REPO = Path(__file__).resolve().parent.parent

SIDES = ("original", "fusionlab")
MODELS = ("early", "late", "cross_attention")
PHASES = (
    "python start-up and exit",
    "import torch",
    "import matplotlib.pyplot",
    "import the course's code",
    "first optimiser step",
    "data",
    *MODELS,
)
FIXED = PHASES[:5]  # paid once per process, whatever the training


# ----------------------------------------------------------------------------- the child


def child(side: str, seed: int = 42, epochs: int = 30) -> dict:
    """Run one side's job in this (fresh) process; return its phases in seconds and the
    final accuracies. Nothing heavy is imported before the clock starts."""
    phases, accs, threads = {}, {}, None
    clock = time.perf_counter()

    def lap(name):
        nonlocal clock
        now = time.perf_counter()
        phases[name] = now - clock
        clock = now

    import torch

    lap("import torch")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401

    lap("import matplotlib.pyplot")
    if side == "original":
        from benchmarks import original

        lap("import the course's code")
        _first_step(torch.optim.Adam)
        lap("first optimiser step")
        threads = torch.get_num_threads()  # the original trains with torch's default
        original.seed_notebook(seed)
        train_loader, test_loader = original.make_loaders()
        original.build_display_models()
        lap("data")
        for name, cls in original.MODELS.items():
            model = cls().to(original.device)
            _, test_accs = original.train_model(model, train_loader, test_loader, epochs=epochs)
            accs[name] = test_accs[-1]
            lap(name)
    else:
        from fusionlab.data import make_splits
        from fusionlab.models import CrossAttentionFusion, EarlyFusion, LateFusion
        from fusionlab.train import adam, fit
        from fusionlab.utils import get_device, seed_everything, training_threads

        lap("import the course's code")
        threads = training_threads(get_device()) or torch.get_num_threads()  # fit's choice
        _first_step(adam)
        lap("first optimiser step")
        train, test = make_splits(seed)
        lap("data")
        for name, cls in zip(MODELS, (EarlyFusion, LateFusion, CrossAttentionFusion)):
            seed_everything(seed)
            accs[name] = fit(cls(), train, test, seed=seed, epochs=epochs).final_acc
            lap(name)
    return {"phases": phases, "acc": accs, "threads": threads}


def _first_step(make_optimiser):
    """One Adam step on a throw-away parameter: what a process's first step costs once."""
    import torch

    param = torch.zeros(4, requires_grad=True)
    optimiser = make_optimiser([param], lr=1e-3)
    param.sum().backward()
    optimiser.step()


# ----------------------------------------------------------------------------- the parent


def run_once(side: str, seed: int = 42, epochs: int = 30) -> dict:
    """One fresh process of ``side``; its phases, with start-up and exit from the wall time."""
    start = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_process", side, str(seed), str(epochs)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if completed.returncode != 0:
        raise RuntimeError(f"the {side} process failed:\n{completed.stderr[-3000:]}")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    inside = sum(result["phases"].values())
    result["phases"]["python start-up and exit"] = wall - inside
    result["wall"] = wall
    return result


def run(repeats: int, epochs: int = 30, log=print) -> dict:
    """``repeats`` fresh processes of each side; ``epochs`` other than the notebook's 30 only
    to try the code quickly."""
    result = {
        side: {"phases": {p: Samples() for p in PHASES}, "wall": Samples(), "acc": {}}
        for side in SIDES
    }
    for r in range(repeats):
        for side in SIDES:  # alternate, so that a change of load hits both sides
            one = run_once(side, epochs=epochs)
            res = result[side]
            for phase, seconds in one["phases"].items():
                res["phases"][phase].add(seconds)
            res["wall"].add(one["wall"])
            res["acc"] = one["acc"]
            res["threads"] = one["threads"]
            log(f"  process repeat {r + 1}/{repeats} {side}: {one['wall']:.2f} s")
    result["repeats"], result["epochs"] = repeats, epochs
    return result


def _sum(result, side: str, phases) -> Samples:
    per_run = zip(*(result[side]["phases"][p].values for p in phases))
    return Samples([sum(values) for values in per_run])


def ratio(result, phases=None, best: bool = False) -> float:
    """Original over fusionlab: whole wall time, or the sum of ``phases``."""
    o, f = (
        (result[s]["wall"] if phases is None else _sum(result, s, phases)) for s in SIDES
    )
    return o.min / f.min if best else o.median / f.median


def summary(result) -> tuple[str, str, str]:
    o, f = result["original"]["wall"], result["fusionlab"]["wall"]
    return (
        "whole process, start to exit, of the original's job against fusionlab's (no target)",
        f"{o.fmt()} s against {f.fmt()} s: {ratio(result):.2f}x (medians), "
        f"{ratio(result, best=True):.2f}x (fastest runs); fixed costs "
        f"{_sum(result, 'original', FIXED).median:.2f} s and "
        f"{_sum(result, 'fusionlab', FIXED).median:.2f} s",
        "measured",
    )


def markdown(result) -> str:
    o, f = result["original"], result["fusionlab"]
    training = ("data", *MODELS)
    lines = [
        "## 5. The whole process",
        "",
        f"The same job as measurement 1 (one seed, three models, {result['epochs']} epochs), each "
        "side in a fresh "
        "`python` process from start to exit, as a user runs it: the original notebook's code "
        f"(torch's default {o['threads']} thread(s)) and fusionlab's (`make_splits`, `fit`, its "
        f"default {f['threads']} thread(s) while training), seed 42, progress output on. Wall "
        f"seconds, median (min-max) of {result['repeats']} run(s) per side, alternating.",
        "",
        "| phase | original | fusionlab |",
        "|---|---|---|",
    ]
    for p in PHASES:
        lines.append(f"| {p} | {o['phases'][p].fmt()} | {f['phases'][p].fmt()} |")
    lines += [
        f"| fixed costs (the first {len(FIXED)} rows) | {_sum(result, 'original', FIXED).fmt()} "
        f"| {_sum(result, 'fusionlab', FIXED).fmt()} |",
        f"| data and training | {_sum(result, 'original', training).fmt()} "
        f"| {_sum(result, 'fusionlab', training).fmt()} |",
        f"| **whole process** | {o['wall'].fmt()} | {f['wall'].fmt()} |",
        "",
        f"Whole process: the original takes **{ratio(result):.2f}x** fusionlab's wall time on the "
        f"medians ({ratio(result, best=True):.2f}x on the fastest runs), against "
        f"{ratio(result, training):.2f}x for data and training alone. The fixed costs are the "
        "same work on both sides (Python, torch, matplotlib and the first optimiser step, which "
        "imports `torch._dynamo` whatever the optimiser), so they shrink the ratio: fusionlab "
        "itself imports in "
        f"{f['phases'][PHASES[3]].fmt()} s. Final accuracies of the last run: "
        + ", ".join(
            f"{m} {o['acc'][m]:.4f} (original) / {f['acc'][m]:.4f} (fusionlab)" for m in MODELS
        )
        + ".",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    side = sys.argv[1]
    if side not in SIDES:
        sys.exit(f"usage: python -m benchmarks.bench_process {{{','.join(SIDES)}}} [seed]")
    print(json.dumps(child(side, *(int(arg) for arg in sys.argv[2:4]))))
