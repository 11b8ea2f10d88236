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
   concurrently: ``autograder.gradebook.Recorder``, one connection for the batch), export
   ``DIR/grades.csv`` (nbgrader's CSV export), write the feedback under
   ``DIR/feedback/<student_id>/`` and ``DIR/results.json`` (every test, with the reason of each
   failure), and print the summary table.

Nothing a submission does ends the batch: a submission that cannot be graded scores 0 with its
reason.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import nbformat

from . import cleanroom, preflight, sandbox, scan, submission, verdicts
from .course import (
    SOURCE_ROOT,
    Course,
    CourseError,
    collect_batch,
    create_course,
    make_shard,
)
from .gradebook import Recorder, export_csv
from .intake import printable, submitted_as
from .masters import graded_cells
from .nbgrader_config import CELL_TIMEOUT_S
from .pool import Worker, run_jobs
from .report import (
    NBGRADER_FAILED,
    NO_SANDBOX_WARNING,
    RUN_FAILED,
    GradingReport,
    StudentResult,
    TestResult,
    cell_reason,
    failure_reason,
    first_line,
    format_summary,
    locked_cell_changes,
    printable_result,
    read_autograded,
    write_feedback,
)
from .submission import read_submission

DEFAULT_SUBMISSION_TIMEOUT_S = 600


# ----------------------------------------------------------------------------- the command

@dataclass
class Run:
    """The settings of one grading run, and where its outputs go."""

    assignment: str
    out: Path
    source_root: Path
    cell_timeout: int | None
    submission_timeout: float
    limits: dict | None  # the sandbox's limits, None: --no-sandbox
    echo: Callable[[str], None]
    start: float = field(default_factory=time.perf_counter)
    reseed: bool = False
    # issue 21: the engine (None: the local pool; else a Dask scheduler's address) and the
    # preflight (autograder/cluster.py, autograder/preflight.py)
    scheduler: str | None = None
    preflight: bool = True
    notebook_run: bool = True  # False: the feedback shows the submitted notebook, not a re-run

    @property
    def logs(self) -> Path:
        return self.out / "logs"


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
    reseed: bool = False,
    scheduler: str | None = None,
    preflight: bool = True,
    notebook_run: bool = True,
    echo=print,
) -> GradingReport:
    """Grade every submission of ``assignment``; write the results under ``out``.

    Each kernel runs in ``autograder.sandbox`` under ``memory_limit`` bytes; without the
    sandbox on this machine the command refuses, unless ``use_sandbox=False``. The grading
    seeds come from the course secret in ``out`` (``reseed``: a new one). ``scheduler``: grade
    on that Dask cluster instead of the local pool (``autograder.cluster``); ``preflight``:
    first grade the solution and the untouched notebook, and refuse unless they grade as
    documented (``autograder.preflight``); ``notebook_run=False``: no kernel runs the whole
    notebook for the feedback, which then shows the notebook as submitted (the points, from the
    clean room, are the same)."""
    if use_sandbox and sandbox.missing():
        raise CourseError(f"cannot build the sandbox for the submissions' kernels: "
                          f"{sandbox.missing()}. Grade without it only with --no-sandbox.")
    limits = ({"memory_limit": int(memory_limit), "pids_limit": sandbox.DEFAULT_PIDS_LIMIT}
              if use_sandbox else None)
    run = Run(assignment, Path(out).resolve(), Path(source_root), cell_timeout,
              submission_timeout, limits, echo, reseed=reseed, scheduler=scheduler,
              preflight=preflight, notebook_run=notebook_run)
    if not any((run.source_root / assignment).glob("*.ipynb")):
        raise CourseError(f"no instructor notebook found in {run.source_root / assignment}")
    _clear_outputs(run.out)
    if workers is None:
        workers = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                   else os.cpu_count())
    workers = max(1, workers)
    # ---- issue 21: the jobs go to a Dask cluster (autograder.cluster), or to the local pool
    cluster = None
    if scheduler is not None:
        from .cluster import Cluster

        cluster = Cluster(scheduler, sandboxed=use_sandbox, echo=echo,
                          log=run.logs / "cluster.log")
        workers = 0
    # ---- end of the hook
    # the workers import nbgrader while the course is released and the submissions collected
    pool = [Worker(run.out, run.logs / f"worker-{i}.log").spawn() for i in range(workers)]
    try:
        return _grade(run, Path(submissions), pool, cluster)
    finally:
        for worker in pool:
            worker.close()
        if cluster is not None:
            cluster.close()


