"""Grading worker: autogrades submissions one at a time, each in its own shard.

``python -m autograder.worker`` reads one JSON job per line on stdin::

    {"root": "<shard course dir>", "assignment": "...", "student": "...", "cell_timeout": 60}

runs nbgrader ``autograde``, the trusted verdicts (``autograder.verdicts``) and
``generate_feedback`` in that shard and answers one JSON line
on stdout: ``{"student", "autograde_ok", "feedback_ok", "error", "log", "seconds",
"autograde_seconds"}`` (the rest of ``seconds`` is the feedback).

The worker imports nbgrader once and serves many jobs, which saves its start-up time on every
submission. Student code never runs in this process (it runs in the kernel that nbgrader
starts), but it can still kill or stall it: the pipeline (``autograder.grade``) watches each
job with a wall-clock limit and replaces a worker that died or overran.
"""

from __future__ import annotations

import json
import os
import sys
import time


def grade_job(job: dict) -> dict:
    from autograder import verdicts
    from autograder.course import make_api

    start = time.perf_counter()
    api = make_api(job["root"], job.get("cell_timeout"))
    request = verdicts.prepare(job["root"], job["assignment"], job["student"])
    autograded = api.autograde(job["assignment"], job["student"], force=True, create=True)
    if autograded["success"]:  # the trusted verdicts replace nbgrader's scores
        verdicts.apply(job["root"], job["assignment"], job["student"], request)
    result = {
        "student": job["student"],
        "autograde_ok": bool(autograded["success"]),
        "feedback_ok": False,
        "error": autograded.get("error") or "",
        "log": autograded.get("log") or "",
    }
    result["autograde_seconds"] = round(time.perf_counter() - start, 3)
    if autograded["success"]:
        feedback = api.generate_feedback(job["assignment"], job["student"], force=True)
        result["feedback_ok"] = bool(feedback["success"])
        if not feedback["success"]:
            result["error"] = feedback.get("error") or ""
            result["log"] += feedback.get("log") or ""
    result["seconds"] = round(time.perf_counter() - start, 3)
    return result


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
