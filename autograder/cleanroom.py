"""The clean room's trusted side: build a submission's job, run it sandboxed, read the results.

The student's notebook runs in nbgrader's kernel for the feedback; no point depends on that
run. The facts that need the student's code are measured here instead, in a fresh sandboxed
process (``fusionlab.grading.cleanroom``) that runs only:

- the imports of the released notebook's setup cell (the release's, not the submission's);
- the submission's TODO cells (its solution cells, by grade_id, in notebook order; a cell
  pasted twice runs twice, as in the notebook);
- the released notebook's visible test cells;

then the exercises' collectors with the grading seed, and the training runs of the accuracy
cells, whose predictions on the grader's held-out inputs come back (the labels never enter the
sandbox). ``measure`` returns a ``Measurement``; ``autograder.verdicts`` decides from it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fusionlab.grading import registry
from fusionlab.grading.seeds import Seeds
from fusionlab.grading.toolkit import load, save

from .hidden import references

DEFAULT_CELL_TIMEOUT_S = 60  # one cell, or one exercise's collection and training
STARTUP_S = 30  # the clean room's own start (Python, torch) on a loaded machine
MAX_EVIDENCE_BYTES = 64 * 2**20  # one exercise's evidence file, uncompressed
MAX_CELLS_BYTES = 1 * 2**20  # cells.json


class SuiteError(ValueError):
    """The assignment's graded cells have no trusted verdict: grading refuses (fails closed)."""


def _nbgrader(cell) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def _source(cell) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def graded_ids(nb) -> list[str]:
    return [_nbgrader(c).get("grade_id") for c in nb.cells if _nbgrader(c).get("grade")]


def course_modules(nb) -> dict[str, list[str]]:
    """The exercise and reference modules a master names in its metadata, for a course of one's
    own outside ``fusionlab`` (e.g. the tests' toy course): ``{"fusionlab": {"exercises":
    "toy_exercises", "references": "tests.grading.toy_references"}}``. The exercise module is a
    ``.py`` file beside the master (public: nbgrader releases it, and it enters the clean
    room); the reference module is imported by name in the trusted process only: keep it out
    of the master's folder."""
    meta = nb.get("metadata", {}).get("fusionlab", {})
    meta = meta if isinstance(meta, dict) else {}
    found = {}
    for kind in ("exercises", "references"):
        names = meta.get(kind, [])
        names = [names] if isinstance(names, str) else names
        found[kind] = [n for n in names if isinstance(n, str)
                       and all(part.isidentifier() for part in n.split("."))]
    found["exercises"] = [n for n in found["exercises"] if "." not in n]  # a file beside it
    return found


def load_course_modules(nb, module_dir: Path | None) -> None:
    """Import the course's own exercise and reference modules from ``module_dir``."""
    wanted = course_modules(nb)
    if not any(wanted.values()):
        return
    if module_dir is None or not Path(module_dir).is_dir():
        raise SuiteError(f"the master names the modules {wanted}, but no folder holds them")
    if str(module_dir) not in sys.path:
        sys.path.insert(0, str(module_dir))
    for name in wanted["exercises"]:
        registry.load(name)
    for name in wanted["references"]:
        references.load(name)


def exercises_of(release, module_dir: Path | None = None) -> list[registry.Exercise]:
    """The exercises behind the release's graded cells. Fails closed: a graded cell that no
    exercise declares, or whose exercise has no trusted reference, raises SuiteError naming
    the cells. ``module_dir``: where the master's own modules are (``course_modules``)."""
    load_course_modules(release, module_dir)
    found, unknown = [], []
    for grade_id in graded_ids(release):
        declared = registry.graded_cell(grade_id)
        if declared is None or references.reference(declared[0].name) is None:
            unknown.append(grade_id)
        elif declared[0] not in found:
            found.append(declared[0])
    if unknown:
        raise SuiteError(
            "no trusted verdict for the graded cell(s) " + ", ".join(unknown) + ": declare "
            "them in an exercise (fusionlab.part<N>.exercises) with a reference in "
            "autograder.hidden, or remove them from the master; grading refuses rather than "
            "keep scores the student's own kernel decided")
    return found


