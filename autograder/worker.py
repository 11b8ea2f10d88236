"""Grading worker: autogrades submissions one at a time, each in its own shard.

``python -m autograder.worker`` reads one JSON job per line on stdin (``"notebook_run": false``:
nbgrader does not run the notebook, see ``--no-notebook-run``)::

    {"root": "<shard course dir>", "assignment": "...", "student": "...", "cell_timeout": 60,
     "seeds": {"inputs": int, "evaluation": int}, "sandbox": {...} or null}

runs nbgrader ``autograde`` (the student's notebook, for the feedback), the clean room and the
trusted verdicts (``autograder.cleanroom``, ``autograder.verdicts``) and ``generate_feedback``
in that shard, and answers one JSON line
on stdout: ``{"student", "autograde_ok", "feedback_ok", "error", "log", "seconds",
"autograde_seconds", "phases", "verdicts", "timed_out"}`` (the rest of ``seconds`` is the feedback;
``phases``: the seconds of each phase, ``Phases``;
``verdicts``: grade_id -> {"passed", "message"}, the clean room's, also when the notebook's run
failed; ``timed_out``: a cell ran past its limit, in the kernel or in the clean room).

The worker imports nbgrader once and serves many jobs, which saves its start-up time on every
submission. Student code never runs in this process (it runs in the kernel that nbgrader
starts, inside the job's sandbox: ``autograder.sandbox``); without the sandbox it could still
kill or stall it: the pipeline (``autograder.grade``) watches each
job with a wall-clock limit and replaces a worker that died or overran.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time


def grade_job(job: dict) -> dict:
    from autograder import sandbox

    start = time.perf_counter()
    phases = Phases()
    run_notebook = job.get("notebook_run", True)
    # without the notebook's run no student code runs here: only the clean room, sandboxed
    # on its own, needs the sandbox
    with sandbox.for_job(job) if run_notebook else contextlib.nullcontext() as box:
        api = make_api_for(job, box)
        phases.lap("setup")
        # the student's notebook in its kernel: for the feedback only, it decides no point
        # (``--no-notebook-run``: nbgrader only restores the hidden tests, and the feedback
        # shows the notebook with the student's own outputs)
        autograded = api.autograde(job["assignment"], job["student"], force=True, create=True)
        phases.lap("notebook")
        # every process of the kernel is gone
        limits = box.finish().as_dict() if box else None
        phases.lap("sandbox")
        result = {
            "student": job["student"],
            "autograde_ok": bool(autograded["success"]),
            "feedback_ok": False,
            "error": autograded.get("error") or "",
            "log": autograded.get("log") or "",
            "timed_out": run_notebook and _kernel_timed_out(job, autograded),
            **({"sandbox": limits} if limits else {}),
        }
        # the trusted verdicts, whatever the notebook's run did (a notebook that crashes or
        # hangs in a later cell still gets its TODO cells' verdicts); they replace nbgrader's
        # scores in the shard when the run succeeded, otherwise the pipeline records them
        try:
            decided, result["cleanroom_seconds"], cleanroom_timed_out = decide(job)
            phases.lap("verdicts", minus=result["cleanroom_seconds"])
        except Exception as exc:  # noqa: BLE001 (reported as the submission's failure)
            decided, cleanroom_timed_out = None, False
            result["error"] = (result["error"] + "\n" if result["error"] else "") + (
                f"the trusted verdicts could not be computed: {type(exc).__name__}: {exc}")
        result["timed_out"] = result["timed_out"] or cleanroom_timed_out
        if decided is not None:
            result["verdicts"] = {grade_id: {"passed": bool(v.passed), "message": str(v.message)}
                                  for grade_id, v in decided.items()}
        if autograded["success"] and decided is not None:
            apply_verdicts(job, decided)
            if not run_notebook:
                say_not_run(job)
        phases.lap("gradebook")
        result["autograde_seconds"] = round(time.perf_counter() - start, 3)
        if autograded["success"] and decided is not None:
            feedback = api.generate_feedback(job["assignment"], job["student"], force=True)
            result["feedback_ok"] = bool(feedback["success"])
            if not feedback["success"]:
                result["error"] = feedback.get("error") or ""
                result["log"] += feedback.get("log") or ""
        phases.lap("feedback")
    phases.lap("cleanup")
    result["seconds"] = round(time.perf_counter() - start, 3)
    result["phases"] = phases.seconds
    return result


class Phases:
    """Where a job's seconds go, phase by phase (the benchmark's profile): ``setup`` (the
    sandbox and nbgrader's API), ``notebook`` (the kernel's start and the student's notebook),
    ``sandbox`` (waiting for the kernel's processes to end), ``cleanroom`` (the clean room's
    sandboxed process), ``verdicts`` (the trusted checks), ``gradebook`` (the verdicts
    written), ``feedback`` (nbgrader's HTML) and ``cleanup`` (the sandbox taken down)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str, minus: float = 0.0) -> None:
        """Book the time since the last lap to ``name``; ``minus`` seconds of it, measured
        inside, go to ``cleanroom``."""
        now = time.perf_counter()
        if minus:
            self.seconds["cleanroom"] = round(minus, 3)
        self.seconds[name] = round(max(now - self._last - minus, 0.0), 3)
        self._last = now


def _kernel_timed_out(job: dict, autograded: dict) -> bool:
    """Did a cell of the notebook's run time out (in the autograded notebook, or the run)?"""
    from pathlib import Path

    text = (autograded.get("error") or "") + (autograded.get("log") or "")
    if "CellTimeoutError" in text or "UnresponsiveKernelError" in text:
        return True
    folder = Path(job["root"]) / "autograded" / job["student"] / job["assignment"]
    for path in folder.glob("*.ipynb"):
        try:
            if "CellTimeoutError" in path.read_text(errors="replace"):
                return True
        except OSError:
            pass
    return False


def make_api_for(job: dict, box):
    from autograder.course import make_api

    def configure(config) -> None:
        if box:
            box.configure(config)
        if not job.get("notebook_run", True):  # keep the submitted outputs; run no cell
            config.ClearOutput.enabled = False
            config.Execute.enabled = False

    return make_api(job["root"], job.get("cell_timeout"), configure=configure)


def decide(job: dict):
    """Measure the submission in the clean room: (grade_id -> verdict, the clean room's
    seconds, whether a cell or a collection ran past its limit there)."""
    from pathlib import Path

    import nbformat

    from autograder import cleanroom, verdicts
    from autograder.course import Course
    from fusionlab.grading.seeds import Seeds

    course = Course(Path(job["root"]), job["assignment"])
    seeds = Seeds(**job["seeds"])
    seconds, decided, timed_out = 0.0, {}, False
    for name in course.notebooks:
        release = nbformat.read(course.root / "release" / course.assignment / f"{name}.ipynb",
                                as_version=4)
        submitted = nbformat.read(course.submitted(job["student"]) / f"{name}.ipynb",
                                  as_version=4)
        measurement = cleanroom.measure(
            release, submitted, seeds, limits=job.get("sandbox"),
            cell_timeout=job.get("cell_timeout") or cleanroom.DEFAULT_CELL_TIMEOUT_S,
            workdir=course.root, module_dir=course.root / "source" / course.assignment)
        seconds += measurement.seconds
        found = verdicts.decide(release, measurement, seeds,
                                course.root / "source" / course.assignment)
        timed_out |= PAST_LIMIT in measurement.error or any(
            PAST_LIMIT in v.message for v in found.values())
        decided.update(found)
    return decided, round(seconds, 3), timed_out


PAST_LIMIT = "ran past its"  # the clean room's words for a time limit reached


def apply_verdicts(job: dict, decided: dict) -> None:
    """Write the trusted verdicts into the shard (gradebook and autograded notebook)."""
    from autograder import verdicts

    verdicts.apply(job["root"], job["assignment"], job["student"], decided)


NOT_RUN_NOTE = (
    "**This page shows your notebook as you submitted it, with your own outputs: the grader "
    "did not run it again.** Your points come from the grader's clean room, which ran your TODO "
    "cells on their own with inputs of its own; each graded cell below shows its verdict and "
    "the reason of every lost point.")


def say_not_run(job: dict) -> None:
    """Put ``NOT_RUN_NOTE`` at the top of the autograded notebooks (``--no-notebook-run``), so
    that nobody takes the outputs on the feedback page for the grader's."""
    from pathlib import Path

    import nbformat
    from nbformat.v4 import new_markdown_cell

    folder = Path(job["root"]) / "autograded" / job["student"] / job["assignment"]
    for path in folder.glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        nb.cells.insert(0, new_markdown_cell(NOT_RUN_NOTE))
        nbformat.write(nb, path)


WORKER_MEMORY_LIMIT = 3 * 2**30  # bytes of data (RLIMIT_DATA) of the trusted worker itself


def limit_own_memory(limit: int = WORKER_MEMORY_LIMIT) -> None:
    """Bound this process's data (heap and anonymous mappings): a submission whose outputs or
    files are huge makes this one job fail with MemoryError, never the machine. Only the soft
    limit: the sandbox's launcher sets its kernels' own limits."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    value = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (value, hard))


def main() -> None:
    limit_own_memory(int(os.environ.get("AUTOGRADER_WORKER_MEMORY", WORKER_MEMORY_LIMIT)))
    # Keep fd 1 for our answers; anything else that prints (nbgrader, a library) goes to stderr.
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    import nbgrader.apps  # noqa: F401  (import once, before the first job)

    answers.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        try:
            result = grade_job(job)
        except Exception as exc:  # never let one submission end the worker
            result = {
                "student": job.get("student"),
                "autograde_ok": False,
                "feedback_ok": False,
                "error": f"{type(exc).__name__}: {exc}",
                "log": "",
            }
        answers.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
