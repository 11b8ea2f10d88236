"""The course gradebook's recorder (``autograder.gradebook.Recorder``): a submission merged from
its shard with plain SQL is what nbgrader itself reads back, a student is recorded once, a merge
that fails leaves nothing of it, and recording costs the same per submission however many came
before (the coordinator's rate, issue 21: its speed is measured in benchmarks/bench_cluster.py,
here only how its work grows, counted in sqlite's own steps)."""

from __future__ import annotations

import shutil
import sqlite3
import sys
import uuid
import warnings
from pathlib import Path

import pytest

from autograder.course import Course, create_course
from autograder.gradebook import GradebookError, Recorder, scores_from_gradebook

sys.path.insert(0, str(Path(__file__).parents[1] / "grading"))
import toy_course  # noqa: E402

TEMPLATE = "template-student"
SUBMISSION_TABLES = ("student", "submitted_assignment", "submitted_notebook", "grade", "comment")


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> Course:
    """The toy course as released, and one shard graded through nbgrader's own API (as the
    worker grades it): the visible test passed (2 points), the hidden one failed, a manual
    score and extra credit on the visible one."""
    from nbgrader.api import Gradebook
    from sqlalchemy.exc import SAWarning

    tmp = tmp_path_factory.mktemp("gradebook")
    source = toy_course.write_source(tmp / "source")
    course = create_course(tmp / "course", toy_course.ASSIGNMENT, source)
    template = tmp / "template.db"
    shutil.copy(course.db_path, template)
    with warnings.catch_warnings(), Gradebook(f"sqlite:///{template}") as gb:
        warnings.simplefilter("ignore", SAWarning)
        gb.add_student(TEMPLATE)
        submission = gb.add_submission(toy_course.ASSIGNMENT, TEMPLATE)
        grades = sorted((g for nb in submission.notebooks for g in nb.grades),
                        key=lambda g: g.max_score)
        for grade in grades:
            grade.auto_score, grade.needs_manual_grade = 0.0, False
        grades[0].auto_score, grades[0].manual_score, grades[0].extra_credit = 2.0, 1.5, 0.25
        gb.db.commit()
    return course


def _shard(released: Course, student: str, root: Path) -> Course:
    """A shard whose gradebook holds ``student``'s submission: the template's rows under the
    student's name and fresh ids (what a worker's ``add_submission`` writes)."""
    root.mkdir(parents=True)
    shutil.copy(released.db_path.parent.parent / "template.db", root / "gradebook.db")
    db = sqlite3.connect(root / "gradebook.db")
    renamed = {TEMPLATE: student}
    for table in SUBMISSION_TABLES[1:]:
        renamed.update({old: uuid.uuid4().hex for (old,) in db.execute(f"SELECT id FROM {table}")})
    for table in SUBMISSION_TABLES:
        columns = [c[1] for c in db.execute(f"PRAGMA table_info({table})")]
        for row in db.execute(f"SELECT rowid, * FROM {table}").fetchall():
            values = [renamed.get(v, v) if isinstance(v, str) else v for v in row[1:]]
            db.execute(f"UPDATE {table} SET {', '.join(f'{c} = ?' for c in columns)} "
                       "WHERE rowid = ?", (*values, row[0]))
    db.commit()
    db.close()
    return Course(root, released.assignment)


def _fresh_course(released: Course, root: Path) -> Course:
    root.mkdir(parents=True)
    shutil.copy(released.db_path, root / "gradebook.db")
    return Course(root, released.assignment)


def test_a_merged_submission_reads_back_as_nbgrader_scores_it(released, tmp_path):
    from nbgrader.api import Gradebook

    course = _fresh_course(released, tmp_path / "course")
    with Recorder(course) as book:
        book.merge(_shard(released, "alice", tmp_path / "alice"), "alice")
        recorded = book.scores("alice")
    with Gradebook(course.db_url) as gb:  # nbgrader's own Grade.score and Grade.max_score
        submission = gb.find_submission(course.assignment, "alice")
        expected = {g.name: (float(g.score), float(g.max_score))
                    for nb in submission.notebooks for g in nb.grades}
    assert recorded == expected == scores_from_gradebook(course, "alice")
    assert sorted(recorded.values()) == [(0.0, 3.0), (1.75, 2.0)]  # manual + extra credit


def test_a_student_is_recorded_once_and_a_failed_merge_leaves_nothing(released, tmp_path):
    course = _fresh_course(released, tmp_path / "course")
    with Recorder(course) as book:
        book.merge(_shard(released, "alice", tmp_path / "alice"), "alice")
        again = _shard(released, "alice", tmp_path / "alice-again")
        with pytest.raises(sqlite3.IntegrityError):
            book.merge(again, "alice")
        with pytest.raises(GradebookError, match="no submission of bob"):
            book.merge(_shard(released, "carol", tmp_path / "carol"), "bob")
        book.merge(_shard(released, "dave", tmp_path / "dave"), "dave")
    db = sqlite3.connect(course.db_path)
    assert db.execute("SELECT student_id FROM submitted_assignment ORDER BY student_id"
                      ).fetchall() == [("alice",), ("dave",)]
    assert db.execute("SELECT COUNT(*) FROM grade").fetchone() == (4,)  # 2 cells each


def _recording_steps(released: Course, root: Path, n: int) -> int:
    """sqlite's virtual-machine steps on the course gradebook to record ``n`` submissions and
    read each one's scores back (a deterministic measure of the work, not a time)."""
    course = _fresh_course(released, root / "course")
    shards = [_shard(released, f"s{i:04d}", root / f"s{i:04d}") for i in range(n)]
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    with Recorder(course) as book:
        book.db.set_progress_handler(count, 100)
        for shard in shards:
            student = shard.root.name
            book.merge(shard, student)
            assert sum(score for score, _ in book.scores(student).values()) == 1.75
    return steps[0]


def test_recording_is_not_quadratic(released, tmp_path):
    """Four times the submissions costs about four times the work (16 times if each
    recording re-read the whole course gradebook); less than 8 times passes."""
    few = _recording_steps(released, tmp_path / "few", 50)
    many = _recording_steps(released, tmp_path / "many", 200)
    assert few > 0
    print(f"recording steps: 50 -> {few}, 200 -> {many} ({many / few:.1f}x)")
    assert many < 8 * few, (few, many)
