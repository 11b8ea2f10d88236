"""What a grading run found and what it writes: each student's result and the reason of every
lost point (read from the autograded notebook or the worker's answer), the feedback pages,
``results.json`` and the summary table. Every text that reaches a terminal goes through
``autograder.intake.printable``."""

from __future__ import annotations

import html
import re
import shutil
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .course import Course
from .intake import printable
from .nbgrader_config import CELL_TIMEOUT_S

# The flag of a submission graded by the clean room alone because nbgrader's pass failed: the
# notebook's own run (crash, hang, out of memory) or, under --no-notebook-run, nbgrader's
# reading of the submitted notebook.
RUN_FAILED = "the notebook's own run failed"
NBGRADER_FAILED = "nbgrader could not process the submitted notebook"


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
    phases: dict = field(default_factory=dict)  # seconds per phase (``worker.Phases``)
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


def first_line(text: str, limit: int = 160) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", text or "").strip()
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


MAX_REASON = 2000  # characters of one reason: whole for every verdict, bounded for a hostile one


def whole(text: str, limit: int = MAX_REASON) -> str:
    """``text`` on one line (whitespace collapsed, colour codes dropped), whole up to ``limit``
    characters: results.json and the summary keep reasons whole (the summary wraps them)."""
    text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(text or "")).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def cell_reason(cell, cell_timeout: int | None) -> str:
    """Why a graded cell scored less than full marks, from its outputs."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            name, value = output.get("ename", "Error"), whole(output.get("evalue", ""))
            if name == "CellTimeoutError":
                return f"timed out (cell limit {cell_timeout} s)" if cell_timeout else "timed out"
            return f"{name}: {value}" if value else name
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream" and output.get("name") == "stderr":
            return f"wrote to stderr: {first_line(output.get('text', ''), 100)}"
    return "no credit"


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
            return hint or whole(first_line(answer.get("error", ""), MAX_REASON))
    errors = [m for m in _EXCEPTION_LINE.finditer(text) if "NbGraderException" not in m.group(1)]
    if errors:
        name, message = errors[-1].groups()
        return first_line(f"{name.rsplit('.', 1)[-1]}: {message}", MAX_REASON)
    return first_line(answer.get("error", ""), MAX_REASON) or "autograding failed"


def locked_cell_changes(submitted, released) -> list[str]:
    """Graded or read-only cells of ``released`` that ``submitted`` deleted or edited.

    nbgrader restores them before grading (locked cells from the gradebook, missing graded cells
    with ``add_missing_cells``); these flags tell the instructor that it had to. Any metadata
    is read defensively: a submission's ``metadata.nbgrader`` may be of any type.
    """
    from .submission import nbgrader_meta

    cells = {}
    for cell in submitted.cells:
        grade_id = nbgrader_meta(cell).get("grade_id")
        if isinstance(grade_id, str) and grade_id:
            cells.setdefault(grade_id, cell)
    flags = []
    for cell in released.cells:
        meta = nbgrader_meta(cell)
        if not (meta.get("locked") or meta.get("grade")) or meta.get("solution"):
            continue
        grade_id = meta["grade_id"]
        mine = cells.get(grade_id)
        if mine is None:
            flags.append(f"locked cell {grade_id} was deleted (or lost its nbgrader metadata): "
                         "nbgrader restored it")
        elif mine.get("source") != cell.source or mine.get("cell_type") != cell.cell_type:
            flags.append(f"locked cell {grade_id} was edited: nbgrader restored the original")
    return flags


def printable_result(result: dict) -> dict:
    """A results.json entry whose texts are safe to print on a terminal (no escape sequences
    or control characters from exception messages or student-controlled names)."""
    for key in ("reason", "submitted_as"):
        result[key] = printable(result[key])
    result["flags"] = [printable(flag) for flag in result["flags"]]
    for test in result["tests"]:
        test["reason"] = printable(test["reason"])
    return result


def read_autograded(course: Course, student: str, result: StudentResult) -> dict:
    """grade_id -> cell of the student's autograded notebooks; flags cells that timed out."""
    cells = {}
    for name in course.notebooks:
        path = course.autograded(student) / f"{name}.ipynb"
        if not path.exists():
            continue
        # as nbformat.read, without its schema check (it only logs): nbgrader wrote this file
        notebook = nbformat.convert(nbformat.reader.reads(path.read_text(encoding="utf-8")), 4)
        for index, cell in enumerate(notebook.cells):
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("grade_id"):
                cells[meta["grade_id"]] = cell
            timed_out = any(o.get("ename") == "CellTimeoutError" for o in cell.get("outputs", []))
            if timed_out and not meta.get("grade"):
                limit = course.cell_timeout or CELL_TIMEOUT_S
                result.flags.append(f"cell {index} timed out after {limit} s and was "
                                    "interrupted; the rest of the notebook ran")
    return cells


