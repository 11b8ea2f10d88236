"""Measurements behind Part 3's claims, over several seeds (each seed draws its own data and its
own initial weights). Claim tests import the functions; the bounds they use were derived from
this script's output over 10 seeds under each of torch's CPU kernel paths::

    for path in default avx2 avx512; do
        ATEN_CPU_CAPABILITY=$path nice -n 10 .venv/bin/python -m tests.part3.measure \
            --seeds 0 1 2 3 4 5 6 7 8 9 --json part3-$path.json
    done
    .venv/bin/python -m tests.part3.measure --claims part3-*.json

Each function returns plain numbers (lists over seeds); ``main`` prints them as mean ± std, and
``--claims`` the claimed quantities (``claimed``), min / mean / max per kernel path and over all
of them (``benchmarks/CLAIMS_MEASUREMENTS.md`` keeps that table).

- ``switch``: concatenation, sum, scalar gate, GMU and FiLM (whole, gamma only, beta only) on
  the GMU switch task, and the correlation of the GMU gate with the switch M;
- ``insertion``: a text-only classifier pretrained on Part 1's data, frozen, with a
  cross-attention block inserted, gated (tanh(alpha), alpha = 0) or not: the output at
  initialisation and the training curves;
- ``missing``: accuracy against the fraction of test samples whose text (or image) is zeroed,
  on ``RedundantDataset``, for models trained with and without modality dropout, and the
  unimodal baselines;
- ``absence``: per-class accuracy on the absence task, and what a zeroed text does to it.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import time
from dataclasses import replace

import torch

from autograder.authoring.examples import master_namespace
from fusionlab.data import make_splits
from fusionlab.models import LateFusion, UnimodalClassifier
from fusionlab.multiseed import fit_seeds
from fusionlab.part3.data import (
    make_absence_splits,
    make_redundant_splits,
    make_switch_splits,
    with_missing,
)
from fusionlab.part3.models import (
    ConcatFusion,
    FiLMFusion,
    FusionClassifier,
    InsertedFusion,
    ScalarGateFusion,
    SumFusion,
    gate_switch_correlation,
)
from fusionlab.train import accuracy, fit, per_class_accuracy
from fusionlab.utils import seed_everything
from tests import claims_table

ASSIGNMENT = "part3_who_gets_to_speak"
# the master's cells that define the exercises' answers and the notebook's given models
NOTEBOOK_CELLS = ("gmu_solution", "gated_block_solution", "modality_dropout_solution",
                  "show-inserted", "moddrop-wrapper")


def notebook_models() -> dict:
    """The master's solution cells (and its ablation and dropout wrapper), run as plain Python:
    the notebook and the measurements train the same code. (What they print, the source of
    ``InsertedFusion``, is not a measurement.)"""
    with contextlib.redirect_stdout(io.StringIO()):
        return master_namespace(ASSIGNMENT, NOTEBOOK_CELLS)


_NOTEBOOK = notebook_models()
GatedMultimodalUnit = _NOTEBOOK["GatedMultimodalUnit"]
ModalityDropout = _NOTEBOOK["ModalityDropout"]
TanhGatedCrossAttention = _NOTEBOOK["TanhGatedCrossAttention"]
UngatedCrossAttention = _NOTEBOOK["UngatedCrossAttention"]

SEEDS = (0, 1, 2, 3, 4)
# the notebook's own training settings (its cell settings-code, as a student runs it), bars off
_SETTINGS = master_namespace(ASSIGNMENT, ("settings-code",), preset={"GRADING": False})
SWITCH, PART1, MISSING, INSERTION = (replace(_SETTINGS[name], progress=False)
                                     for name in ("SWITCH", "PRETRAIN", "MISSING", "INSERTION"))
ABSENCE = SWITCH  # the notebook trains the absence setting with SWITCH
RATES = tuple(i / 10 for i in range(11))


def unit_factories(img_dim: int, txt_dim: int, hidden_dim: int = 32) -> dict:
    """The fusion units compared on the switch and absence tasks (each gets a linear head)."""
    dims = dict(img_dim=img_dim, txt_dim=txt_dim, hidden_dim=hidden_dim)
    return {
        "concat": lambda: ConcatFusion(**dims),
        "sum": lambda: SumFusion(**dims),
        "scalar gate": lambda: ScalarGateFusion(**dims),
        "GMU": lambda: GatedMultimodalUnit(**dims),
        "FiLM": lambda: FiLMFusion(**dims, mode="film"),
        "FiLM gamma only": lambda: FiLMFusion(**dims, mode="gamma"),
        "FiLM beta only": lambda: FiLMFusion(**dims, mode="beta"),
    }


def _train(make_unit, num_classes, trains, tests, seeds, config):
    make = lambda: FusionClassifier(make_unit(), num_classes)
    return fit_seeds(make, trains, tests, seeds, config, return_models=True)


def switch(seeds=SEEDS, config=SWITCH, **data) -> dict:
    """{model: {"acc": [per seed]}}, plus the GMU's gate correlation with M and the scalar
    gate's image weight; and the unimodal baselines."""
    splits = [make_switch_splits(seed, **data) for seed in seeds]
    trains, tests = [s[0] for s in splits], [s[1] for s in splits]
    train0 = trains[0]
    results = {}
    for name, make_unit in unit_factories(train0.img_dim, train0.txt_dim).items():
        histories, models = _train(make_unit, train0.num_classes, trains, tests, seeds, config)
        entry = {"acc": [h.final_acc for h in histories]}
        if name == "GMU":
            corrs, agreements = [], []
            for model, test in zip(models, tests):
                model.eval()
                with torch.no_grad():
                    model(test.img_features, test.txt_features)
                gate = model.fusion.last_gate  # (n, H)
                corrs.append(gate_switch_correlation(gate, test.switch))
                opens = (gate.mean(dim=1) > 0.5).long()
                agreements.append((opens == test.switch).float().mean().item())
            entry["gate_corr"] = corrs
            entry["gate_agrees_with_M"] = agreements
        if name == "scalar gate":
            entry["image_weight"] = [m.fusion.image_weight for m in models]
        results[name] = entry
    for modality, dim in (("img", train0.img_dim), ("txt", train0.txt_dim)):
        make = lambda dim=dim, modality=modality: UnimodalClassifier(
            dim, 32, train0.num_classes, modality)
        histories = fit_seeds(make, trains, tests, seeds, config)
        results[f"{modality} only"] = {"acc": [h.final_acc for h in histories]}
    return results


