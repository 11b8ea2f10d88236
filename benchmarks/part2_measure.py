"""Measurements that decide what Part 2's notebook may claim (Sort-of-CLEVR, token models).

    nice -n 10 python -m benchmarks.part2_measure [--seeds 3] [--epochs 20] [--only types,mask]

Sections (each over ``--seeds`` seeds; every seed has its own data and its own initial
weights, and the seeds of one model train side by side with ``fusionlab.train.fit_seeds``):

- ``types``: accuracy per question type for every reference model. This also answers whether
  one attention hop suffices for "closest to X" (cross-attention, 1 against 2 layers) and
  whether the Relation Network beats cross-attention on counting;
- ``mask``: the padding-mask ablation: cross-attention trained and tested without the object
  mask, accuracy by amount of padding and the attention mass that lands on padding;
- ``setsize``: trained on 3 to 6 objects (in 8 slots), tested on scenes of exactly 8;
- ``grid``: cross-attention's heads x layers grid.

It prints each result as soon as it is measured (mean +- standard deviation over seeds,
then min and max). The functions are meant for the claim tests too: ``train_seeds`` and
``type_accuracies`` run the same training a test would.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import torch

from fusionlab.multiseed import fit_seeds
from fusionlab.scene_models import (
    CoAttentionFusion,
    FlatEarlyFusion,
    PooledLateFusion,
    RelationNetwork,
    SceneCrossAttention,
)
from fusionlab.scenes import QUESTION_TYPES, SortOfClevr, accuracy_by_type
from fusionlab.train import TrainConfig, predict

SECTIONS = ("types", "mask", "setsize", "grid")
COLUMNS = (*QUESTION_TYPES, "non-relational", "relational", "all")


def factories(num_slots: int) -> dict[str, Callable]:
    """The reference models of Part 2, for scenes with ``num_slots`` slots."""
    return {
        "flat early": lambda: FlatEarlyFusion(num_slots=num_slots),
        "pooled late": PooledLateFusion,
        "cross-attn 1 layer": lambda: SceneCrossAttention(num_layers=1),
        "cross-attn 2 layers": lambda: SceneCrossAttention(num_layers=2),
        "co-attention 1 block": lambda: CoAttentionFusion(num_layers=1),
        "relation network": RelationNetwork,
    }


def splits(seeds: Sequence[int], n_train: int, n_test: int, **kwargs):
    """One (train, test) pair per seed: data seed ``1000 + 2 s`` and ``1001 + 2 s``."""
    trains = [SortOfClevr(n_train, seed=1000 + 2 * s, **kwargs) for s in seeds]
    tests = [SortOfClevr(n_test, seed=1001 + 2 * s, **kwargs) for s in seeds]
    return trains, tests


def train_seeds(make_model, trains, seeds, config: TrainConfig):
    """Train one model per seed (stacked); return the trained models."""
    _, models = fit_seeds(make_model, trains, None, seeds, config, return_models=True)
    return models


def type_accuracies(models, tests) -> dict[str, list[float]]:
    """{column: [accuracy of each seed's model on its own test set]}."""
    per_seed = [accuracy_by_type(predict(m, t), t) for m, t in zip(models, tests)]
    return {c: [acc[c] for acc in per_seed] for c in COLUMNS}


def summary(values: Sequence[float]) -> str:
    mean = statistics.fmean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.3f}±{spread:.3f} [{min(values):.2f},{max(values):.2f}]"


def table(rows: dict[str, dict[str, list[float]]], columns=COLUMNS) -> str:
    lines = ["| model | " + " | ".join(columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    for name, accs in rows.items():
        lines.append(f"| {name} | " + " | ".join(summary(accs[c]) for c in columns) + " |")
    return "\n".join(lines)


def log(message: str = "") -> None:
    print(message, flush=True)


# ----------------------------------------------------------------------------- sections


def section_types(seeds, config, n_train, n_test):
    trains, tests = splits(seeds, n_train, n_test)
    rows = {}
    for name, make in factories(trains[0].num_slots).items():
        started = time.perf_counter()
        rows[name] = type_accuracies(train_seeds(make, trains, seeds, config), tests)
        log(f"  {name}: {time.perf_counter() - started:.0f} s, all {summary(rows[name]['all'])}")
    log(table(rows))
    return rows


@torch.no_grad()
def padding_report(models, tests) -> dict[int, dict[str, list[float]]]:
    """{padded slots: {"acc": per seed, "mass": per seed}}: accuracy and the mean attention
    mass on padded slots (first hop, averaged over heads and over the question's words), by
    the number of padded slots."""
    report: dict[int, dict[str, list[float]]] = {}
    for model, test in zip(models, tests):
        model.eval()
        predictions = predict(model, test)
        model(*test.tensors()[:-1])
        weights = model.attention_maps[0].mean(dim=1)  # (n, L, N)
        on_padding = (weights * test.object_mask[:, None, :]).sum(dim=-1)  # (n, L)
        words = (~test.question_mask).float()
        mass = (on_padding * words).sum(dim=1) / words.sum(dim=1)  # (n,)
        padded = test.object_mask.sum(dim=1)
        correct = (predictions == test.answer).float()
        for p in sorted(set(padded.tolist())):
            rows = padded == p
            entry = report.setdefault(p, {"acc": [], "mass": []})
            entry["acc"].append(correct[rows].mean().item())
            entry["mass"].append(mass[rows].mean().item())
    return report


def section_mask(seeds, config, n_train, n_test, layer_counts=(1, 2)):
    trains, tests = splits(seeds, n_train, n_test, min_objects=2, max_objects=8)
    results = {}
    for layers in layer_counts:
        for use_mask in (True, False):
            name = f"cross-attn {layers} layer(s), {'with' if use_mask else 'WITHOUT'} mask"
            make = lambda: SceneCrossAttention(num_layers=layers, use_object_mask=use_mask)  # noqa: B023
            models = train_seeds(make, trains, seeds, config)
            results[name] = padding_report(models, tests)
            overall = type_accuracies(models, tests)["all"]
            log(f"  {name}: all {summary(overall)}")
            for p, entry in results[name].items():
                log(f"    padded slots {p}: acc {summary(entry['acc'])}, "
                    f"attention on padding {summary(entry['mass'])}")
    return results


def section_setsize(seeds, config, n_train, n_test, names=None):
    trains, tests = splits(seeds, n_train, n_test, min_objects=3, max_objects=6, num_slots=8)
    _, eights = splits(seeds, 1, n_test, min_objects=8, max_objects=8, num_slots=8)
    rows_in, rows_out = {}, {}
    for name, make in factories(8).items():
        if names is not None and name not in names:
            continue
        models = train_seeds(make, trains, seeds, config)
        rows_in[name] = type_accuracies(models, tests)
        rows_out[name] = type_accuracies(models, eights)
        log(f"  {name}: 3-6 objects {summary(rows_in[name]['all'])}, "
            f"8 objects {summary(rows_out[name]['all'])}")
    log("test on 3-6 objects (as trained):")
    log(table(rows_in))
    log("test on 8 objects:")
    log(table(rows_out))
    return rows_in, rows_out


def section_grid(seeds, config, n_train, n_test):
    trains, tests = splits(seeds, n_train, n_test)
    rows = {}
    for layers in (1, 2, 3):
        for heads in (1, 2, 4):
            make = lambda: SceneCrossAttention(num_layers=layers, num_heads=heads)  # noqa: B023
            name = f"{heads} heads x {layers} layers"
            rows[name] = type_accuracies(train_seeds(make, trains, seeds, config), tests)
            log(f"  {name}: all {summary(rows[name]['all'])}, "
                f"closest {summary(rows[name]['closest'])}")
    log(table(rows))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.part2_measure",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--train", type=int, default=6000, help="training samples per seed")
    parser.add_argument("--test", type=int, default=1200, help="test samples per seed")
    parser.add_argument("--only", default=",".join(SECTIONS))
    parser.add_argument("--mask-layers", default="1,2",
                        help="mask: the cross-attention depths to ablate")
    parser.add_argument("--models", default=None,
                        help="setsize: comma-separated model names (default: all)")
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    if set(only) - set(SECTIONS):
        parser.error(f"sections must be among {SECTIONS}")
    torch.set_num_threads(1)
    seeds = list(range(args.seeds))
    config = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                         progress=False)
    log(f"# {' '.join(sys.argv)}\n# seeds {seeds}, {config}, train {args.train}, "
        f"test {args.test}")
    for section in only:
        started = time.perf_counter()
        log(f"\n## {section}")
        extra = {}
        if section == "mask":
            extra["layer_counts"] = [int(n) for n in args.mask_layers.split(",")]
        if section == "setsize" and args.models:
            extra["names"] = [n.strip() for n in args.models.split(",")]
        globals()[f"section_{section}"](seeds, config, args.train, args.test, **extra)
        log(f"({section}: {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