def _clear_outputs(out: Path) -> None:
    """Remove what an earlier run wrote (and nothing else in ``out``): re-running is idempotent."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("grades.csv", "results.json", "feedback", "course", "logs"):
        path = out / stale
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    (out / "logs").mkdir()


def _grade(run: Run, submissions: Path, pool: list[Worker], cluster=None) -> GradingReport:
    run.echo(f"Releasing {run.assignment} from {run.source_root / run.assignment} ...")
    course = create_course(run.out / "course", run.assignment, run.source_root, run.cell_timeout)
    release_nb = course.root / "release" / run.assignment / f"{course.notebooks[0]}.ipynb"
    release = nbformat.read(release_nb, as_version=4)
    try:  # fail closed: every graded cell has a trusted verdict, or nothing is graded
        exercises = cleanroom.exercises_of(release, course.root / "source" / run.assignment)
    except cleanroom.SuiteError as exc:
        raise CourseError(str(exc)) from None
    cells = list(graded_cells(release).items())
    secret = verdicts.course_secret(run.out, reseed=run.reseed)

    run.echo(f"Collecting submissions from {submissions} ...")
    batch = collect_batch(course, submissions)
    if not batch.students:
        raise CourseError(f"no submission (.ipynb, or a .zip of them) found in {submissions}"
                          + "".join(f"\n  {line}" for line in batch.skipped))
    work = course.root / ".shards"
    work.mkdir()
    released = {name: nbformat.read(course.root / "release" / run.assignment / f"{name}.ipynb",
                                    as_version=4) for name in course.notebooks}
    results = {student: _guarded(student, cells, _inspect, course, batch, student, cells,
                                 exercises, released)
               for student in batch.students}

    def make_job(root: Path, student: str) -> dict:
        return {"root": str(root), "assignment": run.assignment, "student": student,
                "cell_timeout": run.cell_timeout, "sandbox": run.limits,
                "notebook_run": run.notebook_run,
                "seeds": verdicts.seeds_for(secret, run.assignment, student).as_dict()}

    jobs = []
    for student, result in results.items():
        if result.status != "graded":
            continue
        try:
            root = make_shard(course, student, work / student).root
        except Exception as exc:  # noqa: BLE001 (a file of the submission's that cannot be copied)
            _fail(result, f"its files could not be prepared for grading: "
                          f"{type(exc).__name__}: {exc}")
            continue
        jobs.append(make_job(root, student))

    # ---- issue 21: one engine for the preflight and the batch (the Dask cluster or the pool)
    def execute(batch: list[dict]) -> dict:
        if cluster is not None:
            return cluster.run_jobs(batch, run.submission_timeout)
        return run_jobs(batch, pool[: max(1, len(batch))], run.submission_timeout)

    if run.preflight and jobs:
        preflight.check(course, cells, execute, make_job, echo=run.echo, local=cluster is None)
    # ---- end of the hook

    busy = pool[: max(1, len(jobs))]
    for worker in pool[len(busy):]:
        worker.close()
    engine = f"the Dask cluster {run.scheduler}" if cluster else f"{len(busy)} worker(s)"
    run.echo(f"Autograding {len(jobs)} submission(s) on {engine} ...")
    answers = execute(jobs) if jobs else {}
    if cluster is None:
        answers.update(_regrade_alone(run, jobs, answers, busy))

    with Recorder(course) as book:  # one connection, a transaction per few dozen submissions
        for student, result in results.items():
            shard = Course(work / student, run.assignment, run.cell_timeout)
            recorded = _guarded(student, cells, _record, run, course, book, shard, result,
                                answers.get(student), cells)
            if recorded is not None:  # recording failed: the row says why
                result.status, result.reason = recorded.status, recorded.reason
                result.tests, result.flags = recorded.tests, result.flags + recorded.flags
                result.score, result.max_score = 0.0, recorded.max_score
                _guarded(student, cells, _zero_and_page, run, course, book, result)

    export_csv(course, run.out / "grades.csv")
    report = GradingReport(run.assignment, run.out, list(results.values()),
                           round(time.perf_counter() - run.start, 3),
                           skipped=[printable(line) for line in batch.skipped],
                           sandbox=run.limits is not None)
    _write_results_json(report, sum(points for _, points in cells))
    remove_shards(work)
    run.echo(format_summary(report))
    return report


SHARD_REMOVERS = 8  # threads removing the shards after the batch


def remove_shards(folder: Path) -> None:
    """Remove ``folder`` and the shards in it, several shards at a time: removing a directory
    waits on the disk (milliseconds each where the file system discards freed blocks at once),
    and those waits overlap, so a batch's thousands of shard folders go in a fraction of the
    time."""
    if folder.is_dir():
        with ThreadPoolExecutor(SHARD_REMOVERS) as threads:
            list(threads.map(partial(shutil.rmtree, ignore_errors=True), folder.iterdir()))
    shutil.rmtree(folder, ignore_errors=True)


def _fail(result: StudentResult, reason: str) -> None:
    result.status, result.reason = "not graded", reason


def _guarded(student: str, cells, step, *args):
    """Run one per-submission ``step``; whatever it raises becomes that submission's row (a
    ``StudentResult`` "not graded" with the reason) instead of ending the batch. Returns the
    step's own value when it succeeds, except for ``_record`` (None: nothing to replace)."""
    try:
        value = step(*args)
        return None if step is _record or step is _zero_and_page else value
    except Exception as exc:  # noqa: BLE001 (one submission's failure, never the batch's)
        name = step.__name__.strip("_")
        max_total = sum(points for _, points in cells)
        result = StudentResult(student, 0.0, max_total, "not graded",
                               reason=f"the grader could not {STEP_WORDS.get(name, name)} "
                                      f"this submission: {type(exc).__name__}: "
                                      f"{first_line(str(exc), 300)}")
        result.tests = [TestResult(grade_id, 0.0, points, result.reason)
                        for grade_id, points in cells]
        result.flags.append("internal: " + first_line(traceback.format_exc().strip()
                                                       .splitlines()[-1], 300))
        return result