def absence(seeds=SEEDS, config=ABSENCE, **data) -> dict:
    """{model: {"acc", "per_class", "acc_text_zeroed", "per_class_text_zeroed"}} on the absence
    task; the zeroed-text numbers zero every test sample's text."""
    splits = [make_absence_splits(seed, **data) for seed in seeds]
    trains, tests = [s[0] for s in splits], [s[1] for s in splits]
    train0 = trains[0]
    factories = {
        name: (lambda make_unit=make_unit: FusionClassifier(make_unit(), 3))
        for name, make_unit in unit_factories(train0.img_dim, train0.txt_dim).items()
    }
    factories["late fusion (MLP)"] = lambda: LateFusion(train0.img_dim, train0.txt_dim,
                                                        num_classes=3)
    factories["late fusion (MLP) + modality dropout"] = lambda: ModalityDropout(
        LateFusion(train0.img_dim, train0.txt_dim, num_classes=3), 0.0, 0.5)
    factories["img only"] = lambda: UnimodalClassifier(train0.img_dim, 32, 3, "img")
    factories["txt only"] = lambda: UnimodalClassifier(train0.txt_dim, 32, 3, "txt")
    results = {}
    for name, make in factories.items():
        histories, models = fit_seeds(make, trains, tests, seeds, config, return_models=True)
        zeroed = [with_missing(test, "txt", 1.0, seed=0)[0] for test in tests]
        results[name] = {
            "acc": [h.final_acc for h in histories],
            "per_class": [per_class_accuracy(m, t, 3) for m, t in zip(models, tests)],
            "acc_text_zeroed": [accuracy(m, z) for m, z in zip(models, zeroed)],
            "per_class_text_zeroed": [per_class_accuracy(m, z, 3) for m, z in zip(models, zeroed)],
        }
    return results