def _failure_feedback(student: str, assignment: str, result: StudentResult) -> str:
    """The page of a submission without nbgrader's feedback: its score, why, and the verdict
    of every graded cell it has one for."""
    if result.status == "graded":
        failed = [f for f in result.flags if f.startswith((RUN_FAILED, NBGRADER_FAILED))]
        what = ("nbgrader could not process your notebook" if any(
            f.startswith(NBGRADER_FAILED) for f in failed) else "Your notebook's own run did "
            "not finish")
        why = (f"<p>{what} (" + html.escape("; ".join(failed) or "see the flags") + "). Your "
               "points come from the grader's clean room, which ran your TODO cells on their "
               "own.</p>")
    else:
        why = (f"<p>Your submission could not be graded: {html.escape(result.reason or '')}."
               "</p><p>Submit the assignment notebook (.ipynb) you worked in, saved from "
               "Jupyter.</p>")
    rows = "".join(
        f"<tr><td>{html.escape(t.name)}</td><td>{t.score:g} / {t.max_score:g}</td>"
        f"<td>{html.escape(t.reason)}</td></tr>" for t in result.tests)
    table = (f"<table><tr><th>test</th><th>points</th><th>reason</th></tr>{rows}</table>"
             if rows and result.status == "graded" else "")
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        "style-src 'unsafe-inline'\">"
        f"<title>{html.escape(assignment)}: feedback</title></head><body>"
        f"<h1>{html.escape(assignment)}</h1><p>Student: {html.escape(student)}</p>"
        f"<p><strong>Score: {result.score:g} / {result.max_score:g}</strong></p>"
        f"{why}{table}</body></html>\n"
    )


def write_feedback(course, shard, student, answer, result, feedback_root: Path) -> None:
    """nbgrader's feedback pages to ``feedback_root/<student>/``, or a page with the reason
    (and the verdicts, when the notebook's run failed but the clean room gave them)."""
    dest = feedback_root / student
    dest.mkdir(parents=True, exist_ok=True)
    if shard is not None and answer is not None and answer.get("feedback_ok"):
        course.feedback(student).parent.mkdir(parents=True, exist_ok=True)
        shard.feedback(student).rename(course.feedback(student))  # the shard is scratch
        for page in course.feedback(student).glob("*.html"):
            shutil.copy(page, dest / page.name)
        return
    if not result.reason and result.status != "graded":
        result.reason = "feedback could not be generated"
    for name in course.notebooks:
        (dest / f"{name}.html").write_text(_failure_feedback(student, course.assignment, result))


NO_SANDBOX_WARNING = ("graded WITHOUT the sandbox (--no-sandbox): the submissions' code ran "
                      "with the grader's permissions and could have changed any grade")


SUMMARY_WIDTH = 120  # characters of the summary table; reasons wrap within it


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
    indent = sum(widths) + 2 * 4
    # reasons are kept whole: a long one wraps under its column instead of being cut
    room = max(40, SUMMARY_WIDTH - indent)
    lines = []
    for r in rows:
        reason = textwrap.wrap(r[4], room, break_long_words=True, break_on_hyphens=False) or [""]
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + reason[0])
        lines += [" " * indent + more for more in reason[1:]]
        if r is rows[0]:
            lines.append("-" * min(SUMMARY_WIDTH, indent + 20))
    n = len(report.students)
    if not report.sandbox:
        lines.append(f"WARNING: {NO_SANDBOX_WARNING}")
    lines.append(
        f"{n} submission(s) graded in {report.seconds:.1f} s; grades: {report.grades_csv}; "
        f"feedback: {report.out / 'feedback'}"
    )
    return "\n".join(line.rstrip() for line in lines)