STEP_WORDS = {"inspect": "read", "record": "record the grades of",
              "zero_and_page": "write a feedback page for"}


def _zero_and_page(run: Run, course: Course, book: Recorder, result: StudentResult) -> None:
    book.record_zero(result.student)
    write_feedback(course, None, result.student, None, result, run.out / "feedback")


def _timed_out(answer: dict | None) -> bool:
    if not answer:
        return False
    return bool(answer.get("timed_out")) or "GradingTimeout" in (answer.get("error") or "")


def _regrade_alone(run: Run, jobs: list[dict], answers: dict, pool: list[Worker]) -> dict:
    """Submissions that ran past a time limit while others were graded beside them are graded
    again, one at a time, with nothing else running: contention is never charged to the
    student. Their new answers (flagged with what happened)."""
    if len(jobs) < 2 and len(pool) < 2:
        return {}
    again = [job for job in jobs if _timed_out(answers.get(job["student"]))]
    if not again:
        return {}
    run.echo(f"Grading {len(again)} submission(s) that ran past a time limit again, alone ...")
    for worker in pool[1:]:
        worker.close()
    regraded = run_jobs(again, pool[:1], run.submission_timeout)
    for answer in regraded.values():
        answer["regraded_alone"] = True
    return regraded


def _inspect(course: Course, batch, student: str, cells, exercises=(), released=None
             ) -> StudentResult:
    """Before grading: is each notebook a notebook (``autograder.submission``: parsed with a
    depth limit, validated against nbformat's schema, its nbgrader metadata the release's),
    which locked cells were changed, what does the static scan flag. A submission that is not
    a notebook is not graded. ``released``: notebook name -> the released notebook (read once
    per batch; read here when not given)."""
    max_total = sum(points for _, points in cells)
    flags: list[str] = list(batch.submissions[student].flags)
    result = StudentResult(student, 0.0, max_total, "graded", flags=flags)
    result.submitted_as = submitted_as(batch.submissions[student])
    for name in course.notebooks:
        path = course.submitted(student) / f"{name}.ipynb"
        if not path.exists():
            continue
        nb, problem = read_submission(path)
        if nb is None:
            result.status, result.reason = "not graded", problem
            break
        release = (released or {}).get(name) or nbformat.read(
            course.root / "release" / course.assignment / f"{name}.ipynb", as_version=4)
        flags += locked_cell_changes(nb, release)
        flags += submission.normalize(nb, release)
        flags += scan.scan_notebook(nb, release, exercises)
        submission.write(nb, path)  # what nbgrader and the clean room read
    return result


