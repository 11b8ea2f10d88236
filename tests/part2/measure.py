"""Measurements behind Part 2's claims, over several seeds (each seed draws its own data and its
own initial weights). Claim tests import the functions; run the whole set from the repository
root with

    nice -n 10 .venv/bin/python -m tests.part2.measure --seeds 0 1 2 3 4 5 6 7 8 9 --json out.json

and under each of torch's CPU kernel paths (the claims must hold on any CPU):

    for isa in default avx2 avx512; do ATEN_CPU_CAPABILITY=$isa nice -n 10 \
        .venv/bin/python -m tests.part2.measure --seeds 0 1 2 3 4 5 6 7 8 9 --json $isa.json; done

The raw numbers of the last such run are in ``benchmarks/PART2_MEASUREMENTS.md``; each claim
test of ``tests/part2/test_claims.py`` says which range it saw and how its bound was set.

Each function returns plain numbers (lists over seeds); ``main`` prints them as mean ± std and
the CPU time each part took. The models are built with the master notebook's own exercise
solutions (``MaskedMultiHeadAttention``, ``CoAttentionBlock``), as the notebook builds them,
and trained with the notebook's settings (``fusionlab.part2.experiments``).

- ``binding``: the six models on "what shape is X" only; accuracy in distribution (3-6
  objects) and on scenes of 8 objects; the padding-mask ablation (1-layer cross-attention
  trained without the object mask) by number of padded slots;
- ``mix``: the six models on the six question types mixed, at the notebook's short budget;
- ``grid``: cross-attention's heads x layers grid on "what shape is X";
- ``relational``: the Relation Network and 1-layer cross-attention on "what shape is closest
  to X" alone with about 10,000 questions per seed (learning curves, train accuracy), and the
  shortcut "majority shape among the other objects" on the same test questions;
- ``few``: the Relation Network on 1,000 questions of one type (closest; count), for longer.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace

import torch

from autograder.authoring.examples import master_namespace
from fusionlab.multiseed import fit_seeds
from fusionlab.part2 import experiments as lab
from fusionlab.part2.models import (
    CoAttentionFusion,
    FlatEarlyFusion,
    PooledLateFusion,
    RelationNetwork,
    SceneCrossAttention,
)
from fusionlab.part2.scenes import QUESTION_TYPES, answer_balance

ASSIGNMENT = "part2_attention_that_selects"
_NOTEBOOK = master_namespace(ASSIGNMENT, ("attention_solution", "coattention_solution"))
MaskedMultiHeadAttention = _NOTEBOOK["MaskedMultiHeadAttention"]
CoAttentionBlock = _NOTEBOOK["CoAttentionBlock"]

SEEDS = (0, 1, 2, 3, 4)
E = lab.EMBED_DIM
FEW = replace(lab.RELATIONAL, epochs=100)  # 1,000 questions: 100 epochs, 100k sample passes
HEADS = (1, 2, 4)
LAYERS = (1, 2, 3)


def factories(num_slots: int = 6) -> dict:
    """The six models of the notebook, built on the exercise solutions."""
    attention = MaskedMultiHeadAttention
    return {
        "flat early": lambda: FlatEarlyFusion(num_slots=num_slots, hidden_dim=2 * E),
        "pooled late": lambda: PooledLateFusion(embed_dim=E),
        "cross-attn 1 layer": lambda: SceneCrossAttention(embed_dim=E, attention=attention),
        "cross-attn 2 layers": lambda: SceneCrossAttention(embed_dim=E, num_layers=2,
                                                           attention=attention),
        "co-attention": lambda: CoAttentionFusion(embed_dim=E, block=CoAttentionBlock),
        "relation network": lambda: RelationNetwork(hidden_dim=E),
    }


def _train(make, trains, seeds, config):
    return fit_seeds(make, trains, None, seeds, config, return_models=True)[1]


def _junk_accuracy(models, tests) -> list[float]:
    """Accuracy of each seed's model when its test scenes have junk in the padded slots."""
    return [lab.accuracy_per_type([m], [lab.with_junk_in_padding(t, seed=k)])["shape"][0]
            for k, (m, t) in enumerate(zip(models, tests))]


