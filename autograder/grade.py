"""The grading pipeline behind ``python -m autograder grade ASSIGNMENT SUBMISSIONS --out DIR``.

1. Create a fresh course directory ``DIR/course`` and release the assignment from ``source/``
   (nbgrader ``generate_assignment``). Starting afresh makes a re-run give the same result.
2. Collect the submissions (``autograder.intake``: a folder of ``<student_id>.ipynb`` or
   ``<student_id>/`` folders, or an LMS zip of them, extracted safely; distinct student ids)
   into nbgrader's ``submitted/`` layout.
3. Check that each submission is a notebook at all, and scan its code for tampering (reported,
   see ``autograder.scan``).
4. Autograde every submission in its own shard (``autograder.course.make_shard``) through a
   pool of worker processes (``autograder.worker``), each job under a wall-clock limit; a
   worker that dies or overruns is replaced and only that submission is affected. nbgrader's
   per-cell timeout stops hanging cells inside a submission.
5. Copy every shard's grades into the course gradebook (one writer, so sqlite is never written
   concurrently), export ``DIR/grades.csv`` (nbgrader's CSV export), write the feedback under
   ``DIR/feedback/<student_id>/`` and ``DIR/results.json`` (every test, with the reason of each
   failure), and print the summary table.

Nothing a submission does ends the batch: a submission that cannot be graded scores 0 with its
reason.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import selectors
import shutil
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from . import sandbox, scan
from .course import (
    SOURCE_ROOT,
    Course,
    CourseError,
    collect_batch,
    create_course,
    grading_env,
    make_shard,
)
from .intake import printable, submitted_as
from .nbgrader_config import CELL_TIMEOUT_S

DEFAULT_SUBMISSION_TIMEOUT_S = 600
WORKER_START_TIMEOUT_S = 120


@dataclass
class TestResult:
    name: str
    score: float
    max_score: float
    reason: str = ""  # why points were lost; empty when the test passed

    @property
    def passed(self) -> bool:
        return self.score >= self.max_score


@dataclass
class StudentResult:
    student: str
    score: float
    max_score: float
    status: str  # "graded", or "not graded" when the submission could not be run at all
    reason: str = ""  # why the whole submission scored 0 (status "not graded")
    tests: list[TestResult] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)  # tampering found by the scan or by nbgrader
    seconds: float = 0.0  # wall time of autograde + feedback in its worker
    autograde_seconds: float = 0.0  # of which nbgrader autograde (kernel start, notebook run)
    submitted_as: str = ""  # the file(s) in the batch it was collected from, as handed in
    sandbox: dict = field(default_factory=dict)  # what the sandbox's limits saw (empty: none)


@dataclass
class GradingReport:
    assignment: str
    out: Path
    students: list[StudentResult]
    seconds: float
    skipped: list[str] = field(default_factory=list)  # files of the batch that nobody got
    sandbox: bool = True  # False: graded with --no-sandbox

    @property
    def grades_csv(self) -> Path:
        return self.out / "grades.csv"

    def by_student(self) -> dict[str, StudentResult]:
        return {s.student: s for s in self.students}


# ----------------------------------------------------------------------------- worker pool

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


# ----------------------------------------------------------------------------- results

def _first_line(text: str, limit: int = 160) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", text or "").strip()
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def cell_reason(cell, cell_timeout: int | None) -> str:
    """Why a graded cell scored less than full marks, from its outputs."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            name, value = output.get("ename", "Error"), _first_line(output.get("evalue", ""))
            if name == "CellTimeoutError":
                return f"timed out (cell limit {cell_timeout} s)" if cell_timeout else "timed out"
            return f"{name}: {value}" if value else name
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream" and output.get("name") == "stderr":
            return f"wrote to stderr: {_first_line(output.get('text', ''), 100)}"
    return "no credit"


def graded_cells(release_notebook: Path) -> list[tuple[str, float]]:
    """(grade_id, points) of every graded cell, in notebook order."""
    nb = nbformat.read(release_notebook, as_version=4)
    cells = []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade"):
            cells.append((meta["grade_id"], float(meta.get("points", 0))))
    return cells


