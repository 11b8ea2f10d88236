"""Measurements behind Part 1's claims: every model of the notebook over several seeds, on the
original data and on XOR. Each seed draws its own data split and its own initial weights; the
student models (bidirectional, gated) are the master's solution cells, executed as they are; the
training settings are the notebook's. The claim tests (``tests/part1/test_claims.py``) import
``measure`` and ``claimed``; the bounds they use were derived from this script's output over 10
seeds under each of torch's CPU kernel paths::

    for path in default avx2 avx512; do
        ATEN_CPU_CAPABILITY=$path nice -n 10 .venv/bin/python -m tests.part1.measure \\
            --seeds 0 1 2 3 4 5 6 7 8 9 --out part1-$path.json
    done
    .venv/bin/python -m tests.part1.measure --claims part1-*.json

``--claims`` prints, for every claimed quantity, min / mean / max per file (kernel path) and
over all of them (``benchmarks/CLAIMS_MEASUREMENTS.md`` keeps that table).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import time
from dataclasses import replace

import torch

from autograder.authoring.examples import master_namespace
from fusionlab.data import make_splits
from fusionlab.models import (
    CommitteeFusion,
    CrossAttentionFusion,
    EarlyFusion,
    LateFusion,
    UnimodalClassifier,
)
from fusionlab.multiseed import fit_seeds
from fusionlab.results import summarize
from tests import claims_table

STUDENT_CELLS = ("bidirectional_solution", "gated_solution", "bidirectional-model")
SEEDS = tuple(range(10))
# the notebook's own training settings (its cell training-setup, as a student runs it)
with contextlib.redirect_stdout(io.StringIO()):
    _SETTINGS = master_namespace("part1_fusion_strategies", ("training-setup",),
                                 preset={"GRADING": False})
EPOCHS = {"original": _SETTINGS["EPOCHS"], "xor": _SETTINGS["XOR_EPOCHS"]}

FUSION = ("early", "late", "cross-attention", "bidirectional", "gated")  # mix features
DECISION = ("committee",)  # fuses decisions only
UNIMODAL = ("image only", "text only")


def notebook_models() -> dict:
    """The master's solution cells and its BidirectionalFusionModel, run as plain Python (what
    they print, a model's source, is not a measurement)."""
    with contextlib.redirect_stdout(io.StringIO()):
        return master_namespace("part1_fusion_strategies", STUDENT_CELLS)


def factories(num_classes: int) -> dict:
    ns = notebook_models()
    return {
        "early": lambda: EarlyFusion(num_classes=num_classes),
        "late": lambda: LateFusion(num_classes=num_classes),
        "cross-attention": lambda: CrossAttentionFusion(num_classes=num_classes),
        "bidirectional": lambda: ns["BidirectionalFusionModel"](num_classes=num_classes),
        "gated": lambda: ns["GatedFusionModel"](num_classes=num_classes),
        "committee": lambda: CommitteeFusion(num_classes=num_classes),
        "image only": lambda: UnimodalClassifier(32, num_classes=num_classes, modality="img"),
        "text only": lambda: UnimodalClassifier(16, num_classes=num_classes, modality="txt"),
    }


def measure(interaction: str, seeds=SEEDS) -> dict:
    """{model: {"acc": (seeds,), "per_class": (seeds, C), "histories": [...], "models": [...]}}

    Every seed trains on its own data split; the seeds train side by side (``fit_seeds``
    stacks them), and ``fusionlab.results.summarize`` computes the accuracies, as in the
    notebook.
    """
    seeds = list(seeds)
    num_classes = 3 if interaction == "original" else 2
    config = replace(_SETTINGS["config"], epochs=EPOCHS[interaction], progress=False)
    splits = [make_splits(seed=seed, interaction=interaction) for seed in seeds]
    trains, tests = [train for train, _ in splits], [test for _, test in splits]
    results = {}
    for name, make in factories(num_classes).items():
        histories, models = fit_seeds(make, trains, tests, seeds, config, return_models=True)
        summary = summarize(models, histories, tests)
        results[name] = {"acc": summary.accuracy, "per_class": summary.per_class,
                         "histories": histories, "models": models}
    return results


def attention_is_exactly_one(model) -> bool:
    """Are the trained cross-attention model's weights exactly 1 on the seed-0 data?"""
    train, _ = make_splits(seed=0)
    model.eval()
    with torch.no_grad():
        model(train.img_features[:64], train.txt_features[:64])
    return torch.equal(model.last_attn_weights, torch.ones(64, 4, 1, 1))