def binding(seeds=SEEDS) -> dict:
    """{model: {"acc": [...], "acc_8": [...] (not for flat early fusion, whose slots are
    fixed)}} on "what shape is X", and "padding": {"with mask" / "without mask":
    padding_report} for the 1-layer cross-attention."""
    trains, tests = lab.scene_splits(seeds, lab.BINDING_SCENES, question_type="shape")
    eights = lab.eight_objects(seeds, question_type="shape")
    results: dict = {}
    for name, make in factories().items():
        models = _train(make, trains, seeds, lab.BINDING)
        entry = {"acc": lab.accuracy_per_type(models, tests)["shape"]}
        if name != "flat early":
            entry["acc_8"] = lab.accuracy_per_type(models, eights)["shape"]
        if name == "cross-attn 1 layer":
            results["padding"] = {"with mask": lab.padding_report(models, tests)}
            entry["acc_junk"] = _junk_accuracy(models, tests)
        results[name] = entry
    unmasked = _train(lambda: SceneCrossAttention(embed_dim=E, use_object_mask=False,
                                                  attention=MaskedMultiHeadAttention),
                      trains, seeds, lab.BINDING)
    results["padding"]["without mask"] = lab.padding_report(unmasked, tests)
    results["cross-attn 1 layer, no mask"] = {
        "acc": lab.accuracy_per_type(unmasked, tests)["shape"],
        "acc_junk": _junk_accuracy(unmasked, tests)}
    return results


def mix(seeds=SEEDS) -> dict:
    """{model: {column: [per seed]}} after the short training on all six question types, and
    "majority baseline": {type: [per seed]} of each seed's training set (as the notebook
    prints it)."""
    trains, tests = lab.scene_splits(seeds, lab.MIX_SCENES)
    results = {name: lab.accuracy_per_type(_train(make, trains, seeds, lab.MIX), tests)
               for name, make in factories().items()}
    balances = [answer_balance(t) for t in trains]
    results["majority baseline"] = {q: [b[q]["baseline"] for b in balances]
                                    for q in QUESTION_TYPES}
    return results


def relational_factories() -> dict:
    """The two models of the relational section, on the exercise solutions."""
    return {"relation network": lambda: RelationNetwork(hidden_dim=E),
            "cross-attn 1 layer": lambda: SceneCrossAttention(
                embed_dim=E, attention=MaskedMultiHeadAttention)}


def relational(seeds=SEEDS, question_type: str = "closest",
               config=lab.RELATIONAL, n_train: int = lab.RELATIONAL_SCENES) -> dict:
    """{model: {"curve": [[test accuracy after each epoch] per seed], "acc": [final, per seed],
    "train": [train accuracy, per seed]}}, and "shortcut": {"acc": [...], "train": [...]}."""
    trains, tests = lab.scene_splits(seeds, n_train, lab.RELATIONAL_TEST_SCENES,
                                     question_type=question_type)
    curves: dict = {}
    models = lab.train_models(relational_factories(), trains, seeds, config, tests, curves)
    results = {}
    for name, trained in models.items():
        results[name] = {"curve": curves[name], "acc": [c[-1] for c in curves[name]],
                         "train": lab.accuracy_per_type(trained, trains)[question_type]}
    results["shortcut"] = {"acc": lab.shortcut_accuracy(tests),
                           "train": lab.shortcut_accuracy(trains)}
    return results


def few(seeds=SEEDS) -> dict:
    """The Relation Network with 1,000 questions of one type (6000 scenes) for 100 epochs:
    {type: {"acc": [...], "train": [...]}} for closest and count."""
    results = {}
    for question_type in ("closest", "count"):
        trains, tests = lab.scene_splits(seeds, lab.BINDING_SCENES, lab.RELATIONAL_TEST_SCENES,
                                         question_type=question_type)
        models = _train(lambda: RelationNetwork(hidden_dim=E), trains, seeds, FEW)
        results[question_type] = {
            "acc": lab.accuracy_per_type(models, tests)[question_type],
            "train": lab.accuracy_per_type(models, trains)[question_type]}
    return results


