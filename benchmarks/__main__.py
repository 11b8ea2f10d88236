"""``python -m benchmarks [--quick] [--only SECTIONS] [--out FILE]``: run the benchmarks and
write the report (``benchmarks/RESULTS.md`` by default; a ``--quick`` run writes
``benchmarks/_work/RESULTS.quick.md`` unless ``--out`` says otherwise)."""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
import time
from pathlib import Path

from . import bench_cluster, bench_floor, bench_grading, bench_loop, bench_multiseed, bench_process
from .timing import Samples, machine

SECTIONS = ("loop", "multiseed", "grading", "assignments", "floor", "process", "cluster")
# Section "assignments": the assignments after Part 1 with the speed budgets of issue 10, each
# timed the same way (its solution notebook in a fresh kernel, its grading per submission).
# Another assignment joins by adding its name here.
ASSIGNMENTS = ("part2_attention_that_selects", "part3_who_gets_to_speak", "part4_align_before_fuse")
NOTEBOOK_BUDGET_S = 180.0  # the solution notebook, fresh kernel, top to bottom
PER_SUBMISSION_S = 15.0  # grading, median per submission, one worker
HERE = Path(__file__).resolve().parent


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one repeat of everything, fewer sequential seeds and submissions "
        "(a smoke test, about 2-3 minutes)",
    )
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections among {', '.join(SECTIONS)}",
    )
    parser.add_argument("--out", type=Path, default=None, help="where to write the report")
    parser.add_argument(
        "--submissions",
        type=int,
        default=None,
        help="submissions in the grading batch (default 10; quick: 3)",
    )
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose among {SECTIONS}")
    quick = args.quick
    out = args.out or (HERE / "_work" / "RESULTS.quick.md" if quick else HERE / "RESULTS.md")
    command = "python -m benchmarks" + (
        ""
        if argv is None and len(sys.argv) == 1
        else " " + shlex.join(sys.argv[1:] if argv is None else argv)
    )

    started = time.perf_counter()
    info = machine()
    log(f"benchmarks ({'quick' if quick else 'full'}): {', '.join(only)}")
    results: dict = {}
    # the floor first (short and the most sensitive to noise), grading last (many processes)
    if "floor" in only:
        log("4. the floor ...")
        results["floor"] = bench_floor.run(
            repeats=3 if quick else 5,
            steps=200 if quick else 500,
            epochs=5 if quick else 10,
            log=log,
        )
    if "loop" in only:
        log("1. original loop against fit ...")
        results["loop"] = bench_loop.run(repeats=1 if quick else 5, log=log)
    if "multiseed" in only:
        log("2. multi-seed ...")
        results["multiseed"] = bench_multiseed.run(
            repeats=1 if quick else 3, sequential_seeds=3 if quick else 10, log=log
        )
    if "process" in only:
        log("5. the whole process ...")
        results["process"] = bench_process.run(repeats=1 if quick else 5, log=log)
    if "grading" in only:
        log("3. solution notebook and grading ...")
        results["notebook"] = bench_grading.run_notebook(repeats=1 if quick else 3, log=log)
        n = args.submissions or (3 if quick else 10)
        results["grading"] = bench_grading.run_grading(n, log=log)
    if "assignments" in only:
        n = args.submissions or (3 if quick else 10)
        results["assignments"] = {}
        for assignment in ASSIGNMENTS:
            log(f"3b. {assignment}: solution notebook and grading ...")
            results["assignments"][assignment] = {
                "notebook": bench_grading.run_notebook(repeats=1 if quick else 3, log=log,
                                                       assignment=assignment),
                "grading": bench_grading.run_grading(n, log=log, assignment=assignment),
            }
    if "cluster" in only:
        log("6. grading a large course: the coordinator, 1 and 2 Dask workers ...")
        results["cluster"] = bench_cluster.run(200 if quick else 1000, 2 if quick else 4,
                                               log=log)
    elapsed = time.perf_counter() - started

    report = render(results, info, command, quick, elapsed)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    print(report)
    log(f"wrote {out} ({elapsed:.0f} s)")
    return 0


def render(results: dict, info: dict, command: str, quick: bool, elapsed: float) -> str:
    loop = results.get("loop")
    original_single_seed = (
        Samples(loop["original"]["wall"]["total"].values) if loop is not None else None
    )
    lines = [
        "# Benchmarks",
        "",
        f"Produced by `{command}` (run from the repository root; `make bench` runs "
        f"`python -m benchmarks`) on {datetime.date.today().isoformat()}, in {elapsed:.0f} s"
        + (" - a **quick** run: one repeat, smoke-test quality." if quick else "."),
        "Timings are wall-clock seconds unless marked, as median (min-max) over the runs; "
        "CPU time is this process's user + system time (it exceeds wall time when torch uses "
        "several threads). No test asserts on these numbers.",
        "",
        "Machine:",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    rows = []
    if loop is not None:
        rows.append(("1. original loop against ours", *bench_loop.summary(loop)))
    if "multiseed" in results:
        ms = bench_multiseed.summary(results["multiseed"], original_single_seed)
        rows.append(("2. multi-seed training", *ms))
    if "notebook" in results:
        for row in bench_grading.summary(results["notebook"], results["grading"]):
            rows.append(("3. notebook and grading", *row))
    budgets = dict(per_submission_s=PER_SUBMISSION_S, notebook_budget_s=NOTEBOOK_BUDGET_S)
    for assignment, timed in results.get("assignments", {}).items():
        for row in bench_grading.summary(timed["notebook"], timed["grading"], **budgets):
            rows.append((f"3b. {assignment}: notebook and grading", *row))
    if "floor" in results:
        rows.append(("4. the floor", *bench_floor.summary(results["floor"])))
    if "process" in results:
        rows.append(("5. the whole process", *bench_process.summary(results["process"])))
    for row in bench_cluster.summary(results["cluster"]) if "cluster" in results else []:
        rows.append(("6. grading a large course", *row))
    lines += [
        "",
        "## Summary",
        "",
        "| measurement | target | result | verdict |",
        "|---|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} | **{d}** |" for a, b, c, d in rows]
    lines.append("")
    if loop is not None:
        lines.append(bench_loop.markdown(loop))
    if "multiseed" in results:
        lines.append(bench_multiseed.markdown(results["multiseed"], original_single_seed))
    if "notebook" in results:
        lines.append(bench_grading.markdown(results["notebook"], results["grading"]))
    for assignment, timed in results.get("assignments", {}).items():
        lines.append(bench_grading.markdown(
            timed["notebook"], timed["grading"],
            title=f"## 3b. {assignment}: the solution notebook and grading throughput",
            **budgets))
    if "floor" in results:
        lines.append(bench_floor.markdown(results["floor"], loop, results.get("multiseed")))
    if "process" in results:
        lines.append(bench_process.markdown(results["process"]))
    if "cluster" in results:
        lines.append(bench_cluster.markdown(results["cluster"]))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
