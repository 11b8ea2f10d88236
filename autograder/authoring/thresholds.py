"""Measure the accuracy cells' thresholds: one tool for every exercise that trains.

    python -m autograder.authoring.thresholds part1      # every accuracy cell of Part 1
    python -m autograder.authoring.thresholds part3 --exercise gmu --seeds 20

For each exercise of the part with an accuracy cell (a ``GradedCell`` that ``trains``), it runs
the grading path on ``--seeds`` grading seeds: the clean room's training run (the exercise's
``train``, on the master's solution and on each known mistake its reference marks
``threshold_variant``), then the trusted score on the grader's own evaluation data. It prints,
per variant, the minimum, median and maximum of every measured number and how many seeds pass
the cell's check. The thresholds themselves live in the part's config
(``fusionlab.part<N>.exercises.CONFIG``); this tool is how they were chosen, and how the next
change re-derives them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from fusionlab.grading import registry
from fusionlab.grading.seeds import Seeds
from fusionlab.grading.toolkit import isolated, to_array

from ..hidden import references
from . import trial

EVAL_OFFSET = 100_000  # evaluation seed = EVAL_OFFSET + grading seed: never a training seed


def measure_once(exercise: registry.Exercise, source: str | None, seed: int) -> tuple[dict, bool]:
    """(the score's numbers, whether the accuracy cell passes) for one grading seed."""
    ref = references.reference(exercise.name)
    seeds = Seeds(inputs=seed, evaluation=EVAL_OFFSET + seed)
    target = trial.namespace(exercise, source)[exercise.target]
    inputs, labels = ref.evaluation.data(seeds.evaluation)
    with isolated(seeds.inputs):
        trained = exercise.train(target, seeds.inputs, inputs)
    score = ref.evaluation.score({k: to_array(v) for k, v in trained.items()}, labels)
    cell = next(c for c in exercise.cells if c.trains)
    passed = exercise.checks[cell.check]({}, {"accuracy": score}).passed
    numbers = {k: float(v) for k, v in score.items() if isinstance(v, (int, float))} \
        if isinstance(score, dict) else {}
    return numbers, passed


def measure(exercise: registry.Exercise, seeds: range, log=print) -> list[dict]:
    """One row per variant: its numbers over ``seeds`` and how many pass."""
    cases = [("reference", None, "the master's solution")] + [
        (v.name, v.replace[exercise.target], v.description)
        for v in references.variants(exercise.name) if v.threshold_variant]
    rows = []
    for name, source, description in cases:
        start = time.process_time()
        runs = [measure_once(exercise, source, s) for s in seeds]
        numbers = {k: [r[0][k] for r in runs if k in r[0]] for k in runs[0][0]} if runs else {}
        rows.append({"exercise": exercise.name, "variant": name, "description": description,
                     "numbers": numbers, "passes": sum(r[1] for r in runs), "runs": len(runs),
                     "cpu_s": time.process_time() - start})
        log(f"  {exercise.name} / {name}: {rows[-1]['passes']}/{len(runs)} pass "
            f"({rows[-1]['cpu_s']:.0f} CPU s)")
    return rows


def table(rows: list[dict]) -> str:
    """The rows as a markdown table: min, median, max of each number."""
    keys = sorted({k for r in rows for k in r["numbers"] if k != "threshold"})
    head = "| exercise | variant | " + " | ".join(f"{k} min / median / max" for k in keys) + \
        " | passes |"
    lines = [head, "|" + "---|" * (3 + len(keys))]
    for r in rows:
        cells = []
        for k in keys:
            values = [v for v in r["numbers"].get(k, []) if np.isfinite(v)]
            cells.append(" / ".join(f"{f(values):.3f}" for f in (min, statistics.median, max))
                         if values else "-")
        lines.append(f"| {r['exercise']} | {r['variant']} | " + " | ".join(cells) +
                     f" | {r['passes']}/{r['runs']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.authoring.thresholds",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", help="part1, part2, ... (the assignment's prefix)")
    parser.add_argument("--exercise", default=None, help="one exercise of the part only")
    parser.add_argument("--seeds", type=int, default=20, help="grading seeds 0 .. N-1")
    args = parser.parse_args(argv)
    chosen = [e for e in registry.exercises() if e.assignment.startswith(args.part)
              and e.trains and args.exercise in (None, e.name)]
    if not chosen:
        print(f"no exercise with an accuracy cell matches {args.part} {args.exercise or ''}",
              file=sys.stderr)
        return 2
    rows = []
    for exercise in chosen:
        rows += measure(exercise, range(args.seeds))
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
