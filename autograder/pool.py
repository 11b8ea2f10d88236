"""The pool of grading workers: ``autograder.worker`` processes that each autograde one
submission at a time, every job under a wall-clock limit. A worker that dies or overruns is
replaced, and only the submission it was grading is affected."""

from __future__ import annotations

import json
import selectors
import subprocess
import sys
import threading
import time
from pathlib import Path

from . import sandbox
from .course import CourseError, grading_env

WORKER_START_TIMEOUT_S = 120


class Worker:
    """One ``autograder.worker`` process, replaced when it dies or overruns a job."""

    def __init__(self, cwd: Path, log_path: Path):
        self.cwd, self.log_path = cwd, log_path
        self.proc: subprocess.Popen | None = None
        self.ready = False

    def spawn(self) -> Worker:
        """Start the process; it imports nbgrader while the caller does other work."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "autograder.worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                cwd=self.cwd,
                env=grading_env(),
                start_new_session=True,  # its own process group: a kill reaches only this worker
            )
        self.ready = False
        return self

    def wait_ready(self) -> None:
        if self.ready:
            return
        answer = self._read_answer(WORKER_START_TIMEOUT_S)
        if not answer or not answer.get("ready"):
            self.kill()
            raise CourseError(f"a grading worker failed to start; see {self.log_path}")
        self.ready = True

    def start(self) -> None:
        self.spawn()
        self.wait_ready()

    def run(self, job: dict, timeout: float) -> dict | None:
        """Send ``job``; its answer, or None when the worker died or ran out of time."""
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        self.wait_ready()
        try:
            self.proc.stdin.write((json.dumps(job) + "\n").encode())
            self.proc.stdin.flush()
        except OSError:
            self.kill()
            return None
        answer = self._read_answer(timeout)
        if answer is None:
            self.kill()
        return answer

    def _read_answer(self, timeout: float) -> dict | None:
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                return None
        line = self.proc.stdout.readline()
        try:
            return json.loads(line)
        except ValueError:
            return None

    def kill(self) -> None:
        """Kill the worker and everything it started (its kernels run in their own sessions)."""
        if self.proc is None:
            return
        import psutil

        try:
            tree = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            tree = []
        for proc in [*tree]:
            try:
                proc.kill()
            except psutil.Error:
                pass
        try:
            self.proc.kill()
        except OSError:
            pass
        self.proc.wait()
        sandbox.clean_up_after(self.proc.pid)
        self.proc = None

    def close(self) -> None:
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
            self.proc = None
        except (OSError, subprocess.TimeoutExpired):
            self.kill()


def run_jobs(jobs: list[dict], workers: list[Worker], timeout: float) -> dict[str, dict]:
    """Run the jobs on the (spawned) workers; map student -> answer (an answer whose error
    says ``GradingTimeout`` or ``WorkerDied`` when the worker gave none)."""
    pending = list(reversed(jobs))
    answers: dict[str, dict] = {}
    lock = threading.Lock()
    failure: list[BaseException] = []

    def serve(worker: Worker) -> None:
        try:
            while True:
                with lock:
                    if not pending or failure:
                        return
                    job = pending.pop()
                start = time.perf_counter()
                answer = worker.run(job, timeout)
                seconds = time.perf_counter() - start
                if answer is None:
                    overran = seconds >= timeout
                    answer = {
                        "student": job["student"],
                        "autograde_ok": False,
                        "feedback_ok": False,
                        "error": (
                            f"GradingTimeout: grading took longer than {timeout:.0f} s and was "
                            "stopped" if overran else
                            "WorkerDied: the grading process died while running this submission"
                        ),
                        "log": "",
                    }
                answer["seconds"] = round(seconds, 3)
                with lock:
                    answers[job["student"]] = answer
        except BaseException as exc:  # a failure of the machinery, not of a submission
            with lock:
                failure.append(exc)

    threads = [threading.Thread(target=serve, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failure:
        raise failure[0]
    return answers
