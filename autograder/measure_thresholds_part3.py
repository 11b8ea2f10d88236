"""Measure the accuracy verdicts of Part 3: the reference over 20 seeds against broken variants.

    nice -n 10 python -m autograder.measure_thresholds_part3 [--seeds 20]

Each run goes the grading path: the evidence of the accuracy cell (``fusionlab.evidence_part3``,
trained with seed s: initial weights and training data) and the trusted verdict
(``autograder.hidden.part3``), which evaluates the exported trained weights on data of its own
(``eval_seed`` 1000 + s). A threshold is sound when every reference run passes and every broken
run fails. The table it prints is copied into autograder/README.md (Part 1's is printed by
``autograder.measure_thresholds``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fusionlab import evidence_part3

from .examples import _gmu, master_namespace
from .hidden import part3

ASSIGNMENT = "part3_who_gets_to_speak"
SOLUTIONS = ("gmu_solution", "modality_dropout_solution")

GMU_BROKEN = {
    "swapped gate (known mistake)": _gmu(h="(1 - z) * h_v + z * h_t"),
    "gate detached (z.detach() in h: the gate never trains)":
        _gmu(h="z.detach() * h_v + (1 - z.detach()) * h_t"),
}
# gate_proj's bias set to +-40 after construction: z stuck at 1 (or 0), no gradient through it
GMU_STUCK = {"image only (z stuck at 1)": 40.0, "text only (z stuck at 0)": -40.0}
DROPOUT_BROKEN = {
    "no dropout (x returned unchanged)":
        "def modality_dropout(x, p, generator=None):\n"
        "    return x.clone(), torch.zeros(x.shape[0], dtype=torch.bool)\n",
    "always drops (p ignored)":
        "def modality_dropout(x, p, generator=None):\n"
        "    return torch.zeros_like(x), torch.ones(x.shape[0], dtype=torch.bool)\n",
    "element-wise dropout (F.dropout, rescaled)":
        "def modality_dropout(x, p, generator=None):\n"
        "    return F.dropout(x, p, training=True), torch.zeros(x.shape[0], dtype=torch.bool)\n",
}


def _namespace(source: str | None = None) -> dict:
    ns = master_namespace(ASSIGNMENT, SOLUTIONS)
    if source is not None:
        exec(source, ns)  # noqa: S102 (our own variant sources)
    return ns


def _stuck(cls, bias: float):
    class Stuck(cls):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            with torch.no_grad():
                self.gate_proj.bias.fill_(bias)

    Stuck.__name__ = cls.__name__
    return Stuck


def accuracy_verdict(exercise: str, obj, seed: int):
    """(measured values or None, verdict) of the accuracy cell for ``obj`` with seed ``seed``."""
    request = {"seed": seed, "eval_seed": 1000 + seed}
    if exercise == "gmu":
        ev = evidence_part3.collect_gmu(obj, seed, train=True)
        facts = part3.gmu_accuracy_facts(ev, seed, request["eval_seed"])
    else:
        ev = evidence_part3.collect_dropout(obj, seed, train=True)
        facts = part3.dropout_accuracy_facts(ev, seed, request["eval_seed"])
    result = facts.get("accuracy")
    grade_id = "gmu_accuracy" if exercise == "gmu" else "dropout_accuracy"
    return (None if isinstance(result, str) else result), part3.verdict(grade_id, ev, request)


def cases():
    gmu = _namespace()["GatedMultimodalUnit"]
    yield "gmu", "reference", gmu
    for name, source in GMU_BROKEN.items():
        yield "gmu", name, _namespace(source)["GatedMultimodalUnit"]
    for name, bias in GMU_STUCK.items():
        yield "gmu", name, _stuck(gmu, bias)
    yield "dropout", "reference", _namespace()["modality_dropout"]
    for name, source in DROPOUT_BROKEN.items():
        yield "dropout", name, _namespace(source)["modality_dropout"]


def measure(seeds: int = 20, echo=print, only: str | None = None) -> list:
    rows = []
    for exercise, name, obj in cases():
        if only is not None and exercise != only:
            continue
        runs = [accuracy_verdict(exercise, obj, seed) for seed in range(seeds)]
        rows.append((exercise, name, [r for r, _ in runs], [v.passed for _, v in runs]))
        echo(_row(*rows[-1]), flush=True)
    return rows


def _stats(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "- | - | -"
    return " | ".join(f"{how(values):.3f}" for how in (min, statistics.median, max))


def _row(exercise, name, results, passed) -> str:
    if exercise == "gmu":
        columns = [_stats([r and r[0] for r in results]), _stats([r and r[1] for r in results])]
    else:
        columns = [_stats([r and r[k] for r in results])
                   for k in ("complete", "text_missing", "text_missing_loss")]
    return f"| {exercise} | {name} | " + " | ".join(columns) + \
        f" | {sum(passed)}/{len(passed)} |"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--only", choices=("gmu", "dropout"), help="one exercise only")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    print(f"GMU: {evidence_part3.GMU_TRAINING}, thresholds accuracy "
          f"{part3.GMU_ACCURACY_THRESHOLD}, corr(z, M) {part3.GMU_CORRELATION_THRESHOLD}; "
          f"dropout: {evidence_part3.DROPOUT_TRAINING}, thresholds complete "
          f"{part3.DROPOUT_COMPLETE_THRESHOLD}, cross-entropy with the text missing <= "
          f"{part3.DROPOUT_MISSING_LOSS_THRESHOLD}; evaluation: "
          f"{part3.EVAL_SAMPLES} samples of the grader's own seed")
    print("GMU columns: accuracy min | median | max, corr(z, M) min | median | max; dropout "
          "columns: accuracy complete, accuracy text missing, cross-entropy text missing (min | "
          "median | max each)")
    rows = measure(args.seeds, only=args.only)
    print(f"({time.perf_counter() - start:.0f} s, one thread per training run; '-': the grader "
          "cannot evaluate the trained weights, the verdict fails with the reason)")
    return rows


if __name__ == "__main__":
    main()
