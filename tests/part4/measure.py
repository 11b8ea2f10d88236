"""Measurements behind Part 4's claims, per seed: each seed draws its own split and captions and
its own initial weights. The claim tests (``tests/part4/test_claims.py``) import
``measure_seed``; the margins they use were derived from this script's output over 10 seeds
under each of torch's CPU kernel paths::

    for path in default avx2 avx512; do
        ATEN_CPU_CAPABILITY=$path nice -n 10 .venv/bin/python -m tests.part4.measure \\
            --seeds 0 1 2 3 4 5 6 7 8 9 --out part4-$path.json
    done
    .venv/bin/python -m tests.part4.measure --summary part4-*.json

The exercises (the two losses, recall@K, the zero-shot classifier) are the master's solution
cells, executed as they are; every setting is the notebook's (``fusionlab.part4.experiments``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from autograder.authoring.examples import master_namespace
from fusionlab.part4 import data as digits
from fusionlab.part4 import experiments as lab
from fusionlab.part4.models import DualEncoder
from fusionlab.part4.train import embed
from fusionlab.utils import seed_everything
from tests import claims_table

ASSIGNMENT = "part4_align_before_fuse"
SOLUTIONS = ("clip_loss_solution", "recall_at_k_solution", "zero_shot_solution",
             "siglip_loss_solution")

_NOTEBOOK = master_namespace(ASSIGNMENT, SOLUTIONS)
clip_loss = _NOTEBOOK["clip_loss"]
siglip_loss = _NOTEBOOK["siglip_loss"]
recall_at_k = _NOTEBOOK["recall_at_k"]
zero_shot_scores = _NOTEBOOK["zero_shot_scores"]

GROUPS = (2, 4, 16, 128)  # the notebook's group sizes (1, 3, 15 and 127 negatives)
TEMPERATURES = (1.0, 0.2, 0.01)  # the notebook's fixed temperatures
LABELLED = (250, 1000)  # the notebook's labelled pairs
PARTS = ("main", "negatives", "temperature", "clamp", "fuse")


def _recall5(model, test) -> float:
    r = lab.retrieval(lambda rows: lab.similarity(model, test, rows), test, recall_at_k, ks=(5,))
    return (r["image→text R@5"] + r["text→image R@5"]) / 2


def _blocks(model, test, count: int = 40) -> dict[str, float]:
    """Mean similarity of the pairs, of other same-digit combinations and of other digits,
    among the first ``count`` held-out pairs (the notebook's figure)."""
    rows = torch.arange(count)
    sim = lab.similarity(model, test, rows)
    labels = test.labels[rows]
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(count, dtype=torch.bool)
    return {"pairs": sim[eye].mean().item(), "same digit": sim[same & ~eye].mean().item(),
            "other digit": sim[~same].mean().item()}


def _describe(model, train, test, seed: int, probe: bool = False) -> dict:
    out = {"zero-shot": lab.zero_shot_accuracy(model, test, zero_shot_scores),
           "retrieval": lab.retrieval(lambda rows: lab.similarity(model, test, rows), test,
                                      recall_at_k),
           "gap": lab.modality_gap(model, test), "scale": model.scale,
           "pair similarity": lab.mean_similarity(model, test)["pairs"],
           "blocks": _blocks(model, test)}
    if probe:
        single, ensemble = lab.prompt_accuracies(model, test, zero_shot_scores)
        out.update({"single prompts": single.tolist(), "ensemble": ensemble,
                    "probe": lab.linear_probe(model, train, test, seed)})
    return out


def measure_seed(seed: int, parts=PARTS) -> dict:
    """Every claimed number for one seed (its own split, captions and weights)."""
    train, test = digits.make_splits(seed)
    out: dict = {"seed": seed, "seconds": {}}

    def timed(name, compute):
        start = time.process_time()
        out[name] = compute()
        out["seconds"][name] = round(time.process_time() - start, 1)

    clip_model, clip_history = lab.train_dual_encoder(clip_loss, train, seed)
    if "main" in parts:
        def main():
            siglip_model, siglip_history = lab.train_dual_encoder(siglip_loss, train, seed,
                                                                  **lab.SIGLIP)
            seed_everything(seed)
            fresh = DualEncoder()
            return {"clip": {**_describe(clip_model, train, test, seed, probe=True),
                             "loss": clip_history.loss, "scales": clip_history.scale},
                    "siglip": {**_describe(siglip_model, train, test, seed),
                               "loss": siglip_history.loss},
                    "oracle": lab.retrieval(lambda rows: lab.oracle_similarity(test, rows),
                                            test, recall_at_k),
                    "gap before training": lab.modality_gap(fresh, test)}
        timed("main", main)
    if "negatives" in parts:
        timed("negatives", lambda: {
            name: {str(g): {k: v[0] for k, v in r.items()} for g, r in lab.negatives_sweep(
                loss, train, test, recall_at_k, zero_shot_scores, [seed], GROUPS,
                **kwargs).items()}
            for name, loss, kwargs in (("clip", clip_loss, {}),
                                       ("siglip", siglip_loss, lab.SIGLIP))})
    if "temperature" in parts:
        def temperature():
            table = {}
            for tau in TEMPERATURES:
                model, _ = lab.train_dual_encoder(clip_loss, train, seed, temperature=tau,
                                                  learn_temperature=False)
                r = _describe(model, train, test, seed)
                table[str(tau)] = {"zero-shot": r["zero-shot"], "recall@5": _recall5(model, test),
                                   "gap": r["gap"]}
            table["learned"] = {"zero-shot": lab.zero_shot_accuracy(clip_model, test,
                                                                    zero_shot_scores),
                                "recall@5": _recall5(clip_model, test),
                                "gap": lab.modality_gap(clip_model, test),
                                "scale": clip_model.scale}
            return table
        timed("temperature", temperature)
    if "clamp" in parts:
        def clamp():
            few = lab.distinct_pairs(train, lab.CLAMP_PAIRS)
            model, _ = lab.train_dual_encoder(clip_loss, few, seed, lab.MEMORIZE)
            apart = embed(model, few.images, few.tokens, normalize=True)
            batch = train.subset(range(lab.CLAMP_PAIRS))
            ordinary = embed(clip_model, batch.images, batch.tokens, normalize=True)
            apart_losses = lab.loss_against_scale(clip_loss, *apart)
            ordinary_losses = lab.loss_against_scale(clip_loss, *ordinary)
            steps = [b - a for a, b in zip(apart_losses, apart_losses[1:])]
            return {"told apart": float(lab.separated(*apart)),
                    "told apart: largest rise": max(steps),
                    "told apart: loss at 1000": apart_losses[-1],
                    "ordinary: best scale": lab.SCALES[ordinary_losses.index(
                        min(ordinary_losses))],
                    "ordinary: rise after the best": ordinary_losses[-1] - min(ordinary_losses)}
        timed("clamp", clamp)
    if "fuse" in parts:
        timed("fuse", lambda: {f"{start} {n}": runs[0] for (start, n), runs in
                               lab.align_before_fuse([clip_model], train, test, LABELLED,
                                                     [seed]).items()})
    return out


# ----------------------------------------------------------------------------- claims

def claimed(run: dict) -> dict[str, float]:
    """The quantities the notebook's sentences are about, for one measured seed (a
    ``measure_seed`` result): the claim tests bound each of them; ``--claims`` shows their
    range over the measured runs, from which the bounds were set."""
    main, negatives, temperature = run["main"], run["negatives"], run["temperature"]
    clip, siglip, oracle = main["clip"], main["siglip"], main["oracle"]
    single = clip["single prompts"]
    out = {
        "clip loss drop, epochs 2 to 4": 1 - clip["loss"][3] / clip["loss"][1],
        "siglip loss drop, epochs 2 to 4": 1 - siglip["loss"][3] / siglip["loss"][1],
        "clip final scale": clip["scale"],
        "same digit - other digit": clip["blocks"]["same digit"] - clip["blocks"]["other digit"],
        "pairs - same digit": clip["blocks"]["pairs"] - clip["blocks"]["same digit"],
        "other digit similarity": clip["blocks"]["other digit"],
        "probe - zero-shot": clip["probe"] - clip["ensemble"],
        "ensemble - mean single prompt": clip["ensemble"] - sum(single) / len(single),
        "best single prompt - ensemble": max(single) - clip["ensemble"],
        "word - numeral prompts": sum(single[0::2]) / 5 - sum(single[1::2]) / 5,
        "clip pair similarity": clip["pair similarity"],
        "gap before training": main["gap before training"],
        "gap after training": clip["gap"],
    }
    for name, model in (("clip", clip), ("siglip", siglip)):
        for d in ("image→text", "text→image"):
            out[f"{name} {d} R@5"] = model["retrieval"][f"{d} R@5"]
            out[f"ceiling - {name} {d} R@5"] = oracle[f"{d} R@5"] - model["retrieval"][f"{d} R@5"]
            out[f"{name} {d} R@1"] = model["retrieval"][f"{d} R@1"]
    for d in ("image→text", "text→image"):
        out[f"ceiling {d} R@1"] = oracle[f"{d} R@1"]
    r5 = {name: {int(g): v["recall@5"] for g, v in sweep.items()}
          for name, sweep in negatives.items()}
    for name in ("clip", "siglip"):
        out[f"{name}: R@5 at 127 negatives - at 1"] = r5[name][128] - r5[name][2]
        out[f"{name}: R@5 at 15 negatives - at 127"] = r5[name][16] - r5[name][128]
    out["siglip drop - clip drop (1 negative)"] = (
        out["siglip: R@5 at 127 negatives - at 1"] - out["clip: R@5 at 127 negatives - at 1"])
    out["clip - siglip R@5 at 127 negatives"] = r5["clip"][128] - r5["siglip"][128]
    learned = temperature["learned"]
    for tau in ("1.0", "0.2", "0.01"):
        out[f"zero-shot: tau {tau} - learned"] = (temperature[tau]["zero-shot"]
                                                  - learned["zero-shot"])
        out[f"R@5: tau {tau} - learned"] = temperature[tau]["recall@5"] - learned["recall@5"]
        out[f"gap: tau {tau} - learned"] = temperature[tau]["gap"] - learned["gap"]
    out["gap at tau 0.01"] = temperature["0.01"]["gap"]
    clamp = run["clamp"]
    out.update({f"clamp: {k}": v for k, v in clamp.items()})
    fuse = run["fuse"]
    for n in LABELLED:
        out[f"fuse {n}: aligned"] = fuse[f"aligned {n}"]
        out[f"fuse {n}: scratch"] = fuse[f"scratch {n}"]
        out[f"fuse {n}: aligned - scratch"] = fuse[f"aligned {n}"] - fuse[f"scratch {n}"]
    return out


def claims_summary(paths) -> str:
    """min / mean / max of every claimed quantity per file (one file per kernel path, named by
    it) and over every run of every file."""
    per_file = {}
    for path in paths:
        rows: dict[str, list[float]] = {}
        runs = json.loads(open(path).read())
        for run in runs:
            for key, value in claimed(run).items():
                rows.setdefault(key, []).append(float(value))
        per_file[f"{Path(path).stem} ({len(runs)} seeds)"] = rows
    return claims_table.format_table(per_file)


# ----------------------------------------------------------------------------- summary

def _flatten(value, prefix=""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _flatten(v, f"{prefix}{k}/")
    elif isinstance(value, (int, float)):
        yield prefix.rstrip("/"), float(value)


def summary(paths) -> str:
    """min / mean / max of every number over every seed of every file (one per kernel path)."""
    rows: dict[str, list[float]] = {}
    for path in paths:
        for run in json.loads(open(path).read()):
            for key, value in _flatten({k: v for k, v in run.items()
                                        if k not in ("seed", "seconds")}):
                rows.setdefault(key, []).append(value)
    width = max(len(k) for k in rows)
    lines = [f"{'quantity':{width}}  {'min':>8} {'mean':>8} {'max':>8}  n"]
    for key, values in rows.items():
        lines.append(f"{key:{width}}  {min(values):8.3f} {statistics.fmean(values):8.3f} "
                     f"{max(values):8.3f}  {len(values)}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.part4.measure", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="*", default=list(range(10)))
    parser.add_argument("--parts", nargs="*", default=list(PARTS), choices=PARTS)
    parser.add_argument("--out", default=None, help="write the runs as JSON here")
    parser.add_argument("--summary", nargs="*", default=None, help="summarise JSON files")
    parser.add_argument("--claims", nargs="*", default=None,
                        help="the claimed quantities of JSON files, min / mean / max")
    args = parser.parse_args(argv)
    if args.summary:
        print(summary(args.summary))
        return 0
    if args.claims:
        print(claims_summary(args.claims))
        return 0
    torch.set_num_threads(1)
    print(f"kernel path: {torch.backends.cpu.get_cpu_capability()}", file=sys.stderr)
    runs = []
    for seed in args.seeds:
        runs.append(measure_seed(seed, args.parts))
        print(f"seed {seed}: {runs[-1]['seconds']}", file=sys.stderr, flush=True)
        if args.out:
            with open(args.out, "w") as f:
                json.dump(runs, f)
    if not args.out:
        print(json.dumps(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