def missing(seeds=SEEDS, config=MISSING, p_drop=0.5, rates=RATES, **data) -> dict:
    """Accuracy against the missing rate on ``RedundantDataset`` (clear text, faint image).

    {model: {"txt": [per seed: [acc per rate]], "img": [...]}} for LateFusion (an MLP on both
    embeddings) and the concatenation unit with a linear head, each trained without and with
    modality dropout (the text zeroed with probability ``p_drop`` per training sample), and
    the unimodal baselines.
    """
    splits = [make_redundant_splits(seed, **data) for seed in seeds]
    trains, tests = [s[0] for s in splits], [s[1] for s in splits]
    t0 = trains[0]
    dims, C = (t0.img_dim, t0.txt_dim), t0.num_classes
    factories = {
        "late fusion": lambda: LateFusion(*dims, num_classes=C),
        "late fusion + modality dropout": lambda: ModalityDropout(
            LateFusion(*dims, num_classes=C), 0.0, p_drop),
        "concat (linear head)": lambda: FusionClassifier(ConcatFusion(*dims), C),
        "concat (linear head) + modality dropout": lambda: ModalityDropout(
            FusionClassifier(ConcatFusion(*dims), C), 0.0, p_drop),
        "img only": lambda: UnimodalClassifier(dims[0], 32, C, "img"),
        "txt only": lambda: UnimodalClassifier(dims[1], 32, C, "txt"),
    }
    results = {"rates": list(rates)}
    for name, make in factories.items():
        _, models = fit_seeds(make, trains, tests, seeds, config, return_models=True)
        results[name] = {
            modality: [
                [accuracy(m, with_missing(t, modality, rate, seed=1000 + seed)[0])
                 for rate in rates]
                for m, t, seed in zip(models, tests, seeds)
            ]
            for modality in ("txt", "img")
        }
    return results


def insertion(seeds=SEEDS, pretrain=PART1, config=INSERTION, **data) -> dict:
    """Gated against ungated insertion into a frozen text-only classifier on Part 1's data.

    {"pretrained_acc": [...], "gated"/"ungated": {"init_max_abs_diff": [...], "init_acc":
    [...], "test_acc": [per seed: [acc per epoch]], "train_loss": [...], "alpha": [...]}}; the
    accuracy at initialisation is ``init_acc``, the curves start after the first epoch.
    """
    splits = [make_splits(seed, **data) for seed in seeds]
    trains, tests = [s[0] for s in splits], [s[1] for s in splits]
    make_text = lambda: UnimodalClassifier(16, 32, 3, "txt")
    histories, pretrained = fit_seeds(make_text, trains, tests, seeds, pretrain,
                                      return_models=True)
    results = {"pretrained_acc": [h.final_acc for h in histories]}
    for name, block in (("gated", TanhGatedCrossAttention), ("ungated", UngatedCrossAttention)):
        entry = {"init_max_abs_diff": [], "init_acc": [], "test_acc": [], "train_loss": []}
        alphas = []
        for seed, frozen, train, test in zip(seeds, pretrained, trains, tests):
            seed_everything(seed)
            model = InsertedFusion(copy.deepcopy(frozen).cpu(), block(32, 4), img_dim=32)
            with torch.no_grad():
                out = model.eval()(test.img_features, test.txt_features)
                ref = model.pretrained(test.img_features, test.txt_features)
            entry["init_max_abs_diff"].append((out - ref).abs().max().item())
            entry["init_acc"].append(accuracy(model, test))
            history = fit(model, train, test, replace(config, seed=seed))
            entry["test_acc"].append(history.test_acc)
            entry["train_loss"].append(history.train_loss)
            if name == "gated":
                alphas.append(model.block.alpha.item())
        if alphas:
            entry["alpha"] = alphas
        results[name] = entry
    return results


# ----------------------------------------------------------------------------- claims


def _diff(a, b) -> list[float]:
    return [x - y for x, y in zip(a, b)]


def _at(entry, modality, rate_index) -> list[float]:
    return [curve[rate_index] for curve in entry[modality]]


