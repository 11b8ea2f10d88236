"""The sqlite gradebooks: copy a shard's grades into the course's (``Recorder``: one connection
for the whole batch, plain SQL, a transaction per ``RECORDS_PER_COMMIT`` submissions), record a
submission that could not be graded, read the scores back and export ``grades.csv``. Only the
grading command's own process writes the course gradebook, so sqlite is never written
concurrently."""

from __future__ import annotations

import contextlib
import sqlite3
import warnings
from pathlib import Path

from .course import Course


@contextlib.contextmanager
def _gradebooks(*urls):
    """Open nbgrader gradebooks, silencing the SQLAlchemy warnings nbgrader's own
    ``add_submission`` triggers (harmless autoflush notices)."""
    from nbgrader.api import Gradebook
    from sqlalchemy.exc import SAWarning

    with warnings.catch_warnings(), contextlib.ExitStack() as stack:
        warnings.simplefilter("ignore", SAWarning)
        yield [stack.enter_context(Gradebook(url)) for url in urls]


# A submission's rows in nbgrader's schema, parents first, each selected by the student and the
# assignment's id (nbgrader's ``add_submission`` creates them; the worker fills them in).
_OF_SUBMISSION = ("SELECT id FROM submitted_assignment "
                  "WHERE student_id = :student AND assignment_id = :assignment")
_OF_NOTEBOOKS = f"SELECT id FROM submitted_notebook WHERE assignment_id IN ({_OF_SUBMISSION})"
SUBMISSION_ROWS = (
    ("student", "id = :student"),
    ("submitted_assignment", "student_id = :student AND assignment_id = :assignment"),
    ("submitted_notebook", f"assignment_id IN ({_OF_SUBMISSION})"),
    ("grade", f"notebook_id IN ({_OF_NOTEBOOKS})"),
    ("comment", f"notebook_id IN ({_OF_NOTEBOOKS})"),
)

# nbgrader's ``Grade.score`` (the manual score when set, else the automatic one, plus any extra
# credit) and ``Grade.max_score`` (its grade cell's or task cell's), in one query per student
SCORES = """
SELECT cell.name,
       CASE WHEN g.manual_score IS NOT NULL THEN g.manual_score + COALESCE(g.extra_credit, 0.0)
            WHEN g.auto_score IS NOT NULL THEN g.auto_score + COALESCE(g.extra_credit, 0.0)
            ELSE 0.0 END,
       COALESCE(gc.max_score, tc.max_score, 0.0)
FROM grade g
JOIN submitted_notebook sn ON g.notebook_id = sn.id
JOIN submitted_assignment sa ON sn.assignment_id = sa.id
JOIN assignment a ON sa.assignment_id = a.id
JOIN base_cell cell ON g.cell_id = cell.id
LEFT JOIN grade_cells gc ON gc.id = cell.id
LEFT JOIN task_cells tc ON tc.id = cell.id
WHERE a.name = ? AND sa.student_id = ?
"""

# nbgrader's schema indexes a submission's notebooks, grades and comments only by cell first:
# finding one submission's rows would read every submission's, and a batch would cost the
# square of its size. These indexes (extra to nbgrader's, which ignores them) make it a lookup.
INDEXES = (
    "CREATE INDEX IF NOT EXISTS ix_autograder_submitted_notebook_assignment "
    "ON submitted_notebook (assignment_id)",
    "CREATE INDEX IF NOT EXISTS ix_autograder_grade_notebook ON grade (notebook_id)",
    "CREATE INDEX IF NOT EXISTS ix_autograder_comment_notebook ON comment (notebook_id)",
)

RECORDS_PER_COMMIT = 50  # submissions merged in one transaction (each commit waits for the disk)


class GradebookError(RuntimeError):
    """A shard's gradebook that cannot be merged into the course's."""


def _scores(db: sqlite3.Connection, assignment: str, student: str) -> dict:
    return {name: (float(score or 0), float(most))
            for name, score, most in db.execute(SCORES, (assignment, student))}


def _assignment_id(db: sqlite3.Connection, assignment: str) -> str:
    row = db.execute("SELECT id FROM assignment WHERE name = ?", (assignment,)).fetchone()
    if row is None:
        raise GradebookError(f"no assignment {assignment!r} in the gradebook")
    return row[0]