def _todo_id(cell) -> str | None:
    """The TODO cell's grade_id; for an earlier copy of a TODO cell pasted twice (which
    ``autograder.submission.normalize`` turns into a plain cell), the id it is a copy of."""
    grade_id = _nbgrader(cell).get("grade_id")
    if grade_id is None:
        mark = cell.get("metadata", {}).get("autograder", {})
        grade_id = mark.get("duplicate_of") if isinstance(mark, dict) else None
    return grade_id if isinstance(grade_id, str) else None


def todo_cells(nb, exercises) -> list[list[str]]:
    """``[grade_id, source]`` of the notebook's TODO cells of ``exercises``, in notebook order
    (duplicates included)."""
    wanted = {e.solution for e in exercises}
    return [[_todo_id(c), _source(c)] for c in nb.cells
            if c.get("cell_type") == "code" and _todo_id(c) in wanted]


def visible_cells(release, exercises) -> list[list[str]]:
    """``[grade_id, source]`` of the release's visible test cells of ``exercises``."""
    wanted = {c.grade_id for e in exercises for c in e.cells if c.visible}
    return [[_nbgrader(c)["grade_id"], _source(c)] for c in release.cells
            if _nbgrader(c).get("grade_id") in wanted]


def setup_cell(release) -> str:
    code = [c for c in release.cells if c.get("cell_type") == "code"]
    return _source(code[0]) if code else ""


@dataclass
class Measurement:
    """What the clean room measured for one submission."""

    evidence: dict[str, dict] = field(default_factory=dict)  # exercise -> evidence
    labels: dict[str, object] = field(default_factory=dict)  # exercise -> grader-held labels
    cells: dict = field(default_factory=dict)  # cells.json: what each cell raised
    error: str = ""  # why the clean room gave no result at all
    seconds: float = 0.0


def write_job(job_dir: Path, release, submitted, exercises, seeds: Seeds, *,
              cell_timeout: float, module_dir: Path | None = None) -> dict:
    """Write ``job.json``, ``inputs.npz`` and the course's own exercise modules into
    ``job_dir``; return the labels per exercise."""
    job_dir.mkdir(parents=True, exist_ok=True)
    own = course_modules(release)["exercises"]
    if own:
        (job_dir / "modules").mkdir()
        for name in own:
            shutil.copy(Path(module_dir) / f"{name}.py", job_dir / "modules" / f"{name}.py")
    inputs, labels = {}, {}
    for exercise in exercises:
        ref = references.reference(exercise.name)
        if exercise.trains and ref.evaluation is not None:
            data, labels[exercise.name] = ref.evaluation.data(seeds.evaluation)
            inputs.update({f"{exercise.name}/{k}": np.asarray(v) for k, v in data.items()})
    job = {"seed": seeds.inputs, "setup": setup_cell(release),
           "todo": todo_cells(submitted, exercises), "visible": visible_cells(release, exercises),
           "exercises": [e.name for e in exercises], "modules": own,
           "cell_timeout": cell_timeout}
    (job_dir / "job.json").write_text(json.dumps(job))
    if inputs:
        save(inputs, job_dir / "inputs.npz")
    return labels


def _read_results(out_dir: Path, exercises) -> tuple[dict, dict, str]:
    """(evidence per exercise, cells.json, error) from the clean room's output folder: only the
    files it is expected to write, as plain data, within size limits."""
    import zipfile

    cells_path = out_dir / "cells.json"
    if not cells_path.is_file() or cells_path.is_symlink():
        return {}, {}, "the clean room wrote no results"
    if cells_path.stat().st_size > MAX_CELLS_BYTES:
        return {}, {}, "the clean room's results are too large"
    try:
        cells = json.loads(cells_path.read_text())
        if not isinstance(cells, dict):
            raise ValueError("not an object")
    except ValueError as error:
        return {}, {}, f"the clean room's results could not be read: {error}"
    evidence = {}
    for exercise in exercises:
        path = out_dir / "evidence" / f"{exercise.name}.npz"
        try:
            if path.is_symlink() or not path.is_file():
                raise ValueError("missing")
            with zipfile.ZipFile(path) as archive:  # refuse a decompression bomb
                if sum(i.file_size for i in archive.infolist()) > MAX_EVIDENCE_BYTES:
                    raise ValueError("too large")
            evidence[exercise.name] = load(path)
        except Exception as error:  # noqa: BLE001 (a file the sandbox could have written)
            evidence[exercise.name] = {"status": np.array(
                f"error: the clean room's evidence could not be read ({type(error).__name__})")}
    return evidence, cells, ""


