"""The clean room: where the grader measures what a submission's TODO cells do.

The student's notebook runs in its own kernel for the feedback; nothing it prints or records
decides a point. The grader instead starts this module in a fresh sandboxed process::

    python -m fusionlab.grading.cleanroom JOB_DIR OUT_DIR

which runs only this code of the submission, in one namespace, in this order:

1. the imports of the released notebook's setup cell (its first code cell);
2. the submission's TODO cells (its solution cells, found by grade_id, in notebook order);
3. the released notebook's visible test cells, each on its own (pass, or the error it raised);

then, for each exercise of the job, the exercise's collector on the class or function the TODO
defined, with the grading seed, and its training run, whose predictions on the grader's inputs
(``JOB_DIR/inputs.npz``: no labels) are recorded. ``OUT_DIR`` receives
``evidence/<exercise>.npz`` and ``cells.json`` (what each cell raised). The trusted process
reads them (``autograder``) and decides every verdict there.

``JOB_DIR/job.json``: ``{"seed": int, "setup": source, "todo": [[grade_id, source], ...],
"visible": [[grade_id, source], ...], "exercises": [name, ...], "modules": [module, ...],
"cell_timeout": seconds}`` (``modules``: a course's own exercise modules, copied into
``JOB_DIR/modules``; ``cell_timeout``: the limit of each cell and each exercise's collection).
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import signal
import sys
import time
import traceback
from pathlib import Path

from . import registry
from .toolkit import load, remember_known_classes, save

MAX_LOG_CHARS = 64 * 1024  # what the TODO cells print is kept for the log, up to this size
MAX_ERROR_CHARS = 2000


def strip_magics(source: str) -> str:
    """``source`` without IPython's ``%`` and ``!`` lines (the clean room runs plain Python)."""
    return "\n".join("pass  # (IPython line removed)" if line.lstrip().startswith(("%", "!"))
                     else line for line in source.splitlines())


def setup_imports(source: str) -> str:
    """The top-level import statements of a notebook's setup cell, as source: what a TODO cell
    may rely on (``torch``, ``nn``, the package's given layers)."""
    tree = ast.parse(strip_magics(source))
    return "\n".join(ast.unparse(node) for node in tree.body
                     if isinstance(node, (ast.Import, ast.ImportFrom)))


class _BoundedLog(io.TextIOBase):
    """A text sink that keeps the first ``MAX_LOG_CHARS`` characters and drops the rest."""

    def __init__(self):
        self.parts: list[str] = []
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, text) -> int:
        text = str(text)
        room = MAX_LOG_CHARS - self.size
        if room > 0:
            self.parts.append(text[:room])
            self.size += min(len(text), room)
        return len(text)

    def getvalue(self) -> str:
        return "".join(self.parts)


_SOURCES: dict[str, list[str]] = {}  # "<cell NAME>" -> its lines, for the error messages


def _error_text(error: BaseException) -> str:
    """The error in one line, plus the cell line that raised it when it is a cell's."""
    where = ""
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        lines = _SOURCES.get(frame.filename)
        if lines is not None:
            line = lines[frame.lineno - 1].strip() if 0 < frame.lineno <= len(lines) else ""
            where = f" ({frame.filename[1:-1]}, line {frame.lineno}: {line})"
            break
    message = str(error)
    text = f"{type(error).__name__}: {message}" if message else type(error).__name__
    return (text + where)[:MAX_ERROR_CHARS]


class CellTimeout(BaseException):
    """Raised in a cell that runs past its time (a BaseException: ``except Exception`` in the
    student's code does not swallow it)."""


@contextlib.contextmanager
def time_limit(seconds: float | None, what: str):
    """Raise ``CellTimeout`` in the block after ``seconds`` (SIGALRM; none without a limit).

    It nests in an enclosing SIGALRM limit (a test runner's, say): whichever deadline comes
    first fires, and the enclosing one keeps its remaining time afterwards."""
    if not seconds or not hasattr(signal, "SIGALRM"):
        yield
        return
    start = time.monotonic()
    outer_left, outer_interval = signal.getitimer(signal.ITIMER_REAL)
    outer_fired = []

    def expired(signum, frame):
        elapsed = time.monotonic() - start
        if outer_left and not outer_fired and elapsed >= outer_left - 0.01:
            outer_fired.append(True)
            if callable(previous):  # the enclosing limit came first: its handler decides
                previous(signum, frame)
            if elapsed < seconds:  # it let the block go on: our own limit still stands
                signal.setitimer(signal.ITIMER_REAL, seconds - elapsed)
                return
        raise CellTimeout(f"{what} ran past its {seconds:g} s limit")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, min(seconds, outer_left) if outer_left else seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_left and not outer_fired:  # what is left of the enclosing limit
            left = max(outer_left - (time.monotonic() - start), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, left, outer_interval)