class Recorder:
    """The course gradebook, open for a whole batch; only the grading command writes it.

    ``merge`` copies one submission's rows from its shard's gradebook (a copy of the course's as
    released, so every id of the assignment, its notebooks and cells is the course's) with plain
    SQL; ``RECORDS_PER_COMMIT`` merges share one transaction, each in its own savepoint, so a
    merge that fails leaves nothing of that submission and a crash loses only the merges not yet
    committed. ``commit`` (also on leaving the ``with`` block) makes everything merged so far
    durable. A student's submission is inserted, never replaced: a second merge of the same
    student fails (graded once). The rare paths (``record_zero``, ``record_verdicts``) commit
    first, then go through nbgrader's own API."""

    def __init__(self, course: Course, every: int = RECORDS_PER_COMMIT):
        self.course, self.every, self.pending = course, every, 0
        self.db = sqlite3.connect(course.db_path, isolation_level=None, timeout=60)
        self.assignment_id = _assignment_id(self.db, course.assignment)
        for index in INDEXES:
            self.db.execute(index)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        self.close()

    def merge(self, shard: Course, student: str) -> None:
        """Copy the student's submission (grades, comments, flags, timestamp) from ``shard``."""
        source = sqlite3.connect(f"{shard.db_path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            if _assignment_id(source, self.course.assignment) != self.assignment_id:
                raise GradebookError("the shard's gradebook is not this course's")
            keys = {"student": student, "assignment": self.assignment_id}
            rows = []
            for table, where in SUBMISSION_ROWS:
                cursor = source.execute(f"SELECT * FROM {table} WHERE {where}", keys)
                rows.append((table, [c[0] for c in cursor.description], cursor.fetchall()))
        finally:
            source.close()
        if not rows[1][2]:
            raise GradebookError(f"no submission of {student} in the shard's gradebook")
        if not self.db.in_transaction:
            self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("SAVEPOINT submission")
        try:
            for table, columns, values in rows:
                # a student row may exist already (a roster); a submission may not
                verb = "INSERT OR IGNORE" if table == "student" else "INSERT"
                self.db.executemany(f"{verb} INTO {table} ({', '.join(columns)}) "
                                    f"VALUES ({', '.join('?' * len(columns))})", values)
        except BaseException:
            self.db.execute("ROLLBACK TO submission")
            self.db.execute("RELEASE submission")
            raise
        self.db.execute("RELEASE submission")
        self.pending += 1
        if self.pending >= self.every:
            self.commit()

    def scores(self, student: str) -> dict[str, tuple[float, float]]:
        """grade_id -> (score, max score) of the student's submission, as recorded."""
        return _scores(self.db, self.course.assignment, student)

    def record_zero(self, student: str) -> None:
        self.commit()
        record_zero(self.course, student)

    def record_verdicts(self, student: str, passed: dict[str, bool]) -> None:
        self.commit()
        record_verdicts(self.course, student, passed)

    def commit(self) -> None:
        if self.db.in_transaction:
            self.db.execute("COMMIT")
        self.pending = 0

    def close(self) -> None:
        if self.db is not None:
            self.commit()
            self.db.close()
            self.db = None


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


def record_verdicts(course: Course, student: str, passed: dict[str, bool]) -> None:
    """A submission whose notebook run failed but whose clean room gave verdicts: each graded
    cell scores its points when its verdict passed, 0 otherwise (and 0 for a cell without one)."""
    with _gradebooks(course.db_url) as (gb,):
        gb.update_or_create_student(student)
        submission = gb.update_or_create_submission(course.assignment, student)
        for notebook in submission.notebooks:
            for grade in notebook.grades:
                grade.auto_score = grade.max_score if passed.get(grade.name) else 0
                grade.needs_manual_grade = False
        gb.db.commit()


def scores_from_gradebook(course: Course, student: str) -> dict[str, tuple[float, float]]:
    """grade_id -> (score, max score) of the student's submission in ``course``'s gradebook."""
    db = sqlite3.connect(f"{course.db_path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        scores = _scores(db, course.assignment, student)
    finally:
        db.close()
    if not scores:
        raise GradebookError(f"no submission of {student} in {course.db_path}")
    return scores


def export_csv(course: Course, dest: Path) -> None:
    from nbgrader.plugins.export import CsvExportPlugin

    plugin = CsvExportPlugin()
    plugin.to = str(dest)
    plugin.assignment = [course.assignment]
    with _gradebooks(course.db_url) as (gb,):
        plugin.export(gb)