FAILURE_HINTS = (
    ("DeadKernelError", "the kernel died (os._exit, a crash or out of memory)"),
    ("UnresponsiveKernelError", "the kernel stopped responding and could not be interrupted"),
    ("CellTimeoutError", "a cell ran past the cell timeout and ignored the interrupt"),
    ("add_missing_grade_cells", "graded cells were deleted or lost their nbgrader metadata and "
                                "could not be restored: start again from the distributed notebook"),
    ("GradingTimeout", None),
    ("WorkerDied", None),
)
_EXCEPTION_LINE = re.compile(r"^\s*([\w.]+(?:Error|Exception|Exit|Interrupt)): (.*)$", re.MULTILINE)


def failure_reason(answer: dict) -> str:
    """Why nbgrader could not grade a submission at all, in a few words."""
    text = (answer.get("log") or "") + "\n" + (answer.get("error") or "")
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    for marker, hint in FAILURE_HINTS:
        if marker in text:
            return hint or _first_line(answer.get("error", ""), 200)
    errors = [m for m in _EXCEPTION_LINE.finditer(text) if "NbGraderException" not in m.group(1)]
    if errors:
        name, message = errors[-1].groups()
        return _first_line(f"{name.rsplit('.', 1)[-1]}: {message}", 200)
    return _first_line(answer.get("error", ""), 200) or "autograding failed"


def locked_cell_changes(submitted, released) -> list[str]:
    """Graded or read-only cells of ``released`` that ``submitted`` deleted or edited.

    nbgrader restores them before grading (locked cells from the gradebook, missing graded cells
    with ``add_missing_cells``); these flags tell the instructor that it had to.
    """
    cells = {}
    for cell in submitted.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade_id"):
            cells.setdefault(meta["grade_id"], cell)
    flags = []
    for cell in released.cells:
        meta = cell.metadata.get("nbgrader", {})
        if not (meta.get("locked") or meta.get("grade")) or meta.get("solution"):
            continue
        grade_id = meta["grade_id"]
        mine = cells.get(grade_id)
        if mine is None:
            flags.append(f"locked cell {grade_id} was deleted (or lost its nbgrader metadata): "
                         "nbgrader restored it")
        elif mine.source != cell.source or mine.cell_type != cell.cell_type:
            flags.append(f"locked cell {grade_id} was edited: nbgrader restored the original")
    return flags


# ----------------------------------------------------------------------------- gradebook

@contextlib.contextmanager
def _gradebooks(*urls):
    """Open nbgrader gradebooks, silencing the SQLAlchemy warnings nbgrader's own
    ``add_submission`` triggers (harmless autoflush notices)."""
    from nbgrader.api import Gradebook
    from sqlalchemy.exc import SAWarning

    with warnings.catch_warnings(), contextlib.ExitStack() as stack:
        warnings.simplefilter("ignore", SAWarning)
        yield [stack.enter_context(Gradebook(url)) for url in urls]


def merge_shard(course: Course, shard: Course, student: str) -> None:
    """Copy the student's grades and comments from the shard's gradebook into the course's."""
    with _gradebooks(shard.db_url, course.db_url) as (source, target):
        submitted = source.find_submission(course.assignment, student)
        target.update_or_create_student(student)
        target.update_or_create_submission(
            course.assignment, student, timestamp=submitted.timestamp
        )
        for notebook in submitted.notebooks:
            for grade in notebook.grades:
                copy = target.find_grade(grade.name, notebook.name, course.assignment, student)
                copy.auto_score = grade.auto_score
                copy.manual_score = grade.manual_score
                copy.extra_credit = grade.extra_credit
                copy.needs_manual_grade = grade.needs_manual_grade
            for comment in notebook.comments:
                copy = target.find_comment(comment.name, notebook.name, course.assignment, student)
                copy.auto_comment = comment.auto_comment
                copy.manual_comment = comment.manual_comment
            target_nb = target.find_submission_notebook(notebook.name, course.assignment, student)
            target_nb.flagged = notebook.flagged
        target.db.commit()


