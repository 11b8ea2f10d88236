"""Measurement 3: the Part 1 solution notebook and the autograder's throughput.

- The solution notebook (``solutions/part1_fusion_strategies.ipynb``) executed top to bottom
  in a fresh kernel with nbclient, as a student's "Run all" (kernel start included).
- The autograder (``python -m autograder grade ASSIGNMENT SUBMISSIONS --out DIR``) on N copies
  of its correct example submission: once with one worker, which gives each submission's own
  grading time (the median over the N is the per-submission figure), the same without the
  sandbox (``--no-sandbox``: what the sandbox costs, at most 20% by issue 8), and once with the
  default workers (one per core), the batch figure. Every copy must come back graded with
  full marks: a missing or lower grade is counted as lost.
- One submission alone, end to end (release, grade, feedback, export): an instructor's latency.

Each part reports "not available" with the reason when what it needs is missing (a notebook
not generated, Jupyter not installed).
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from autograder.masters import master_path

from .timing import Samples, Timer, usable_cores

REPO = Path(__file__).resolve().parent.parent
ASSIGNMENT = "part1_fusion_strategies"
SOLUTION = REPO / "solutions" / f"{ASSIGNMENT}.ipynb"
MASTER = master_path(ASSIGNMENT)


# ----------------------------------------------------------------------------- the notebook


def run_notebook(repeats: int, log=print, assignment: str = ASSIGNMENT) -> dict:
    solution = REPO / "solutions" / f"{assignment}.ipynb"
    if not solution.exists():
        return {"available": False, "reason": f"{solution.relative_to(REPO)} is missing: "
                                               "run `make notebooks`"}
    try:
        import nbformat
        from nbclient import NotebookClient
    except ImportError as exc:
        return {
            "available": False,
            "reason": f"nbclient/nbformat missing ({exc}); install '.[instructor]'",
        }
    wall = Samples()
    for r in range(repeats):
        nb = nbformat.read(solution, as_version=4)
        client = NotebookClient(
            nb,
            timeout=900,
            kernel_name="python3",
            resources={"metadata": {"path": str(solution.parent)}},
        )
        try:
            with Timer() as t:
                client.execute()
        except Exception as exc:  # a failing notebook is a result, not a crash of the benchmark
            return {
                "available": False,
                "reason": f"execution failed: {type(exc).__name__}: "
                f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}",
            }
        wall.add(t.wall)
        log(f"  notebook run {r + 1}/{repeats}: {t.wall:.1f} s")
    return {"available": True, "wall": wall, "cells": len(nb.cells), "assignment": assignment}


# ----------------------------------------------------------------------------- grading


def _autograder(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "autograder", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _tail(proc: subprocess.CompletedProcess) -> str:
    lines = (proc.stderr or proc.stdout or "").strip().splitlines()
    return lines[-1] if lines else f"exit code {proc.returncode}"


def _grading_missing(assignment: str = ASSIGNMENT) -> str | None:
    master = master_path(assignment)
    if not master.exists():
        return f"{master.relative_to(REPO)} is missing"
    return None


def _pick_correct(paths: list[Path]) -> Path:
    for word in ("correct", "solution", "full"):
        for p in paths:
            if word in p.stem.lower() and "in" + word not in p.stem.lower():
                return p
    return paths[0]


def _check_batch(out: Path, n: int) -> dict:
    results = json.loads((out / "results.json").read_text())
    students = results["students"]
    full = [s for s in students if s["status"] == "graded" and s["score"] >= s["max_score"]]
    with open(out / "grades.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    phases: dict[str, list[float]] = {}
    for student in students:
        for phase, seconds in (student.get("phases") or {}).items():
            phases.setdefault(phase, []).append(seconds)
    return {
        "seconds": Samples([s["seconds"] for s in students]),
        "phases": {phase: Samples(values) for phase, values in phases.items()},
        "lost": n - len(full),
        "csv_rows": len(rows),
        "max_score": results["max_score"],
    }


def run_grading(n: int, log=print, assignment: str = ASSIGNMENT) -> dict:
    missing = _grading_missing(assignment)
    if missing:
        return {"available": False, "reason": missing}
    work = Path(tempfile.mkdtemp(prefix="fusionlab-bench-grading-"))
    try:
        proc = _autograder("examples", assignment, "--out", str(work / "examples"), timeout=600)
        examples = sorted((work / "examples").glob("*.ipynb"))
        if proc.returncode != 0 or not examples:
            return {"available": False, "reason": f"`autograder examples` failed: {_tail(proc)}"}
        correct = _pick_correct(examples)
        batch = work / "batch"
        batch.mkdir()
        for i in range(n):
            shutil.copy(correct, batch / f"student{i + 1:02d}.ipynb")
        single = work / "single"
        single.mkdir()
        shutil.copy(correct, single / "student01.ipynb")

        result = {"available": True, "n": n, "example": correct.name, "cores": usable_cores(),
                  "assignment": assignment}
        runs = {"one worker": ["--workers", "1"],
                "one worker, no notebook run": ["--workers", "1", "--no-notebook-run"],
                "one worker, no sandbox": ["--workers", "1", "--no-sandbox"],
                "default workers": []}
        for label, extra in runs.items():
            out = work / f"out-{label.replace(' ', '-')}"
            with Timer() as t:
                proc = _autograder(
                    "grade",
                    assignment,
                    str(batch),
                    "--out",
                    str(out),
                    *extra,
                    "--skip-preflight",  # a fixed cost per run: section 6 measures it
                    timeout=300 + 120 * n,
                )
            if proc.returncode != 0:
                return {
                    "available": False,
                    "reason": f"`autograder grade` ({label}) failed: {_tail(proc)}",
                }
            result[label] = {"wall": t.wall, **_check_batch(out, n)}
            log(f"  grading {n} submissions, {label}: {t.wall:.1f} s")
        out = work / "out-single"
        with Timer() as t:
            proc = _autograder("grade", assignment, str(single), "--out", str(out),
                               "--skip-preflight", timeout=600)
        if proc.returncode == 0:
            result["single"] = {"wall": t.wall, **_check_batch(out, 1)}
        return result
    except subprocess.TimeoutExpired as exc:
        return {"available": False, "reason": f"timed out after {exc.timeout:.0f} s"}
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ----------------------------------------------------------------------------- report


def _notebook_verdict(notebook: dict, budget_s: float | None) -> str:
    if not notebook["available"]:
        return "not available"
    if budget_s is None:
        return "measured"
    return "met" if notebook["wall"].median <= budget_s else "NOT met"


def summary(notebook: dict, grading: dict, per_submission_s: float = 5.0,
            notebook_budget_s: float | None = None) -> list[tuple[str, str, str]]:
    """Summary rows; ``notebook_budget_s``: the solution notebook's target (median), if any."""
    nb = (
        "solution notebook, fresh kernel " + (f"<= {notebook_budget_s:g} s (median)"
                                              if notebook_budget_s else "(no target)"),
        f"{notebook['wall'].fmt(1)} s" if notebook["available"] else "not available",
        _notebook_verdict(notebook, notebook_budget_s),
    )
    target = (f"<= {per_submission_s:g} s per submission (median) on 2 cores; batch on both "
              "cores; no grade lost")
    overhead_target = "sandbox costs <= 20% per submission (median, one worker)"
    if not grading["available"]:
        return [nb, (target, "not available", "not evaluated"),
                (overhead_target, "not available", "not evaluated")]
    serial, parallel = grading["one worker"], grading["default workers"]
    quick = grading.get("one worker, no notebook run")
    lost = serial["lost"] + parallel["lost"] + (quick["lost"] if quick else 0)
    met = serial["seconds"].median <= per_submission_s and lost == 0
    quick_met = bool(quick) and quick["seconds"].median <= per_submission_s and lost == 0
    result = (
        f"{serial['seconds'].median:.1f} s per submission"
        + (f" ({quick['seconds'].median:.1f} s with --no-notebook-run)" if quick else "")
        + f"; {grading['n']} in {parallel['wall']:.0f} s on {grading['cores']} workers; "
        f"{lost} lost"
    )
    verdict = "met" if met else "met with --no-notebook-run" if quick_met else "NOT met"
    overhead = sandbox_overhead(grading)
    return [nb, (target, result, verdict),
            (overhead_target, f"{overhead:+.0%}", "met" if overhead <= 0.20 else "NOT met")]