def runs(original: dict, xor: dict) -> list[dict]:
    """The raw numbers of each seed (JSON-ready): accuracies, per-class accuracies and curves."""
    out = []
    for k in range(len(original["early"]["acc"])):
        run = {"original": {}, "xor": {}}
        for name, entry in original.items():
            history = entry["histories"][k]
            run["original"][name] = {"acc": entry["acc"][k].item(),
                                     "per_class": entry["per_class"][k].tolist(),
                                     "test_acc": list(history.test_acc),
                                     "train_loss": list(history.train_loss)}
        run["attention exactly 1"] = attention_is_exactly_one(
            original["cross-attention"]["models"][k])
        for name, entry in xor.items():
            run["xor"][name] = {"acc": entry["acc"][k].item()}
        out.append(run)
    return out


def claimed(run: dict) -> dict[str, float]:
    """The quantities the notebook's sentences are about, for one seed (a ``runs`` entry): the
    claim tests bound each of them; ``--claims`` shows their range over the measured runs."""
    original, xor = run["original"], run["xor"]
    out = {}
    for name in UNIMODAL:
        out[f"{name}: acc"] = original[name]["acc"]
        for c in range(3):
            out[f"{name}: class {c}"] = original[name]["per_class"][c]
    # the class each modality tells apart, against the two it confuses (image: 0 and 2 look
    # alike; text: 1 and 2)
    image, text = original["image only"]["per_class"], original["text only"]["per_class"]
    out["image only: class 1 - best of classes 0, 2"] = image[1] - max(image[0], image[2])
    out["text only: class 0 - best of classes 1, 2"] = text[0] - max(text[1], text[2])
    mixing = FUSION + DECISION
    for name in mixing:
        out[f"{name}: acc"] = original[name]["acc"]
    for name in mixing:
        out[f"{name}: class 2"] = original[name]["per_class"][2]
    accs = [original[n]["acc"] for n in mixing]
    class_2 = [original[n]["per_class"][2] for n in mixing]
    out["fusion models: best - worst acc"] = max(accs) - min(accs)
    out["fusion models: best - worst class 2"] = max(class_2) - min(class_2)
    out["cross-attention class 2 - best other"] = original["cross-attention"]["per_class"][2] - max(
        original[n]["per_class"][2] for n in mixing if n != "cross-attention")
    out["fusion models: worst - best unimodal acc"] = min(accs) - max(
        original[n]["acc"] for n in UNIMODAL)
    for name in mixing:
        curve, loss = original[name]["test_acc"], original[name]["train_loss"]
        out[f"{name}: acc at epoch 5"] = curve[4]
        out[f"{name}: acc range, epochs 10-30"] = max(curve[9:]) - min(curve[9:])
        out[f"{name}: loss epoch 30 / epoch 10"] = loss[-1] / loss[9]
    out["cross-attention weights exactly 1"] = float(run["attention exactly 1"])
    for name in DECISION + UNIMODAL + FUSION:
        out[f"xor {name}: acc"] = xor[name]["acc"]
    return out


def across_seeds(runs_: list[dict]) -> dict[str, float]:
    """The claimed quantities that are about the spread between seeds, over a list of runs:
    the final accuracy's range and the widest min-to-max band of the test curve from epoch 5."""
    means = [statistics.fmean(r["original"][name]["acc"] for r in runs_)
             for name in FUSION + DECISION]
    out = {"fusion models: best - worst mean acc": max(means) - min(means)}
    for name in FUSION + DECISION:
        finals = [r["original"][name]["acc"] for r in runs_]
        out[f"{name}: seed range of the final acc"] = max(finals) - min(finals)
        curves = torch.tensor([r["original"][name]["test_acc"] for r in runs_])  # (seeds, epochs)
        band = curves.max(dim=0).values - curves.min(dim=0).values
        out[f"{name}: widest band from epoch 5"] = band[4:].max().item()
    return out


def claimed_per_seed(data: dict) -> dict[str, list[float]]:
    """One file's claimed quantities, {quantity: [value per seed]}; the spread between seeds
    is one value per file."""
    rows: dict[str, list[float]] = {}
    for run in data["runs"]:
        for key, value in claimed(run).items():
            rows.setdefault(key, []).append(float(value))
    rows.update({key: [value] for key, value in across_seeds(data["runs"]).items()})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.part1.measure", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="*", default=list(SEEDS))
    parser.add_argument("--out", default=None, help="write the runs as JSON here")
    parser.add_argument("--claims", nargs="*", default=None,
                        help="the claimed quantities of JSON files, min / mean / max")
    args = parser.parse_args(argv)
    if args.claims:
        print(claims_table.format_table(claims_table.per_path(args.claims, claimed_per_seed)))
        return 0
    torch.set_num_threads(1)
    path = torch.backends.cpu.get_cpu_capability()
    print(f"kernel path: {path}", file=sys.stderr)
    start = time.process_time()
    data = {"kernel path": path, "seeds": args.seeds,
            "runs": runs(measure("original", args.seeds), measure("xor", args.seeds)),
            "cpu seconds": round(time.process_time() - start, 1)}
    print(f"{data['cpu seconds']} s CPU", file=sys.stderr)
    text = json.dumps(data)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