def _record(run: Run, course: Course, book: Recorder, shard: Course, result: StudentResult,
            answer, cells):
    """After grading: the worker's answer and the shard's grades into the course gradebook
    (``book``) and ``result``, with the reason of every lost point, then the student's feedback
    page. The shard's autograded notebook and feedback move into the course (the shard is
    scratch, removed after the batch).

    The points come from the trusted verdicts (``answer["verdicts"]``); when the notebook's run
    failed (a crash, a hang, the kernel out of memory) they are recorded all the same, and the
    failure is a flag: the run decides no point."""
    student = result.student
    verdicts_of = None
    if answer is not None:
        result.seconds = answer.get("seconds", 0.0)
        result.autograde_seconds = answer.get("autograde_seconds", result.seconds)
        result.phases = answer.get("phases") if isinstance(answer.get("phases"), dict) else {}
        (run.logs / f"{student}.log").write_text(
            (answer.get("log") or "") + "\n" + (answer.get("error") or ""))
        result.sandbox = answer.get("sandbox") or {}
        limit_hit = sandbox.limit_messages(result.sandbox)
        verdicts_of = answer.get("verdicts") if isinstance(answer.get("verdicts"), dict) else None
        if answer.get("regraded_alone"):
            result.flags.append("ran past a time limit while graded beside other submissions: "
                                "graded again alone, and this is that grade")
        if answer["autograde_ok"] and verdicts_of is not None:
            book.merge(shard, student)
        elif verdicts_of is not None:  # the run failed; the clean room's verdicts stand
            why = limit_hit.pop(0) if result.sandbox.get("oom_kills") else failure_reason(answer)
            failed = RUN_FAILED if run.notebook_run else NBGRADER_FAILED
            result.flags.append(f"{failed} ({why}); the points come from the clean room, "
                                "which ran your TODO cells on their own")
            book.record_verdicts(student, {k: bool(v.get("passed"))
                                           for k, v in verdicts_of.items()})
        else:
            result.status = "not graded"
            result.reason = limit_hit.pop(0) if result.sandbox.get("oom_kills") else \
                failure_reason(answer)
        result.flags += limit_hit
    if result.status != "graded":
        book.record_zero(student)
    scores = book.scores(student)
    autograded = {}
    if result.status == "graded" and answer is not None and answer["autograde_ok"] and \
            verdicts_of is not None:
        course.autograded(student).parent.mkdir(parents=True, exist_ok=True)
        shard.autograded(student).rename(course.autograded(student))
        autograded = read_autograded(course, student, result)
    for name, points in cells:
        score, max_score = scores.get(name, (0.0, points))
        reason = ""
        if score < max_score:
            if name in autograded:
                reason = cell_reason(autograded[name], course.cell_timeout or CELL_TIMEOUT_S)
            elif verdicts_of and name in verdicts_of:
                reason = "AssertionError: " + " ".join(
                    str(verdicts_of[name].get("message", "")).split())
            else:
                reason = result.reason or "not graded"
        result.tests.append(TestResult(name, score, max_score, reason))
    result.score = sum(t.score for t in result.tests)
    result.max_score = sum(t.max_score for t in result.tests)
    write_feedback(course, shard, student, answer, result, run.out / "feedback")


def _write_results_json(report: GradingReport, max_score: float) -> None:
    (report.out / "results.json").write_text(json.dumps({
        "assignment": report.assignment,
        "max_score": max_score,
        "sandbox": report.sandbox,
        **({} if report.sandbox else {"warning": NO_SANDBOX_WARNING}),
        "students": [printable_result(asdict(s)) for s in report.students],
        "skipped": report.skipped,
    }, indent=1) + "\n")


__all__ = ["grade", "GradingReport", "StudentResult", "TestResult", "format_summary"]