def sandbox_overhead(grading: dict) -> float:
    """Median per-submission time with the sandbox over without it, minus 1."""
    bare = grading["one worker, no sandbox"]["seconds"].median
    return grading["one worker"]["seconds"].median / bare - 1


def markdown(notebook: dict, grading: dict,
             title: str = "## 3. The solution notebook and grading throughput",
             per_submission_s: float = 5.0, notebook_budget_s: float | None = None) -> str:
    lines = [title, ""]
    if notebook["available"]:
        lines.append(
            f"Solution notebook (`solutions/{notebook['assignment']}.ipynb`, "
            f"{notebook['cells']} cells), "
            f"executed in a fresh kernel with nbclient (kernel start included): "
            f"**{notebook['wall'].fmt(1)} s** wall, median (min-max) of "
            f"{len(notebook['wall'].values)} run(s)"
            + (f"; target <= {notebook_budget_s:g} s: "
               f"**{_notebook_verdict(notebook, notebook_budget_s)}**." if notebook_budget_s
               else ".")
        )
    else:
        lines.append(f"Solution notebook: **not available** ({notebook['reason']}).")
    lines.append("")
    if not grading["available"]:
        lines += [
            f"Grading: **not available** ({grading['reason']}).",
            "",
            f"**Target** (<= {per_submission_s:g} s per submission, median, on 2 cores; the "
            "batch uses both cores "
            "safely and loses no grade): not evaluated.",
            "",
        ]
        return "\n".join(lines)
    n = grading["n"]
    serial, parallel = grading["one worker"], grading["default workers"]
    per_sub = serial["seconds"]
    lines += [
        f"Autograder (`python -m autograder grade {grading.get('assignment', ASSIGNMENT)} "
        f"DIR --out OUT`) on {n} copies of "
        f"the example `{grading['example']}` ({serial['max_score']:g} points each). "
        "Per submission: the worker's time for that submission (autograde and feedback in its "
        "own shard), from `results.json`.",
        "",
        "| run | wall (s) | per submission (s) | grades lost |",
        "|---|---|---|---|",
        f"| {n} submissions, one worker | {serial['wall']:.1f} | {per_sub.fmt(1)} "
        f"| {serial['lost']} of {n} |",
        *([f"| {n} submissions, one worker, `--no-notebook-run` "
           f"| {grading['one worker, no notebook run']['wall']:.1f} "
           f"| {grading['one worker, no notebook run']['seconds'].fmt(1)} "
           f"| {grading['one worker, no notebook run']['lost']} of {n} |"]
          if "one worker, no notebook run" in grading else []),
        f"| {n} submissions, one worker, `--no-sandbox` "
        f"| {grading['one worker, no sandbox']['wall']:.1f} "
        f"| {grading['one worker, no sandbox']['seconds'].fmt(1)} "
        f"| {grading['one worker, no sandbox']['lost']} of {n} |",
        f"| {n} submissions, default workers ({grading['cores']} cores) | {parallel['wall']:.1f} "
        f"| {parallel['wall'] / n:.1f} (wall / N) | {parallel['lost']} of {n} |",
    ]
    if "single" in grading:
        single = grading["single"]
        lines.append(
            f"| 1 submission alone, end to end | {single['wall']:.1f} | {single['wall']:.1f} "
            f"| {single['lost']} of 1 |"
        )
    if serial.get("phases"):
        lines += ["", "Where one submission's time goes (one worker, median seconds per phase, "
                  "from `results.json`; `autograder.worker.Phases`): "
                  + ", ".join(f"{phase} {samples.median:.2f}"
                              for phase, samples in serial["phases"].items()) + "."]
    verdict = summary(notebook, grading, per_submission_s)[1][2]
    speedup = serial["wall"] / parallel["wall"]
    lines += [
        "",
        f"**Target** (<= {per_submission_s:g} s per submission, median, on 2 cores; the batch "
        "uses both cores "
        f"safely and loses no grade): **{verdict}**: median "
        f"{per_sub.median:.1f} s per submission"
        + (f" ({grading['one worker, no notebook run']['seconds'].median:.1f} s with "
           "`--no-notebook-run`, which gives the same points and a feedback page of the "
           "notebook as submitted)" if "one worker, no notebook run" in grading else "")
        + f"; the batch runs {speedup:.1f}x faster on "
        f"the default workers than on one; {parallel['lost']} grade(s) lost. Grades are "
        "written by one process only (the workers grade into their own shards, see "
        "`autograder/grade.py`), so the sqlite gradebook is never written concurrently.",
        "",
        f"**Sandbox** (every kernel in bubblewrap with its limits, `autograder/sandbox.py`): "
        f"{sandbox_overhead(grading):+.0%} per submission (median, one worker) over "
        f"`--no-sandbox`; target <= +20%: "
        f"**{'met' if sandbox_overhead(grading) <= 0.20 else 'NOT met'}**.",
        "",
    ]
    return "\n".join(lines)