def record_zero(course: Course, student: str) -> None:
    """A submission that could not be graded: every graded cell scores 0."""
    with _gradebooks(course.db_url) as (gb,):
        gb.update_or_create_student(student)
        submission = gb.update_or_create_submission(course.assignment, student)
        for notebook in submission.notebooks:
            for grade in notebook.grades:
                grade.auto_score = 0
                grade.needs_manual_grade = False
        gb.db.commit()


def scores_from_gradebook(course: Course, student: str) -> dict[str, tuple[float, float]]:
    with _gradebooks(course.db_url) as (gb,):
        submission = gb.find_submission(course.assignment, student)
        return {
            grade.name: (float(grade.score or 0), float(grade.max_score))
            for notebook in submission.notebooks
            for grade in notebook.grades
        }


def export_csv(course: Course, dest: Path) -> None:
    from nbgrader.plugins.export import CsvExportPlugin

    plugin = CsvExportPlugin()
    plugin.to = str(dest)
    plugin.assignment = [course.assignment]
    with _gradebooks(course.db_url) as (gb,):
        plugin.export(gb)


# ----------------------------------------------------------------------------- submissions

def read_submission(path: Path) -> tuple[object | None, str]:
    """(notebook, "") or (None, why it is not a notebook)."""
    try:
        raw = json.loads(Path(path).read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"not a notebook: invalid JSON ({_first_line(str(exc), 80)})"
    if not isinstance(raw, dict) or "cells" not in raw and "worksheets" not in raw:
        return None, "not a notebook: the JSON has no cells"
    try:
        nb = nbformat.reads(json.dumps(raw), as_version=4)
    except Exception as exc:  # nbformat raises many kinds
        return None, f"not a notebook: {type(exc).__name__}: {_first_line(str(exc), 80)}"
    return nb, ""


def _failure_feedback(student: str, assignment: str, reason: str, max_score: float) -> str:
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(assignment)}: feedback</title></head><body>"
        f"<h1>{html.escape(assignment)}</h1><p>Student: {html.escape(student)}</p>"
        f"<p><strong>Score: 0 / {max_score:g}</strong></p>"
        f"<p>Your submission could not be graded: {html.escape(reason)}.</p>"
        "<p>Submit the assignment notebook (.ipynb) you worked in, saved from Jupyter.</p>"
        "</body></html>\n"
    )


# ----------------------------------------------------------------------------- the command

def grade(
    assignment: str,
    submissions: Path,
    out: Path,
    *,
    source_root: Path = SOURCE_ROOT,
    workers: int | None = None,
    cell_timeout: int | None = None,
    submission_timeout: float = DEFAULT_SUBMISSION_TIMEOUT_S,
    use_sandbox: bool = True,
    memory_limit: int = sandbox.DEFAULT_MEMORY_LIMIT,
    echo=print,
) -> GradingReport:
    """Grade every submission of ``assignment``; write the results under ``out``.

    Each kernel runs in ``autograder.sandbox`` under ``memory_limit`` bytes; without the
    sandbox on this machine the command refuses, unless ``use_sandbox=False``."""
    start = time.perf_counter()
    if use_sandbox and sandbox.missing():
        raise CourseError(f"cannot build the sandbox for the submissions' kernels: "
                          f"{sandbox.missing()}. Grade without it only with --no-sandbox.")
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("grades.csv", "results.json", "feedback", "course", "logs"):
        path = out / stale
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    if not any((Path(source_root) / assignment).glob("*.ipynb")):
        raise CourseError(f"no instructor notebook found in {Path(source_root) / assignment}")
    logs = out / "logs"
    logs.mkdir()
    if workers is None:
        workers = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                   else os.cpu_count())
    # the workers import nbgrader while the course is released and the submissions collected
    pool = [Worker(out, logs / f"worker-{i}.log").spawn() for i in range(max(1, workers))]
    try:
        limits = ({"memory_limit": int(memory_limit), "pids_limit": sandbox.DEFAULT_PIDS_LIMIT}
                  if use_sandbox else None)
        return _grade(assignment, submissions, out, logs, pool, source_root, cell_timeout,
                      submission_timeout, echo, start, limits)
    finally:
        for worker in pool:
            worker.close()


