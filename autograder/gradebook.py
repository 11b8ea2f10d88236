"""The sqlite gradebooks: copy a shard's grades into the course's, record a submission that
could not be graded, read the scores back and export ``grades.csv``. Only the grading command's
own process writes the course gradebook, so sqlite is never written concurrently."""

from __future__ import annotations

import contextlib
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