def run_cell(source: str, name: str, namespace: dict, timeout: float | None = None) -> str:
    """Run one cell's ``source`` in ``namespace`` (at most ``timeout`` seconds); "" or what it
    raised."""
    filename = f"<cell {name}>"
    source = strip_magics(source)
    _SOURCES[filename] = source.splitlines()
    try:
        code = compile(source, filename, "exec")
        with time_limit(timeout, "the cell"):
            exec(code, namespace)  # noqa: S102 (the submission's own code, in the sandbox)
    except BaseException as error:  # noqa: BLE001 (SystemExit and KeyboardInterrupt too)
        return _error_text(error)
    return ""


def collect(exercise: registry.Exercise, target, seed: int, inputs: dict) -> dict:
    """The exercise's evidence on ``target`` (``None`` when the TODO defined nothing of that
    name), with its training run's predictions on ``inputs`` when it trains."""
    import numpy as np

    if target is None:
        return {"status": np.array(f"error: the TODO cells define no `{exercise.target}`")}
    ev = exercise.collect(target, seed)
    if exercise.trains and str(ev.get("status", "ok")) == "ok":
        from .toolkit import record_training

        mine = {k.split("/", 1)[1]: v for k, v in inputs.items()
                if k.startswith(f"{exercise.name}/")}
        record_training(ev, lambda: exercise.train(target, seed, mine))
    return ev


def run_job(job_dir: Path, out_dir: Path) -> dict:
    """Run the job of ``job_dir`` and write its results into ``out_dir``; returns cells.json."""
    job = json.loads((job_dir / "job.json").read_text())
    if job.get("modules"):  # a course's own exercise modules, copied into the job
        sys.path.insert(0, str(job_dir / "modules"))
    for module in job.get("modules", []):
        registry.load(module)
    timeout = job.get("cell_timeout")
    inputs = load(job_dir / "inputs.npz") if (job_dir / "inputs.npz").exists() else {}
    # the exercises, and the classes a submission could borrow, are looked up before any
    # submitted code runs
    exercises = [registry.exercise(name) for name in job["exercises"]]
    remember_known_classes()
    cells: dict = {"setup": "", "todo": {}, "visible": {}}
    namespace: dict = {"__name__": "__main__"}
    log = _BoundedLog()
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        cells["setup"] = run_cell(setup_imports(job.get("setup", "")), "setup", namespace)
        for grade_id, source in job["todo"]:
            error = run_cell(source, grade_id, namespace, timeout)
            if error and not cells["todo"].get(grade_id):
                cells["todo"][grade_id] = error
            cells["todo"].setdefault(grade_id, "")
        for grade_id, source in job["visible"]:
            cells["visible"][grade_id] = run_cell(source, grade_id, dict(namespace), timeout)
        evidence = {}
        for exercise in exercises:
            target = namespace.get(exercise.target)
            try:
                with time_limit(timeout, f"collecting the evidence of {exercise.target}"):
                    evidence[exercise.name] = collect(exercise, target, int(job["seed"]),
                                                      inputs)
            except BaseException as error:  # noqa: BLE001 (a collector never raises; a BaseException from student code can)
                import numpy as np

                evidence[exercise.name] = {"status": np.array(
                    f"error: collecting the evidence raised {_error_text(error)}")}
    for name, ev in evidence.items():
        save(ev, out_dir / "evidence" / f"{name}.npz")
    cells["log"] = log.getvalue()
    (out_dir / "cells.json").write_text(json.dumps(cells))
    return cells


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m fusionlab.grading.cleanroom JOB_DIR OUT_DIR", file=sys.stderr)
        return 2
    run_job(Path(args[0]), Path(args[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