def claimed(results: dict) -> dict[str, list[float]]:
    """The quantities the notebook's sentences are about, {quantity: [value per seed]}, from a
    ``main`` run's results: the claim tests bound each of them, and ``--claims`` shows their
    range per kernel path (``benchmarks/CLAIMS_MEASUREMENTS.md``)."""
    out = {}
    if "switch" in results:
        s = {name: entry["acc"] for name, entry in results["switch"].items()}
        out["switch: GMU"] = s["GMU"]
        out["switch: concat"] = s["concat"]
        for other in ("concat", "sum", "scalar gate", "FiLM"):
            out[f"switch: GMU - {other}"] = _diff(s["GMU"], s[other])
        out["switch: FiLM - concat"] = _diff(s["FiLM"], s["concat"])
        out["switch: scalar gate - concat"] = _diff(s["scalar gate"], s["concat"])
        out["switch: scalar gate - sum"] = _diff(s["scalar gate"], s["sum"])
        out["switch: scalar gate image weight"] = results["switch"]["scalar gate"]["image_weight"]
        out["switch: img only"] = s["img only"]
        out["switch: txt only"] = s["txt only"]
        out["switch: corr(z, M)"] = results["switch"]["GMU"]["gate_corr"]
        out["switch: FiLM gamma only - FiLM"] = _diff(s["FiLM gamma only"], s["FiLM"])
        out["switch: FiLM gamma only - concat"] = _diff(s["FiLM gamma only"], s["concat"])
        out["switch: FiLM beta only - sum"] = _diff(s["FiLM beta only"], s["sum"])
        out["switch: FiLM - FiLM beta only"] = _diff(s["FiLM"], s["FiLM beta only"])
    if "insertion" in results:
        r = results["insertion"]
        gated, ungated = r["gated"], r["ungated"]
        out["insertion: pretrained"] = r["pretrained_acc"]
        out["insertion: gated init max |diff|"] = gated["init_max_abs_diff"]
        out["insertion: ungated init max |diff|"] = ungated["init_max_abs_diff"]
        out["insertion: gated init acc - pretrained"] = _diff(gated["init_acc"],
                                                              r["pretrained_acc"])
        out["insertion: ungated init acc - pretrained"] = _diff(ungated["init_acc"],
                                                                r["pretrained_acc"])
        first = {n: [c[0] for c in r[n]["test_acc"]] for n in ("gated", "ungated")}
        final = {n: [c[-1] for c in r[n]["test_acc"]] for n in ("gated", "ungated")}
        out["insertion: ungated - gated, epoch 1"] = _diff(first["ungated"], first["gated"])
        out["insertion: gated, epoch 10"] = final["gated"]
        out["insertion: ungated, epoch 10"] = final["ungated"]
        out["insertion: gated - ungated, epoch 10"] = _diff(final["gated"], final["ungated"])
    if "missing" in results:
        m = results["missing"]
        plain, dropout = m["late fusion"], m["late fusion + modality dropout"]
        image = m["img only"]
        out["missing: late fusion, nothing missing"] = _at(plain, "txt", 0)
        out["missing: + modality dropout, nothing missing"] = _at(dropout, "txt", 0)
        out["missing: img only - late fusion, no text"] = _diff(_at(image, "txt", -1),
                                                                _at(plain, "txt", -1))
        out["missing: + dropout - late fusion, no text"] = _diff(_at(dropout, "txt", -1),
                                                                 _at(plain, "txt", -1))
        out["missing: + dropout - img only, no text"] = _diff(_at(dropout, "txt", -1),
                                                              _at(image, "txt", -1))
        out["missing: img only, no text"] = _at(image, "txt", -1)
        out["missing: late fusion, no image"] = _at(plain, "img", -1)
        out["missing: + modality dropout, no image"] = _at(dropout, "img", -1)
    if "absence" in results:
        a = results["absence"]
        late, moddrop = a["late fusion (MLP)"], a["late fusion (MLP) + modality dropout"]
        best_single = [max(i, t) for i, t in zip(a["img only"]["acc"], a["txt only"]["acc"])]
        out["absence: late fusion"] = late["acc"]
        out["absence: late fusion - best single modality"] = _diff(late["acc"], best_single)
        out["absence: img only"] = a["img only"]["acc"]
        out["absence: txt only"] = a["txt only"]["acc"]
        out["absence: late fusion, text zeroed, class 0"] = [
            c[0] for c in late["per_class_text_zeroed"]]
        for k in (0, 2):
            out[f"absence: + dropout, text zeroed, class {k}"] = [
                c[k] for c in moddrop["per_class_text_zeroed"]]
        out["absence: late fusion - + dropout"] = _diff(late["acc"], moddrop["acc"])
    return out


# ----------------------------------------------------------------------------- report


def _stats(values) -> str:
    t = torch.tensor(values, dtype=torch.float64)
    spread = t.std().item() if t.numel() > 1 else 0.0
    return f"{t.mean().item():.3f} ± {spread:.3f} (min {t.min().item():.3f})"


