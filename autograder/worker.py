"""Grading worker: autogrades submissions one at a time, each in its own shard.

``python -m autograder.worker`` reads one JSON job per line on stdin::

    {"root": "<shard course dir>", "assignment": "...", "student": "...", "cell_timeout": 60,
     "seeds": {"inputs": int, "evaluation": int}, "sandbox": {...} or null}

runs nbgrader ``autograde`` (the student's notebook, for the feedback), the clean room and the
trusted verdicts (``autograder.cleanroom``, ``autograder.verdicts``) and ``generate_feedback``
in that shard, and answers one JSON line
on stdout: ``{"student", "autograde_ok", "feedback_ok", "error", "log", "seconds",
"autograde_seconds"}`` (the rest of ``seconds`` is the feedback).

The worker imports nbgrader once and serves many jobs, which saves its start-up time on every
submission. Student code never runs in this process (it runs in the kernel that nbgrader
starts, inside the job's sandbox: ``autograder.sandbox``); without the sandbox it could still
kill or stall it: the pipeline (``autograder.grade``) watches each
job with a wall-clock limit and replaces a worker that died or overran.
"""

from __future__ import annotations

import json
import os
import sys
import time


def grade_job(job: dict) -> dict:
    from autograder import sandbox

    start = time.perf_counter()
    with sandbox.for_job(job) as box:
        api = make_api_for(job, box)
        # the student's notebook in its kernel: for the feedback only, it decides no point
        autograded = api.autograde(job["assignment"], job["student"], force=True, create=True)
        # every process of the kernel is gone
        limits = box.finish().as_dict() if box else None
        result = {
            "student": job["student"],
            "autograde_ok": bool(autograded["success"]),
            "feedback_ok": False,
            "error": autograded.get("error") or "",
            "log": autograded.get("log") or "",
            **({"sandbox": limits} if limits else {}),
        }
        if autograded["success"]:  # the trusted verdicts replace nbgrader's scores
            result["cleanroom_seconds"] = decide(job)
        result["autograde_seconds"] = round(time.perf_counter() - start, 3)
        if autograded["success"]:
            feedback = api.generate_feedback(job["assignment"], job["student"], force=True)
            result["feedback_ok"] = bool(feedback["success"])
            if not feedback["success"]:
                result["error"] = feedback.get("error") or ""
                result["log"] += feedback.get("log") or ""
    result["seconds"] = round(time.perf_counter() - start, 3)
    return result


def make_api_for(job: dict, box):
    from autograder.course import make_api

    return make_api(job["root"], job.get("cell_timeout"), configure=box.configure if box else None)


def decide(job: dict) -> float:
    """Measure the submission in the clean room and write the trusted verdicts into the shard
    (gradebook and autograded notebook); the clean room's seconds."""
    from pathlib import Path

    import nbformat

    from autograder import cleanroom, verdicts
    from autograder.course import Course
    from fusionlab.grading.seeds import Seeds

    course = Course(Path(job["root"]), job["assignment"])
    seeds = Seeds(**job["seeds"])
    seconds = 0.0
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
        verdicts.apply(course.root, course.assignment, job["student"],
                       verdicts.decide(release, measurement, seeds,
                                       course.root / "source" / course.assignment))
    return round(seconds, 3)


def main() -> None:
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