def _grade(assignment, submissions, out, logs, pool, source_root, cell_timeout,
           submission_timeout, echo, start, limits) -> GradingReport:

    echo(f"Releasing {assignment} from {Path(source_root) / assignment} ...")
    course = create_course(out / "course", assignment, source_root, cell_timeout)
    notebooks = course.notebooks
    release_nb = course.root / "release" / assignment / f"{notebooks[0]}.ipynb"
    cells = graded_cells(release_nb)
    max_total = sum(points for _, points in cells)

    echo(f"Collecting submissions from {submissions} ...")
    batch = collect_batch(course, Path(submissions))
    students = batch.students
    if not students:
        raise CourseError(f"no submission (.ipynb, or a .zip of them) found in {submissions}"
                          + "".join(f"\n  {line}" for line in batch.skipped))

    released = {name: nbformat.read(release_nb.parent / f"{name}.ipynb", as_version=4)
                for name in notebooks}
    results: dict[str, StudentResult] = {}
    jobs = []
    work = course.root / ".shards"
    work.mkdir()
    for student in students:
        flags: list[str] = list(batch.submissions[student].flags)
        for name in notebooks:
            path = course.submitted(student) / f"{name}.ipynb"
            if not path.exists():
                continue
            nb, problem = read_submission(path)
            if nb is None:
                results[student] = StudentResult(student, 0.0, max_total, "not graded", problem,
                                                 flags=flags)
                break
            flags += locked_cell_changes(nb, released[name])
            flags += scan.scan_notebook(nb, released[name])
        if student not in results:
            results[student] = StudentResult(student, 0.0, max_total, "graded", flags=flags)
        results[student].submitted_as = submitted_as(batch.submissions[student])
        if results[student].status != "graded":
            continue
        shard = make_shard(course, student, work / student)
        jobs.append({
            "root": str(shard.root), "assignment": assignment, "student": student,
            "cell_timeout": cell_timeout, "sandbox": limits,
        })

    busy = pool[: max(1, len(jobs))]
    for worker in pool[len(busy):]:
        worker.close()
    echo(f"Autograding {len(jobs)} submission(s) on {len(busy)} worker(s) ...")
    answers = run_jobs(jobs, busy, submission_timeout) if jobs else {}

    for student in students:
        result = results[student]
        answer = answers.get(student)
        shard = Course(work / student, assignment, cell_timeout)
        if answer is not None:
            result.seconds = answer.get("seconds", 0.0)
            result.autograde_seconds = answer.get("autograde_seconds", result.seconds)
            (logs / f"{student}.log").write_text(
                (answer.get("log") or "") + "\n" + (answer.get("error") or ""))
            result.sandbox = answer.get("sandbox") or {}
            limit_hit = sandbox.limit_messages(result.sandbox)
            if answer["autograde_ok"]:
                merge_shard(course, shard, student)
            else:
                result.status = "not graded"
                result.reason = limit_hit.pop(0) if result.sandbox.get("oom_kills") else \
                    failure_reason(answer)
            result.flags += limit_hit
        if result.status != "graded":
            record_zero(course, student)
        scores = scores_from_gradebook(course, student)
        autograded = {}
        if result.status == "graded":
            shutil.copytree(shard.autograded(student), course.autograded(student))
            autograded = _read_autograded(course, student, result)
        for name, points in cells:
            score, max_score = scores.get(name, (0.0, points))
            reason = ""
            if score < max_score:
                reason = (cell_reason(autograded[name], course.cell_timeout or CELL_TIMEOUT_S)
                          if name in autograded else (result.reason or "not graded"))
            result.tests.append(TestResult(name, score, max_score, reason))
        result.score = sum(t.score for t in result.tests)
        result.max_score = sum(t.max_score for t in result.tests)
        _write_feedback(course, shard, student, answer, result, out / "feedback")

    export_csv(course, out / "grades.csv")
    ordered = [results[s] for s in students]
    report = GradingReport(assignment, out, ordered, round(time.perf_counter() - start, 3),
                           skipped=[printable(line) for line in batch.skipped],
                           sandbox=limits is not None)
    (out / "results.json").write_text(json.dumps({
        "assignment": assignment,
        "max_score": max_total,
        "sandbox": limits is not None,
        **({} if limits else {"warning": NO_SANDBOX_WARNING}),
        "students": [_printable_result(asdict(s)) for s in ordered],
        "skipped": report.skipped,
    }, indent=1) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    echo(format_summary(report))
    return report


def _printable_result(result: dict) -> dict:
    """A results.json entry whose texts are safe to print on a terminal (no escape sequences
    or control characters from exception messages or student-controlled names)."""
    for key in ("reason", "submitted_as"):
        result[key] = printable(result[key])
    result["flags"] = [printable(flag) for flag in result["flags"]]
    for test in result["tests"]:
        test["reason"] = printable(test["reason"])
    return result


def _read_autograded(course: Course, student: str, result: StudentResult) -> dict:
    """grade_id -> cell of the student's autograded notebooks; flags cells that timed out."""
    cells = {}
    for name in course.notebooks:
        path = course.autograded(student) / f"{name}.ipynb"
        if not path.exists():
            continue
        for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("grade_id"):
                cells[meta["grade_id"]] = cell
            timed_out = any(o.get("ename") == "CellTimeoutError" for o in cell.get("outputs", []))
            if timed_out and not meta.get("grade"):
                limit = course.cell_timeout or CELL_TIMEOUT_S
                result.flags.append(f"cell {index} timed out after {limit} s and was "
                                    "interrupted; the rest of the notebook ran")
    return cells


def _write_feedback(course, shard, student, answer, result, feedback_root: Path) -> None:
    """nbgrader's feedback pages to ``feedback_root/<student>/``, or a page with the reason."""
    dest = feedback_root / student
    dest.mkdir(parents=True, exist_ok=True)
    if answer is not None and answer.get("feedback_ok"):
        shutil.copytree(shard.feedback(student), course.feedback(student))
        for page in course.feedback(student).glob("*.html"):
            shutil.copy(page, dest / page.name)
        return
    reason = result.reason or "feedback could not be generated"
    for name in course.notebooks:
        (dest / f"{name}.html").write_text(
            _failure_feedback(student, course.assignment, reason, result.max_score))


NO_SANDBOX_WARNING = ("graded WITHOUT the sandbox (--no-sandbox): the submissions' code ran "
                      "with the grader's permissions and could have changed any grade")


def format_summary(report: GradingReport) -> str:
    """The table printed at the end: one row per student, then one row per failed test."""
    rows = [("student", "score", "failed test", "points", "reason")]
    for s in report.students:
        name = s.student
        if s.submitted_as and Path(s.submitted_as.split(", ")[0]).parts[0] not in (
                s.student, f"{s.student}.ipynb"):
            name += f" ({s.submitted_as})"  # the id is not the name the file was handed in as
        head = (name, f"{s.score:g}/{s.max_score:g}")
        failed = [t for t in s.tests if not t.passed]
        if s.status != "graded":
            rows.append((*head, "(not graded)", "", s.reason))
        elif not failed:
            rows.append((*head, "", "", ""))
        for i, t in enumerate(failed if s.status == "graded" else []):
            rows.append((*(head if i == 0 else ("", "")), t.name, f"{t.score:g}/{t.max_score:g}",
                         t.reason))
        for flag in s.flags:
            rows.append(("", "", "(flag)", "", flag))
    for line in report.skipped:
        rows.append(("(batch)", "", "(not collected)", "", line))
    rows = [tuple(printable(cell) for cell in row) for row in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4])
        if r is rows[0]:
            lines.append("-" * min(120, sum(widths) + 2 * 4 + 20))
    n = len(report.students)
    if not report.sandbox:
        lines.append(f"WARNING: {NO_SANDBOX_WARNING}")
    lines.append(
        f"{n} submission(s) graded in {report.seconds:.1f} s; grades: {report.grades_csv}; "
        f"feedback: {report.out / 'feedback'}"
    )
    return "\n".join(line.rstrip() for line in lines)


__all__ = ["grade", "GradingReport", "StudentResult", "TestResult", "format_summary"]