def grid(seeds=SEEDS, heads=HEADS, layers=LAYERS) -> dict:
    """{(heads, layers): [accuracy per seed]} on "what shape is X"."""
    trains, tests = lab.scene_splits(seeds, lab.GRID_SCENES, question_type="shape")
    results = {}
    for L in layers:
        for H in heads:
            make = lambda: SceneCrossAttention(embed_dim=E, num_heads=H, num_layers=L,  # noqa: B023
                                               attention=MaskedMultiHeadAttention)
            models = _train(make, trains, seeds, lab.GRID)
            results[(H, L)] = lab.accuracy_per_type(models, tests)["shape"]
    return results


# ----------------------------------------------------------------------------- report


def _stats(values) -> str:
    return f"{lab.mean_std(values)} [{min(values):.3f}, {max(values):.3f}]"


def report(name: str, results: dict) -> None:
    if name == "binding":
        print("== what shape is X: accuracy, 3-6 objects | 8 objects")
        for model, entry in results.items():
            if model == "padding":
                continue
            eight = f" | {_stats(entry['acc_8'])}" if "acc_8" in entry else ""
            junk = f" | junk in padding {_stats(entry['acc_junk'])}" if "acc_junk" in entry else ""
            print(f"  {model:<28} {_stats(entry['acc'])}{eight}{junk}")
        for variant, by_padding in results["padding"].items():
            print(f"  cross-attn 1 layer {variant}: by padded slots")
            for p, entry in by_padding.items():
                print(f"    {p}: acc {_stats(entry['acc'])}, attention on padding "
                      f"{_stats(entry['mass'])}")
    elif name == "mix":
        print("== six question types mixed, short training: accuracy per type")
        for model, accs in results.items():
            print(f"  {model}")
            for column, values in accs.items():
                print(f"    {column:<15} {_stats(values)}")
    elif name == "grid":
        print("== heads x layers on what shape is X")
        for (H, L), values in results.items():
            print(f"  {H} heads x {L} layers: {_stats(values)}")
    elif name.startswith("relational"):
        print(f"== {name}: test accuracy | train accuracy")
        for model, entry in results.items():
            print(f"  {model:<20} {_stats(entry['acc'])} | {_stats(entry['train'])}")
    elif name == "few":
        print("== the Relation Network, 1,000 questions, 100 epochs: test | train")
        for question_type, entry in results.items():
            print(f"  {question_type:<10} {_stats(entry['acc'])} | {_stats(entry['train'])}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.part2.measure",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--only", nargs="+", default=["binding", "mix", "grid", "relational",
                                                      "few"],
                        help="also: relational-furthest")
    parser.add_argument("--json", help="also write the raw numbers to this file")
    parser.add_argument("--summarize", nargs="+", metavar="JSON",
                        help="measure nothing: print the range of each claimed quantity over "
                             "these --json files (one per kernel path, same --seeds)")
    parser.add_argument("--notebook-means", nargs="+", metavar="JSON",
                        help="measure nothing: the range of each claim of 6.1-6.6 over single "
                             "runs and over the means of every 3 seeds of these --json files")
    args = parser.parse_args(argv)
    if args.notebook_means:
        notebook_means(args.notebook_means)
        return
    if args.summarize:
        summarize(args.summarize, args.seeds)
        return
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, CPU kernels: {torch.backends.cpu.get_cpu_capability()}")
    functions = {"binding": binding, "mix": mix, "grid": grid, "relational": relational,
                 "relational-furthest": lambda seeds: relational(seeds, "furthest"),
                 "few": few}
    results = {}
    for name in args.only:
        start, cpu = time.perf_counter(), time.process_time()
        results[name] = functions[name](seeds=args.seeds)
        # CPU time is the figure to compare on a shared machine: wall time includes waiting
        print(f"[{name}: {time.perf_counter() - start:.1f} s wall, "
              f"{time.process_time() - cpu:.1f} s CPU]")
        report(name, results[name])
        if args.json:  # after each experiment, so that a long run keeps what it has measured
            with open(args.json, "w") as f:
                json.dump({k: {str(kk): vv for kk, vv in v.items()} for k, v in results.items()},
                          f, indent=1)


# ----------------------------------------------------------------------------- claimed quantities


