"""Trusted verdicts: every graded cell's points are decided here, outside the student's kernel.

The grading worker (``autograder.worker``) calls, for each submission::

    request = verdicts.prepare(root, assignment, student)   # before nbgrader autograde
    verdicts.apply(root, assignment, student, request)       # after it, before the feedback

``prepare`` draws the grading seeds with ``secrets`` and writes the public one
(``grading_request.json``: inputs, initial weights, training data) into the submission folder,
which nbgrader copies next to the notebook it runs; the evaluation seed of the accuracy tests
stays in this process. ``apply`` reads ``evidence/<grade_id>.npz`` that each graded cell wrote
(``allow_pickle=False``: data, never objects), computes each verdict with the assignment's suite
(``SUITES``), writes the score into the shard's gradebook and replaces the cell's outputs in the
autograded notebook by the verdict (a stream ``PASS: ...`` or an ``AssertionError`` with the
reason), so that the feedback, ``results.json``, ``grades.csv`` and the summary all show it.

Missing or unreadable evidence scores 0, with the error the cell raised when there is one.
An assignment without a suite (e.g. the toy course of the tests) keeps nbgrader's own scores.
(``fusionlab`` and torch are imported only for an assignment with a suite.)
"""

from __future__ import annotations

import importlib
import json
import secrets
import shutil
import warnings
import zipfile
from pathlib import Path

import nbformat

from .course import Course

SUITES = {"part1_fusion_strategies": "autograder.hidden.part1",
          "part2_attention_that_selects": "autograder.hidden.part2",
          "part3_who_gets_to_speak": "autograder.hidden.part3"}
MAX_EVIDENCE_BYTES = 64 * 2**20  # a Part 1 evidence file is about 0.2 MB


def suite(assignment: str):
    """The verdict suite of ``assignment`` (a module with ``GRADED`` and ``verdict``), or None."""
    name = SUITES.get(assignment)
    return importlib.import_module(name) if name else None


def new_request() -> dict:
    return {"seed": secrets.randbelow(2**31), "eval_seed": secrets.randbelow(2**31)}


def prepare(root, assignment: str, student: str, request: dict | None = None) -> dict | None:
    """Write the public part of a fresh request into the submission folder; return it all."""
    if suite(assignment) is None:
        return None
    from fusionlab import evidence

    request = request or new_request()
    folder = Course(Path(root), assignment).submitted(student)
    shutil.rmtree(folder / evidence.EVIDENCE_DIR, ignore_errors=True)
    (folder / evidence.REQUEST_FILE).write_text(json.dumps({"seed": request["seed"]}) + "\n")
    return request


def _cell_error(cell) -> str:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            value = str(output.get("evalue", "")).strip().splitlines()
            return f"{output.get('ename', 'Error')}: {value[0]}" if value else output.get("ename")
    return ""


def load_evidence(folder: Path, grade_id: str, cell):
    """The evidence of ``grade_id`` as a dict, or a failed CheckResult saying why not."""
    from fusionlab import evidence
    from fusionlab.check import CheckResult

    path = folder / evidence.EVIDENCE_DIR / f"{grade_id}.npz"
    if not path.is_file():
        error = _cell_error(cell)
        return CheckResult(grade_id, False, f"the cell raised {error} before its evidence was "
                           "recorded" if error else "the cell recorded no evidence")
    try:
        if path.is_symlink():
            raise ValueError("a symbolic link")
        with zipfile.ZipFile(path) as archive:  # refuse a decompression bomb before loading
            if sum(info.file_size for info in archive.infolist()) > MAX_EVIDENCE_BYTES:
                raise ValueError("too large")
        return evidence.load(path)
    except Exception as error:  # noqa: BLE001 (a file the kernel could have written anything to)
        return CheckResult(grade_id, False, f"its evidence file could not be read "
                           f"({type(error).__name__}): no credit")


def decide(assignment: str, folder: Path, cells: dict, request: dict) -> dict:
    """grade_id -> verdict (a ``fusionlab.check.CheckResult``) for the graded cells ``cells``
    (grade_id -> cell) of a notebook run in ``folder``. Used by ``apply`` and, without nbgrader,
    by the tests."""
    from fusionlab.check import CheckResult

    part = suite(assignment)
    results = {}
    for grade_id, cell in cells.items():
        if grade_id not in part.GRADED:
            results[grade_id] = CheckResult(grade_id, False, "no trusted verdict for this cell "
                                            "(grader error)")
            continue
        ev = load_evidence(folder, grade_id, cell)
        results[grade_id] = ev if not isinstance(ev, dict) else part.verdict(
            grade_id, ev, request)
    return results


def _outputs(result) -> list:
    if result.passed:
        return [nbformat.v4.new_output("stream", name="stdout", text=f"PASS: {result.message}\n")]
    reason = " ".join(result.message.split())
    return [nbformat.v4.new_output("error", ename="AssertionError", evalue=reason,
                                   traceback=[f"AssertionError: {reason}"])]


def apply(root, assignment: str, student: str, request: dict | None) -> dict | None:
    """Decide every graded cell of ``student``'s autograded submission; see the module
    docstring. Returns grade_id -> CheckResult, or None for an assignment without a suite."""
    if request is None or suite(assignment) is None:
        return None
    from nbgrader.api import Gradebook
    from sqlalchemy.exc import SAWarning

    course = Course(Path(root), assignment)
    folder = course.autograded(student)
    decided = {}
    for name in course.notebooks:
        path = folder / f"{name}.ipynb"
        if not path.exists():
            continue
        nb = nbformat.read(path, as_version=4)
        cells = {cell.metadata["nbgrader"]["grade_id"]: cell for cell in nb.cells
                 if cell.metadata.get("nbgrader", {}).get("grade")}
        results = decide(assignment, folder, cells, request)
        for grade_id, result in results.items():
            cells[grade_id].outputs = _outputs(result)
        nbformat.write(nb, path)
        with warnings.catch_warnings(), Gradebook(course.db_url) as gb:
            warnings.simplefilter("ignore", SAWarning)
            for grade_id, result in results.items():
                grade = gb.find_grade(grade_id, name, assignment, student)
                grade.auto_score = grade.max_score if result.passed else 0.0
                grade.needs_manual_grade = False
            gb.db.commit()
        decided.update(results)
    return decided
