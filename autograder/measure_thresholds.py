"""Measure the accuracy verdicts of Part 1: the reference over 20 seeds against broken variants.

    python -m autograder.measure_thresholds [--seeds 20]

Each run goes the grading path: the evidence of the accuracy cell (``fusionlab.evidence``,
trained with seed s: initial weights and XOR training data) and the trusted verdict
(``autograder.hidden.part1``), which evaluates the exported trained weights on XOR data of
its own (``eval_seed`` 1000 + s). A threshold is sound when every reference run is above it
and every broken run below it. The table it prints is copied into autograder/README.md.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from fusionlab import evidence

from .examples import _bidir, _gated
from .hidden import part1

BIDIR_BROKEN = {
    "text tokens only (no attention)": _bidir(result="self.norm_txt(txt_embed).mean(dim=1)"),
    "image tokens only": _bidir(result="img_upd.mean(dim=1)",
                                img_upd="self.norm_img(img_embed)"),
    "output detached from the graph": _bidir(result="torch.cat([txt_upd, img_upd], dim=1)"
                                                    ".mean(dim=1).detach()"),
    "constant output": _bidir(result="torch.zeros_like(txt_upd).mean(dim=1)"),
    "residual missing (known mistake)": _bidir(
        txt_upd="self.norm_txt(self.txt_to_img(txt_embed, img_embed))",
        img_upd="self.norm_img(self.img_to_txt(img_embed, txt_embed))"),
}
GATED_BROKEN = {
    "linear head (nn.Linear classifier)": _gated(classifier="nn.Linear(embed_dim, num_classes)"),
    "image only (alpha stuck at 1, no gradient)": _gated(gate="torch.full((1,), 40.0)"),
    "text only (alpha stuck at 0, no gradient)": _gated(gate="torch.full((1,), -40.0)"),
}


def _classes(source: str):
    from fusionlab.models import CrossAttentionLayer

    namespace = {"torch": torch, "nn": nn, "F": F, "CrossAttentionLayer": CrossAttentionLayer}
    exec(source, namespace)  # noqa: S102 (our own variant sources)
    return namespace


def accuracy_verdict(model: str, cls, seed: int):
    """(accuracy or None, verdict) of the accuracy cell for ``cls`` with grading seed ``seed``."""
    grade_id = "bidir_accuracy" if model == "bidirectional" else "gated_accuracy"
    collect = evidence.collect_bidirectional if model == "bidirectional" else evidence.collect_gated
    ev = collect(cls, seed, train=True)
    request = {"seed": seed, "eval_seed": 1000 + seed}
    facts = (part1.bidirectional_facts if model == "bidirectional" else part1.gated_facts)(
        ev, seed, request["eval_seed"])
    result = facts.get("accuracy")
    return (result[0] if isinstance(result, tuple) else None), part1.verdict(grade_id, ev,
                                                                              request)


def measure(seeds: int = 20) -> list[tuple[str, str, list[float | None]]]:
    rows = []
    cases = [("bidirectional", "reference", _bidir())]
    cases += [("bidirectional", name, src) for name, src in BIDIR_BROKEN.items()]
    cases += [("gated", "reference", _gated())]
    cases += [("gated", name, src) for name, src in GATED_BROKEN.items()]
    for model, name, source in cases:
        cls = _classes(source)["BidirectionalCrossAttention" if model == "bidirectional"
                               else "GatedFusionModel"]
        runs = [accuracy_verdict(model, cls, seed) for seed in range(seeds)]
        rows.append((model, name, [acc for acc, _ in runs], [v.passed for _, v in runs]))
    return rows


def _fmt(values, how) -> str:
    values = [v for v in values if v is not None]
    return f"{how(values):.3f}" if values else "-"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows = measure(args.seeds)
    print(f"training: {evidence.TRAINING}; evaluation: {part1.EVAL_SAMPLES} XOR samples of the "
          f"grader's own seed; thresholds: bidirectional {part1.BIDIR_ACCURACY_THRESHOLD}, "
          f"gated {part1.GATED_ACCURACY_THRESHOLD}")
    print(f"| model | variant | min | median | max | passes ({args.seeds} seeds) |")
    print("|---|---|---|---|---|---|")
    for model, name, accs, passed in rows:
        print(f"| {model} | {name} | {_fmt(accs, min)} | {_fmt(accs, statistics.median)} | "
              f"{_fmt(accs, max)} | {sum(passed)}/{len(passed)} |")
    print(f"({time.perf_counter() - start:.0f} s, one thread per training run; '-': the grader "
          "cannot evaluate the trained weights, the verdict fails with the reason)")


if __name__ == "__main__":
    main()