def few_references(seeds=SEEDS) -> dict:
    """What ``few``'s test questions give without learning anything: the shortcut on closest,
    the majority-class baseline on count (no training: data only)."""
    closest = lab.scene_splits(seeds, lab.BINDING_SCENES, lab.RELATIONAL_TEST_SCENES,
                               question_type="closest")[1]
    count = lab.scene_splits(seeds, lab.BINDING_SCENES, lab.RELATIONAL_TEST_SCENES,
                             question_type="count")[1]
    return {"closest shortcut": lab.shortcut_accuracy(closest),
            "count baseline": [answer_balance(t)["count"]["baseline"] for t in count]}


def claimed(results: dict, seeds) -> dict[str, list[float]]:
    """{quantity: [value per seed]}: the quantities the notebook's sentences claim, from one run of
    ``main``'s experiments (``results`` as ``--json`` writes them)."""
    out: dict[str, list[float]] = {}
    if "binding" in results:
        b = results["binding"]
        for name in (*factories(), "cross-attn 1 layer, no mask"):
            out[f"6.1 {name}"] = b[name]["acc"]
            if "acc_8" in b[name]:
                out[f"6.4 {name}, 8 objects"] = b[name]["acc_8"]
        masked, unmasked = b["cross-attn 1 layer"], b["cross-attn 1 layer, no mask"]
        out["6.3 unmasked - masked"] = [u - m for u, m in zip(unmasked["acc"], masked["acc"])]
        out["6.3 unmasked, junk"] = unmasked["acc_junk"]
        out["6.3 masked, junk - zeros"] = [j - a for j, a in zip(masked["acc_junk"], masked["acc"])]
        for variant in ("with mask", "without mask"):
            for padded, entry in b["padding"][variant].items():
                out[f"6.3 mass on padding, {variant}, {padded} padded"] = entry["mass"]
        out["6.4 pooled late: drop to 8 objects"] = [
            a - e for a, e in zip(b["pooled late"]["acc"], b["pooled late"]["acc_8"])]
        out["6.4 relation network: drop to 8 objects"] = [
            a - e for a, e in zip(b["relation network"]["acc"], b["relation network"]["acc_8"])]
    if "mix" in results:
        for name, accs in results["mix"].items():
            for column in QUESTION_TYPES:
                out[f"6.5 {name}: {column}"] = accs[column]
    if "grid" in results:
        grid = {tuple(int(x) for x in k.strip("()").split(",")) if isinstance(k, str) else k: v
                for k, v in results["grid"].items()}
        for (H, L), accs in grid.items():
            out[f"6.6 {H} heads x {L} layers"] = accs
        for L in sorted({L for _, L in grid}):
            row = {H: grid[(H, L)] for H, LL in grid if LL == L}
            out[f"6.6 {L} layers: best heads - worst heads, per seed"] = [
                max(v[k] for v in row.values()) - min(v[k] for v in row.values())
                for k in range(len(seeds))]
    if "relational" in results:
        r = results["relational"]
        short = r["shortcut"]["acc"]
        out["6.7 shortcut, test"] = short
        out["6.7 shortcut, train"] = r["shortcut"]["train"]
        for name in relational_factories():
            out[f"6.7 {name}"] = r[name]["acc"]
            out[f"6.7 {name} - shortcut"] = [a - s for a, s in zip(r[name]["acc"], short)]
            out[f"6.7 {name}: train - test"] = [t - a for t, a in zip(r[name]["train"],
                                                                      r[name]["acc"])]
            out[f"6.7 {name}: train - shortcut's train"] = [
                t - s for t, s in zip(r[name]["train"], r["shortcut"]["train"])]
            for epoch in (1, 3, 5, 8, 10, 15):
                out[f"6.7 {name} - shortcut after epoch {epoch}"] = [
                    c[epoch - 1] - s for c, s in zip(r[name]["curve"], short)]
            out[f"6.7 {name} - shortcut, best of epochs 1-10"] = [
                max(c[:10]) - s for c, s in zip(r[name]["curve"], short)]
            out[f"6.7 {name}: climb after epoch 10"] = [c[-1] - c[9] for c in r[name]["curve"]]
    if "relational-furthest" in results:
        r = results["relational-furthest"]
        for name in relational_factories():
            out[f"furthest: {name}"] = r[name]["acc"]
        out["furthest: shortcut"] = r["shortcut"]["acc"]
    if "few" in results:
        f, refs = results["few"], few_references(seeds)
        out["6.7 few closest, train"] = f["closest"]["train"]
        out["6.7 few closest, test - shortcut"] = [a - s for a, s in zip(f["closest"]["acc"],
                                                                         refs["closest shortcut"])]
        out["6.7 few count, train"] = f["count"]["train"]
        out["6.7 few count, test"] = f["count"]["acc"]
        out["6.7 few count, test - baseline"] = [a - b for a, b in zip(f["count"]["acc"],
                                                                       refs["count baseline"])]
    return out


