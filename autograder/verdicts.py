"""Trusted verdicts: every graded cell's points are decided here, in the grader's process.

For each submission the worker (``autograder.worker``)

1. derives the grading seeds from the course secret (``seeds_for``: an HMAC of the assignment
   and the student id; the secret lives with the grading output, never in a sandbox, so a
   re-grade gives the same seeds and the same grade; ``--reseed`` draws a new secret);
2. runs nbgrader's autograde, whose kernel runs the student's notebook for the feedback only;
3. measures the submission in the clean room (``autograder.cleanroom.measure``);
4. ``decide``s every graded cell from that measurement: the exercise's checks (the same
   functions as the self-checks, ``fusionlab.grading``) on the clean room's evidence, against
   the facts its trusted reference computes from the exported weights (``autograder.hidden``);
5. ``apply``s the verdicts: each score into the shard's gradebook and each graded cell's
   outputs replaced by the verdict (``PASS: ...`` or an ``AssertionError`` with the reason),
   before the feedback is generated, so that the feedback, ``results.json``, ``grades.csv``
   and the summary all show the trusted verdict.

Grading fails closed: a graded cell without a declaration and a reference refuses the whole
run (``autograder.cleanroom.SuiteError``), and a cell whose evidence is missing scores 0 with
the reason.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import warnings
from pathlib import Path

import nbformat

from fusionlab.grading.results import CheckResult, run_one, text
from fusionlab.grading.seeds import Seeds

from .cleanroom import Measurement, exercises_of, graded_ids
from .course import Course
from .hidden import references

SECRET_FILE = "grading-secret"  # in the grading output folder: created once, kept across runs


def course_secret(out: Path, reseed: bool = False) -> bytes:
    """The course secret of the grading output ``out``: created at the first run (0600),
    reused by every later run so that a re-grade gives the same seeds; ``reseed`` replaces it
    (the next grades are drawn afresh, deliberately)."""
    path = Path(out) / SECRET_FILE
    if reseed or not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(secrets.token_hex(32).encode())
        path.chmod(0o600)
    return path.read_bytes().strip()


def seeds_for(secret: bytes, assignment: str, student: str) -> Seeds:
    """The grading seeds of one submission: nothing public determines them."""

    def draw(purpose: str) -> int:
        digest = hmac.new(secret, f"{purpose}/{assignment}/{student}".encode(), hashlib.sha256)
        return int.from_bytes(digest.digest()[:4], "big") % 2**31

    return Seeds(inputs=draw("inputs"), evaluation=draw("evaluation"))


# ----------------------------------------------------------------------------- deciding

def _facts(exercise, ev: dict, measurement: Measurement, seeds: Seeds) -> dict:
    """The trusted facts of one exercise's evidence, the accuracy measurement included."""
    ref = references.reference(exercise.name)
    facts: dict = {}
    if text(ev, "status") == "ok":
        try:
            facts = ref.facts(ev, seeds.inputs)
        except Exception as error:  # noqa: BLE001 (evidence of an unexpected form)
            facts = {"unavailable": f"the evidence could not be read: "
                                    f"{type(error).__name__}: {error}"}
    if exercise.trains:
        if "error/trained" in ev:
            facts["accuracy"] = f"the model could not be trained: {text(ev, 'error/trained')}"
        elif ref.evaluation is not None and exercise.name in measurement.labels:
            trained = {k[len("trained/"):]: v for k, v in ev.items()
                       if k.startswith("trained/")}
            facts["accuracy"] = ref.evaluation.score(trained, measurement.labels[exercise.name])
    return facts


def _with_todo_error(ev: dict, exercise, cells: dict) -> dict:
    """When the TODO cell itself raised, that is the reason nothing could be built."""
    import numpy as np

    error = cells.get("todo", {}).get(exercise.solution) if isinstance(cells, dict) else None
    if error and text(ev, "status") != "ok":
        return {**ev, "status": np.array(f"error: your TODO cell raised {error}")}
    if exercise.solution not in cells.get("todo", {exercise.solution: ""}):
        return {**ev, "status": np.array(f"error: the notebook has no TODO cell "
                                         f"{exercise.solution} (deleted?)")}
    return ev


def decide_exercise(exercise, measurement: Measurement, seeds: Seeds) -> dict[str, CheckResult]:
    """grade_id -> verdict for every graded cell of ``exercise``, from ``measurement``."""
    if measurement.error:
        return {cell.grade_id: CheckResult(cell.check, False, f"not graded: {measurement.error}")
                for cell in exercise.cells}
    cells = measurement.cells if isinstance(measurement.cells, dict) else {}
    ev = _with_todo_error(measurement.evidence.get(exercise.name, {}), exercise, cells)
    facts = _facts(exercise, ev, measurement, seeds)
    visible = cells.get("visible", {})
    results = {}
    for cell in exercise.cells:
        error = visible.get(cell.grade_id) if cell.visible else None
        if error:
            results[cell.grade_id] = CheckResult(cell.check, False,
                                                 f"the visible test failed: {error}")
        else:
            results[cell.grade_id] = run_one(exercise.checks, cell.check, ev, facts)
    return results


def decide(release, measurement: Measurement, seeds: Seeds,
           module_dir=None) -> dict[str, CheckResult]:
    """grade_id -> verdict for every graded cell of ``release`` (an nbformat notebook)."""
    results = {}
    for exercise in exercises_of(release, module_dir):
        results.update(decide_exercise(exercise, measurement, seeds))
    return {grade_id: results[grade_id] for grade_id in graded_ids(release)}


# ----------------------------------------------------------------------------- applying

def outputs(result: CheckResult) -> list:
    """A graded cell's outputs in the autograded notebook: the verdict."""
    if result.passed:
        return [nbformat.v4.new_output("stream", name="stdout", text=f"PASS: {result.message}\n")]
    reason = " ".join(result.message.split())
    return [nbformat.v4.new_output("error", ename="AssertionError", evalue=reason,
                                   traceback=[f"AssertionError: {reason}"])]


def apply(root, assignment: str, student: str, decided: dict[str, CheckResult]) -> None:
    """Write ``decided`` into the shard's gradebook and its autograded notebook (each graded
    cell's outputs become the verdict)."""
    from nbgrader.api import Gradebook
    from sqlalchemy.exc import SAWarning

    course = Course(Path(root), assignment)
    folder = course.autograded(student)
    for name in course.notebooks:
        path = folder / f"{name}.ipynb"
        if not path.exists():
            continue
        nb = nbformat.read(path, as_version=4)
        seen = set()
        for cell in nb.cells:
            grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            if grade_id in decided and cell.metadata["nbgrader"].get("grade") and \
                    grade_id not in seen:
                cell.outputs = outputs(decided[grade_id])
                seen.add(grade_id)
        nbformat.write(nb, path)
        with warnings.catch_warnings(), Gradebook(course.db_url) as gb:
            warnings.simplefilter("ignore", SAWarning)
            for grade_id, result in decided.items():
                grade = gb.find_grade(grade_id, name, assignment, student)
                grade.auto_score = grade.max_score if result.passed else 0.0
                grade.needs_manual_grade = False
            gb.db.commit()
