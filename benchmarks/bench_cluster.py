"""Grading a large course (issue 21): the coordinator's own cost per submission, and throughput
on a real Dask cluster with 1 and 2 workers.

- **The coordinator.** ``autograder.grade`` on N small submissions (Part 1's solution, N
  students) with a simulated engine: every job's answer is what a worker sends back (the shard's
  gradebook with the verdicts, the autograded notebook, the feedback page), received into the
  shard as from a real worker. Everything else is the real path: release, intake, scan, shards,
  the preflight, the gradebook merges, ``grades.csv``, the feedback, ``results.json``, the
  summary. The simulated workers' own time is left out, so the rate is the coordinator's alone:
  the batch rate a cluster of unlimited workers could reach. Target (issue 21): 50
  submissions/s, per submission once the course is released (the release and the preflight
  are a few seconds once per run, given separately).
- **Workers.** A Dask scheduler and 1, then 2, ``dask worker`` processes on this machine
  (``--nthreads 1``); ``grade --scheduler`` on M Part 1 submissions, the preflight skipped.

``python -m benchmarks --only cluster`` (``--quick``: 200 simulated submissions, 2 real ones).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from autograder.preflight import UNTOUCHED

TARGET_PER_S = 50.0
PHASES = {"Releasing": "release", "Collecting": "intake, scan, shards", "Preflight:": "preflight",
          "Autograding": "jobs, then gradebook, feedback, report (simulated workers excluded)"}
ASSIGNMENT = "part1_fusion_strategies"


class SimulatedCluster:
    """Stands in for ``autograder.cluster.Cluster``: answers each job as a worker would (the
    shard's gradebook with the verdicts, written through nbgrader's API; the autograded
    notebook; a feedback page the size of the notebook), and the coordinator receives each
    answer with the real ``autograder.cluster.receive``. Only the simulated workers' part is
    timed as ``spent`` (not the coordinator's)."""

    spent = 0.0  # seconds inside the simulated workers (not the coordinator's)

    def __init__(self, address, *, sandboxed, echo=print, log=None):
        self.echo = echo

    def run_jobs(self, jobs: list[dict], timeout: float) -> dict[str, dict]:
        from autograder.cluster import receive

        answers = {}
        for job in jobs:
            start = time.perf_counter()
            answer = self._work(job)
            SimulatedCluster.spent += time.perf_counter() - start
            answers[job["student"]] = receive(answer, Path(job["root"]), job["student"])
        return answers

    @staticmethod
    def _work(job: dict) -> dict:
        """What a worker sends back for ``job`` (full marks; 0 for the untouched notebook)."""
        from nbgrader.api import Gradebook
        from sqlalchemy.exc import SAWarning

        from autograder.course import Course

        shard = Course(Path(job["root"]), job["assignment"])
        student, verdicts, files = job["student"], {}, {}
        with tempfile.TemporaryDirectory(prefix="simulated-worker-") as scratch:
            db = Path(scratch) / "gradebook.db"
            shutil.copy(shard.db_path, db)
            with warnings.catch_warnings(), Gradebook(f"sqlite:///{db}") as gb:
                warnings.simplefilter("ignore", SAWarning)  # nbgrader's autoflush notices
                gb.add_student(student)
                submission = gb.add_submission(job["assignment"], student)
                for notebook in submission.notebooks:
                    for grade in notebook.grades:  # the untouched notebook gets 0
                        passed = student != UNTOUCHED
                        grade.auto_score = grade.max_score if passed else 0.0
                        grade.needs_manual_grade = False
                        verdicts[grade.name] = {"passed": passed,
                                                "message": "" if passed else "not implemented"}
                gb.db.commit()
            files["gradebook.db"] = db.read_bytes()
        for name in shard.notebooks:
            notebook = (shard.submitted(student) / f"{name}.ipynb").read_bytes()
            files[f"autograded/{student}/{job['assignment']}/{name}.ipynb"] = notebook
            files[f"feedback/{student}/{job['assignment']}/{name}.html"] = (
                b"<html><body><pre>" + notebook + b"</pre></body></html>\n")
        return {"student": student, "autograde_ok": True, "feedback_ok": True, "error": "",
                "log": "", "seconds": 0.0, "verdicts": verdicts, "timed_out": False,
                "files": files}

    def close(self) -> None:
        pass


def copies_of_the_correct_example(tmp: Path, names) -> Path:
    """``tmp/submissions`` holding a copy of the demo's correct notebook for each of
    ``names`` (``<name>.ipynb``)."""
    from autograder.authoring.examples import write_examples

    examples = write_examples(ASSIGNMENT, tmp / "examples")
    correct = next(p for p in examples if p.stem == "correct")
    folder = tmp / "submissions"
    folder.mkdir()
    for name in names:
        shutil.copy(correct, folder / f"{name}.ipynb")
    return folder


def run_coordinator(n: int, log=print) -> dict:
    """The coordinator's rate on ``n`` small submissions (see the module doc): the whole run's
    (``per_s``), and per submission once the course is released and the preflight passed
    (``steady_per_s``: what limits a long batch; the target's verdict)."""
    import autograder.cluster
    from autograder.grade import grade

    with tempfile.TemporaryDirectory(prefix="bench-coordinator-") as tmp:
        tmp = Path(tmp)
        folder = copies_of_the_correct_example(
            tmp, [f"student{i:05d}" for i in range(n)])
        marks: list[tuple[float, str]] = []
        real = autograder.cluster.Cluster
        autograder.cluster.Cluster = SimulatedCluster
        SimulatedCluster.spent = 0.0
        load = os.getloadavg()[0]
        try:
            start = time.perf_counter()
            report = grade(ASSIGNMENT, folder, tmp / "out", scheduler="simulated",
                           echo=lambda line: marks.append((time.perf_counter(), line)))
            total = time.perf_counter() - start
        finally:
            autograder.cluster.Cluster = real
        graded = sum(1 for s in report.students if s.status == "graded"
                     and s.score == s.max_score)
    coordinator = total - SimulatedCluster.spent
    phases = {}  # each announced step, until the next announcement
    for (stamp, line), (after, _) in zip(marks, marks[1:] + [(start + total, "")]):
        name = PHASES.get(line.split(" ", 1)[0])
        if name:
            phases[name] = phases.get(name, 0.0) + after - stamp
    phases[PHASES["Autograding"]] -= SimulatedCluster.spent
    steady = coordinator - phases.get(PHASES["Releasing"], 0.0) - \
        phases.get(PHASES["Preflight:"], 0.0)
    result = {"n": n, "graded": graded, "total_s": round(total, 2),
              "workers_s": round(SimulatedCluster.spent, 2),
              "coordinator_s": round(coordinator, 2),
              "per_submission_ms": round(1000 * steady / n, 2),
              "steady_per_s": round(n / steady, 1),
              "per_s": round(n / coordinator, 1),
              "load": round(load, 1),
              "phases_s": {k: round(v, 2) for k, v in phases.items()}}
    log(f"   coordinator: {n} submissions in {coordinator:.1f} s of its own "
        f"({result['per_s']:.0f}/s; {result['steady_per_s']:.0f}/s once released, "
        f"target {TARGET_PER_S:g}/s; load average {load:.1f})")
    return result


def run_workers(n: int, counts=(1, 2), log=print) -> dict:
    """Throughput of ``grade --scheduler`` with 1 and 2 local Dask workers, ``n`` submissions."""
    from autograder import REPO_ROOT

    results = {}
    dask = str(Path(sys.executable).parent / "dask")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        tmp = Path(tmp)
        folder = copies_of_the_correct_example(
            tmp, [f"student{i:03d}" for i in range(n)])
        for count in counts:
            procs = []
            scheduler_file = tmp / f"scheduler-{count}.json"
            try:
                procs.append(subprocess.Popen(
                    [dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                     "--scheduler-file", str(scheduler_file)], env=env, cwd=REPO_ROOT,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                while not scheduler_file.exists():
                    time.sleep(0.2)
                address = json.loads(scheduler_file.read_text())["address"]
                for i in range(count):
                    procs.append(subprocess.Popen(
                        [dask, "worker", address, "--nthreads", "1", "--no-dashboard",
                         "--local-directory", str(tmp / f"w{count}-{i}")], env=env,
                        cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                start = time.perf_counter()
                done = subprocess.run(
                    [sys.executable, "-m", "autograder", "grade", ASSIGNMENT, str(folder),
                     "--out", str(tmp / f"out-{count}"), "--scheduler", address,
                     "--skip-preflight"], cwd=REPO_ROOT, capture_output=True, text=True)
                seconds = time.perf_counter() - start
            finally:
                for proc in reversed(procs):
                    proc.terminate()
                    proc.wait()
            data = json.loads((tmp / f"out-{count}" / "results.json").read_text()) \
                if done.returncode == 0 else {"students": []}
            graded = sum(1 for s in data["students"] if s["score"] == s["max_score"])
            results[count] = {"n": n, "seconds": round(seconds, 1), "full_marks": graded,
                              "per_minute": round(60 * n / seconds, 1),
                              "error": "" if done.returncode == 0 else done.stderr[-500:]}
            log(f"   {count} Dask worker(s): {n} submissions in {seconds:.0f} s")
    return results


def run_preflight(log=print) -> dict:
    """The preflight's cost in one ordinary run (default workers, sandboxed): the seconds it
    reports, against the whole command's."""
    import re

    from autograder import REPO_ROOT

    with tempfile.TemporaryDirectory(prefix="bench-preflight-") as tmp:
        tmp = Path(tmp)
        folder = copies_of_the_correct_example(tmp, ["alice"])
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "autograder", "grade", ASSIGNMENT,
                               str(folder), "--out", str(tmp / "out")], cwd=REPO_ROOT,
                              capture_output=True, text=True)
        total = time.perf_counter() - start
    found = re.search(r"Preflight passed in ([\d.]+) s", done.stdout)
    seconds = float(found.group(1)) if found else float("nan")
    log(f"   preflight: {seconds:.1f} s of a {total:.0f} s run grading one submission")
    return {"seconds": seconds, "run_s": round(total, 1), "ok": done.returncode == 0}


def run(n_simulated: int, n_real: int, log=print) -> dict:
    return {"coordinator": run_coordinator(n_simulated, log=log),
            "workers": run_workers(n_real, log=log), "preflight": run_preflight(log=log)}


def summary(result: dict) -> list[tuple[str, str, str]]:
    coordinator = result["coordinator"]
    rows = [(f"the coordinator: >= {TARGET_PER_S:g} submissions/s",
             f"{coordinator['steady_per_s']:g}/s once released "
             f"({coordinator['per_submission_ms']:g} ms each; {coordinator['per_s']:g}/s with "
             f"the release and preflight; {coordinator['n']} simulated submissions)",
             "PASS" if coordinator["steady_per_s"] >= TARGET_PER_S else "FAIL")]
    if "preflight" in result:
        rows.append(("the preflight: about one submission's time",
                     f"{result['preflight']['seconds']:g} s per run",
                     "PASS" if result["preflight"]["ok"] else "FAIL"))
    workers = result["workers"]
    if workers:
        one, most = workers[min(workers)], workers[max(workers)]
        rows.append(("scales with the workers",
                     ", ".join(f"{k} worker(s): {v['per_minute']:g}/min" for k, v in
                               sorted(workers.items())),
                     "PASS" if most["per_minute"] > one["per_minute"] else "FAIL"))
    return rows


def markdown(result: dict) -> str:
    coordinator = result["coordinator"]
    lines = ["## 6. Grading a large course: the coordinator and the Dask workers", "",
             __doc__.split("\n\n", 1)[1].split("``python -m")[0].strip(), "",
             f"Coordinator: {coordinator['n']} submissions ({coordinator['graded']} graded) in "
             f"{coordinator['total_s']:g} s, of which {coordinator['workers_s']:g} s in the "
             f"simulated workers: **{coordinator['steady_per_s']:g} submissions/s** once the "
             f"course is released and the preflight passed ({coordinator['per_submission_ms']:g}"
             f" ms each; target {TARGET_PER_S:g}/s), {coordinator['per_s']:g}/s over the whole "
             f"run. Its steps: "
             + ", ".join(f"{k} {v:g} s" for k, v in coordinator["phases_s"].items())
             + f" (load average {coordinator.get('load', float('nan')):g} at the start).", "",
             "| Dask workers | submissions | seconds | per minute | full marks |",
             "|---|---|---|---|---|"]
    for count, row in sorted(result["workers"].items()):
        lines.append(f"| {count} | {row['n']} | {row['seconds']:g} | {row['per_minute']:g} | "
                     f"{row['full_marks']}/{row['n']} |")
    if "preflight" in result:
        lines += ["", f"The preflight (the solution and the untouched notebook graded first, "
                      f"default workers): {result['preflight']['seconds']:g} s of a "
                      f"{result['preflight']['run_s']:g} s run that grades one submission. "
                      "Sections 3 and 3b grade with `--skip-preflight`, so that their figures "
                      "stay per submission."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    outcome = run(200 if quick else 1000, 2 if quick else 4, log=print)
    print(markdown(outcome))