def notebook_means(paths, size: int = 3) -> None:
    """The claims of sections 6.1-6.6 are about the notebook's three seeds: for each claimed
    quantity of the ``binding``/``mix``/``grid`` runs in ``paths`` (one ``--json`` file per
    kernel path, 10 seeds each), print its range over single runs and over the means of every
    ``size`` seeds under each path: the ranges the claim tests' bounds come from."""
    import itertools

    attention = ("cross-attn 1 layer", "cross-attn 2 layers", "co-attention")
    runs = [json.load(open(path)) for path in paths]
    rows: dict[str, list[list[float]]] = {}  # quantity -> one list per file, a value per seed

    def add(name, values):
        rows.setdefault(name, []).append(list(values))

    for run in runs:
        b, m, g = run["binding"], run["mix"], run["grid"]
        n = len(b["relation network"]["acc"])
        unmasked = b["padding"]["without mask"]
        add("6.1 attention (the lowest of the three)",
            (min(b[a]["acc"][i] for a in attention) for i in range(n)))
        add("6.1 flat early, pooled late (the higher)",
            (max(b[k]["acc"][i] for k in ("flat early", "pooled late")) for i in range(n)))
        add("6.1 relation network", b["relation network"]["acc"])
        for padded in ("1", "2", "3"):
            add(f"6.3 mass on padding without mask, {padded} padded", unmasked[padded]["mass"])
        add("6.3 unmasked - masked", (b["cross-attn 1 layer, no mask"]["acc"][i]
                                      - b["cross-attn 1 layer"]["acc"][i] for i in range(n)))
        add("6.3 unmasked, junk", b["cross-attn 1 layer, no mask"]["acc_junk"])
        add("6.4 attention on 8 objects (the lowest)",
            (min(b[a]["acc_8"][i] for a in attention) for i in range(n)))
        for k in ("pooled late", "relation network"):
            add(f"6.4 {k}: drop to 8 objects",
                (b[k]["acc"][i] - b[k]["acc_8"][i] for i in range(n)))
        for model in (k for k in m if k != "majority baseline"):
            for column in ("shape", "closest", "furthest", "left", "top", "count"):
                add(f"6.5 {column} ({model})", m[model][column])
        for layers in (1, 3):
            add(f"6.6 {layers}-layer row", (statistics.fmean(
                g[str((h, layers))][i] for h in HEADS) for i in range(n)))
        for h in HEADS:
            add(f"6.6 {h} heads (1- and 3-layer rows)", (statistics.fmean(
                g[str((h, layers))][i] for layers in (1, 3)) for i in range(n)))
    print(f"{'quantity':<50} {'single runs':>15}  {f'means of {size} seeds':>17}")
    for name, per_file in rows.items():
        single = [v for values in per_file for v in values]
        means = [statistics.fmean(c) for values in per_file
                 for c in itertools.combinations(values, size)]
        print(f"{name:<50} {min(single):6.3f} {max(single):6.3f}   {min(means):6.3f} "
              f"{max(means):6.3f}")


def summarize(paths, seeds) -> None:
    """The range of every claimed quantity over the runs of ``paths`` (one ``--json`` file per
    kernel path), per seed: the numbers the claim tests' bounds come from."""
    per_file = {p: claimed(json.load(open(p)), seeds) for p in paths}
    keys = [k for k in next(iter(per_file.values())) if all(k in c for c in per_file.values())]
    print(f"{'quantity':<58} {'min':>7} {'max':>7}  mean per file")
    for key in keys:
        values = [v for c in per_file.values() for v in c[key]]
        means = " ".join(f"{statistics.fmean(c[key]):.3f}" for c in per_file.values())
        print(f"{key:<58} {min(values):>7.3f} {max(values):>7.3f}  {means}")


if __name__ == "__main__":
    main()
