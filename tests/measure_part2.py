"""Measurements behind Part 2's claims, over several seeds (each seed draws its own data and its
own initial weights). Claim tests import the functions; run the whole set from the repository
root with

    nice -n 10 .venv/bin/python -m tests.measure_part2 --seeds 0 1 2 3 4

Each function returns plain numbers (lists over seeds); ``main`` prints them as mean ± std and
the CPU time each part took. The models are built with the master notebook's own exercise
solutions (``MaskedMultiHeadAttention``, ``CoAttentionBlock``), as the notebook builds them,
and trained with the notebook's settings (``fusionlab.scene_experiments``).

- ``binding``: the six models on "what shape is X" only; accuracy in distribution (3-6
  objects) and on scenes of 8 objects; the padding-mask ablation (1-layer cross-attention
  trained without the object mask) by number of padded slots;
- ``mix``: the six models on the six question types mixed, at the notebook's short budget;
- ``grid``: cross-attention's heads x layers grid on "what shape is X".
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from autograder.examples import master_namespace
from fusionlab import scene_experiments as lab
from fusionlab.multiseed import fit_seeds
from fusionlab.scene_models import (
    CoAttentionFusion,
    FlatEarlyFusion,
    PooledLateFusion,
    RelationNetwork,
    SceneCrossAttention,
)

ASSIGNMENT = "part2_attention_that_selects"
_NOTEBOOK = master_namespace(ASSIGNMENT, ("attention_solution", "coattention_solution"))
MaskedMultiHeadAttention = _NOTEBOOK["MaskedMultiHeadAttention"]
CoAttentionBlock = _NOTEBOOK["CoAttentionBlock"]

SEEDS = (0, 1, 2, 3, 4)
E = lab.EMBED_DIM
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
    """{model: {column: [per seed]}} after the short training on all six question types."""
    trains, tests = lab.scene_splits(seeds, lab.MIX_SCENES)
    return {name: lab.accuracy_per_type(_train(make, trains, seeds, lab.MIX), tests)
            for name, make in factories().items()}


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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--only", nargs="+", default=["binding", "mix", "grid"])
    parser.add_argument("--json", help="also write the raw numbers to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    functions = {"binding": binding, "mix": mix, "grid": grid}
    results = {}
    for name in args.only:
        start, cpu = time.perf_counter(), time.process_time()
        results[name] = functions[name](seeds=args.seeds)
        # CPU time is the figure to compare on a shared machine: wall time includes waiting
        print(f"[{name}: {time.perf_counter() - start:.1f} s wall, "
              f"{time.process_time() - cpu:.1f} s CPU]")
        report(name, results[name])
    if args.json:
        with open(args.json, "w") as f:
            json.dump({k: {str(kk): vv for kk, vv in v.items()} for k, v in results.items()},
                      f, indent=1)


if __name__ == "__main__":
    main()