def total_timeout(release, submitted, exercises, cell_timeout: float) -> float:
    """The clean room's wall-clock limit: every cell and every exercise's collection at most
    ``cell_timeout`` each (the driver stops each at that limit itself), plus the start."""
    cells = len(todo_cells(submitted, exercises)) + len(visible_cells(release, exercises))
    return STARTUP_S + cell_timeout * (cells + len(exercises) + 1)


def command(job_dir: Path, out_dir: Path) -> list[str]:
    return [sys.executable, "-m", "fusionlab.grading.cleanroom", str(job_dir), str(out_dir)]


def clean_env(launcher: bool = False) -> dict[str, str]:
    """The few variables the clean room runs with: one thread, a fixed hash seed, no display.
    The sandbox's ``launcher`` (trusted, outside the sandbox) also needs ``autograder``."""
    from . import REPO_ROOT

    env = {"PYTHONPATH": str(REPO_ROOT)} if launcher else {}
    return {**env, "PATH": os.pathsep.join([os.path.join(sys.prefix, "bin"), "/usr/bin", "/bin"]),
            "LANG": "C.UTF-8", "FUSIONLAB_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg",
            "PYTHONDONTWRITEBYTECODE": "1", "HOME": "/tmp", "MPLCONFIGDIR": "/tmp"}


def measure(release, submitted, seeds: Seeds, *, limits: dict | None,
            cell_timeout: float = DEFAULT_CELL_TIMEOUT_S, workdir: Path | None = None,
            module_dir: Path | None = None, in_process: bool = False) -> Measurement:
    """Run the clean room for ``submitted`` (an nbformat notebook) against ``release``.

    ``limits``: the sandbox's settings (``memory_limit``, ``pids_limit``), or None to run it
    as a plain subprocess (``--no-sandbox``). ``cell_timeout``: the seconds each cell, and each
    exercise's collection, may run. Never raises for what the submission does.
    ``in_process`` runs it in this very process: only for code we wrote ourselves (the tests'
    and the tools' known mistakes), never for a submission."""
    from . import sandbox

    start = time.perf_counter()
    exercises = exercises_of(release, module_dir)
    timeout = total_timeout(release, submitted, exercises, cell_timeout)
    tmp = Path(tempfile.mkdtemp(prefix=f"agcr-{os.getpid()}-", dir=workdir))
    try:
        job_dir, out_dir = tmp / "job", tmp / "out"
        labels = write_job(job_dir, release, submitted, exercises, seeds,
                           cell_timeout=cell_timeout, module_dir=module_dir)
        out_dir.mkdir()
        if in_process:
            from fusionlab.grading.cleanroom import run_job

            run_job(job_dir, out_dir)
            evidence, cells, error = _read_results(out_dir, exercises)
            return Measurement(evidence, labels, cells, error, time.perf_counter() - start)
        with contextlib.ExitStack() as stack:
            # relative to its working folder (``tmp``): the clean room's command line names no
            # path of the course, which a TODO cell could match (``pkill -f``) and kill it by
            argv, results = command(Path(job_dir.name), Path(out_dir.name)), out_dir
            if limits is not None:
                box = stack.enter_context(sandbox.ConfinedCommand(tmp, **limits))
                argv, results = box.argv(argv), box.results / "out"
            try:
                done = subprocess.run(argv, env=clean_env(launcher=limits is not None),
                                      stdin=subprocess.DEVNULL,
                                      capture_output=True, timeout=timeout, cwd=tmp)
            except subprocess.TimeoutExpired:
                return Measurement(labels=labels, error=f"the clean room ran past its "
                                   f"{timeout:g} s limit", seconds=time.perf_counter() - start)
            evidence, cells, error = _read_results(results, exercises)
            if error and limits is not None and box.out_of_memory():
                error = f"the clean room ran out of its memory limit ({error})"
            elif error and limits is not None and box.files_limit_hit():
                error = f"{box.files_limit_hit()} ({error})"
        if error:
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
            error += f" (exit code {done.returncode}" + (
                f": {' '.join(tail)[:300]})" if tail else ")")
        return Measurement(evidence, labels, cells, error, time.perf_counter() - start)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