def report(results: dict) -> None:
    if "switch" in results:
        print("== switch task: test accuracy (mean ± std over seeds)")
        for name, entry in results["switch"].items():
            print(f"  {name:<18} {_stats(entry['acc'])}")
            if "gate_corr" in entry:
                print(f"  {'  corr(z, M)':<18} {_stats(entry['gate_corr'])}")
                print(f"  {'  mean z > 0.5 = M':<18} {_stats(entry['gate_agrees_with_M'])}")
            if "image_weight" in entry:
                print(f"  {'  image weight a':<18} {_stats(entry['image_weight'])}")
    if "absence" in results:
        print("== absence task: accuracy; class 2 (absence); with the text zeroed")
        for name, entry in results["absence"].items():
            per_class = torch.tensor(entry["per_class"])
            zeroed = torch.tensor(entry["per_class_text_zeroed"])
            print(f"  {name:<22} all {_stats(entry['acc'])} | class 2 "
                  f"{_stats(per_class[:, 2].tolist())} | per class "
                  f"{[round(x, 3) for x in per_class.mean(0).tolist()]} | text zeroed: all "
                  f"{_stats(entry['acc_text_zeroed'])}, per class "
                  f"{[round(x, 3) for x in zeroed.mean(0).tolist()]}")
    if "missing" in results:
        rates = results["missing"]["rates"]
        print("== missing modality (RedundantDataset): accuracy per missing rate, over seeds")
        print("  rates " + " ".join(f"{r:5.1f}" for r in rates))
        for name, entry in results["missing"].items():
            if name == "rates":
                continue
            for modality in ("txt", "img"):
                curves = torch.tensor(entry[modality])
                mean, std = curves.mean(0), curves.std(0) if len(curves) > 1 else curves[0] * 0
                print(f"  {name} / {modality} missing:")
                print("    mean " + " ".join(f"{x:5.3f}" for x in mean.tolist()))
                print("    std  " + " ".join(f"{x:5.3f}" for x in std.tolist()))
    if "insertion" in results:
        r = results["insertion"]
        print("== gated insertion into a frozen text-only classifier (Part 1 data)")
        print(f"  pretrained text-only acc {_stats(r['pretrained_acc'])}")
        for name in ("gated", "ungated"):
            e = r[name]
            curves = torch.tensor(e["test_acc"])
            losses = torch.tensor(e["train_loss"])
            print(f"  {name}: max |out - pretrained| at init {max(e['init_max_abs_diff']):.3g}; "
                  f"init acc {_stats(e['init_acc'])}")
            for label, row in (("test acc, mean", curves.mean(0)),
                               ("test acc, min", curves.min(0).values),
                               ("train loss, mean", losses.mean(0)),
                               ("train loss, max", losses.max(0).values)):
                print(f"    {label:<17} " + " ".join(f"{x:.3f}" for x in row.tolist()))
            if "alpha" in e:
                print(f"    alpha after training {_stats(e['alpha'])}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.part3.measure",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--only", nargs="+", default=["switch", "absence", "missing", "insertion"])
    parser.add_argument("--json", help="also write the raw numbers to this file")
    parser.add_argument("--claims", nargs="+", default=None,
                        help="the claimed quantities of --json files (one per kernel path), "
                             "min / mean / max per path")
    parser.add_argument("--insertion-lr", type=float, default=INSERTION.lr,
                        help="learning rate of the insertion runs (the gate matters more at "
                             "large ones)")
    parser.add_argument("--switch-noise", type=float, default=None,
                        help="noise of the switch task (default: SwitchDataset's); the gate's "
                             "correlation with M rises as it falls")
    args = parser.parse_args(argv)
    if args.claims:
        print(claims_table.format_table(claims_table.per_path(args.claims, claimed)))
        return
    torch.set_num_threads(1)
    print(f"kernel path: {torch.backends.cpu.get_cpu_capability()}")
    insertion_config = replace(INSERTION, lr=args.insertion_lr)
    switch_data = {} if args.switch_noise is None else {"noise": args.switch_noise}
    functions = {"switch": lambda seeds: switch(seeds, **switch_data), "absence": absence,
                 "missing": missing,
                 "insertion": lambda seeds: insertion(seeds, config=insertion_config)}
    results = {"kernel path": torch.backends.cpu.get_cpu_capability(), "seeds": args.seeds}
    for name in args.only:
        start, cpu = time.perf_counter(), time.process_time()
        results[name] = functions[name](seeds=args.seeds)
        # CPU time is the figure to compare on a shared machine: wall time includes waiting
        print(f"[{name}: {time.perf_counter() - start:.1f} s wall, "
              f"{time.process_time() - cpu:.1f} s CPU]")
        report({name: results[name]})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
