"""Preflight: before grading a class, grade the master's solution and the untouched notebook.

Both go through the very job the students' submissions will: the same release, sandbox,
limits, seeds derivation, clean room and engine (the local pool, or the Dask cluster). Unless
the solution gets full marks and the untouched notebook no more than its documented score (0:
see the example tables in autograder/README.md), ``check`` refuses the whole run before any
student is graded, naming the failing cells and the likely cause. Without it, an environment
whose kernel cannot import ``fusionlab`` gives every student 0 ("No module named
'fusionlab'") and the command exits 0.

``python -m autograder grade ... --skip-preflight`` skips it (for those who know why).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .course import Course, CourseError
from .gradebook import scores_from_gradebook
from .report import StudentResult, cell_reason, failure_reason, first_line, read_autograded

SOLUTION, UNTOUCHED = "preflight-solution", "preflight-untouched"
UNTOUCHED_SCORE = 0.0  # what the untouched notebook gets, as every assignment documents
SHOWN_CELLS = 6  # failing cells named per reason in the message; the rest are counted
REASON_CHARS = 400  # of each distinct reason


class PreflightError(CourseError):
    """The solution or the untouched notebook does not grade as documented: nobody is graded."""


@dataclass
class Outcome:
    """How one preflight notebook graded."""

    label: str
    score: float = 0.0
    max_score: float = 0.0
    cells: list[tuple[str, float, float, str]] = field(default_factory=list)  # name, got, max, why
    error: str = ""  # the job failed as a whole
    text: str = ""  # the job's log and error, for the diagnosis

    def failing(self, solved: bool) -> list[tuple[str, float, float, str]]:
        return [c for c in self.cells if (c[1] < c[2] if solved else c[1] > 0)]


def build_shards(course: Course, folder: Path) -> dict[str, Course]:
    """Two shards of ``course``: the master's solutions filled into the release, and the
    release as it is, each as a student's submission."""
    from .masters import submission

    if folder.exists():
        shutil.rmtree(folder)
    shards = {}
    for student, solved in ((SOLUTION, True), (UNTOUCHED, False)):
        root = folder / student
        root.mkdir(parents=True)
        shutil.copy(course.db_path, root / "gradebook.db")
        for kind in ("source", "release"):
            shutil.copytree(course.root / kind / course.assignment, root / kind / course.assignment)
        shard = Course(root, course.assignment, course.cell_timeout)
        shard.submitted(student).mkdir(parents=True)
        for name in course.notebooks:
            released = nbformat.read(course.root / "release" / course.assignment /
                                     f"{name}.ipynb", as_version=4)
            master = nbformat.read(course.root / "source" / course.assignment / f"{name}.ipynb",
                                   as_version=4)
            nbformat.write(submission(master, released, solved=solved),
                           shard.submitted(student) / f"{name}.ipynb")
        shards[student] = shard
    return shards


def outcome(shard: Course, student: str, answer: dict | None, label: str,
            cells: list[tuple[str, float]]) -> Outcome:
    """The preflight notebook's grade from its shard, as ``autograder.grade`` reads a student's."""
    result = Outcome(label, max_score=sum(points for _, points in cells))
    answer = answer or {"autograde_ok": False, "error": "no answer from the grading engine"}
    result.text = f"{answer.get('log') or ''}\n{answer.get('error') or ''}"
    if not answer.get("autograde_ok"):
        result.error = failure_reason(answer)
        result.cells = [(name, 0.0, points, result.error) for name, points in cells]
        return result
    scores = scores_from_gradebook(shard, student)
    autograded = read_autograded(shard, student, StudentResult(student, 0.0, 0.0, "graded"))
    for name, points in cells:
        got, most = scores.get(name, (0.0, points))
        why = _full_reason(autograded[name], shard) if name in autograded else ""
        result.cells.append((name, got, most, why if got < most else ""))
    result.score = sum(c[1] for c in result.cells)
    result.text += "\n" + "\n".join(_run_errors(shard, student))
    return result


def _run_errors(shard: Course, student: str) -> list[str]:
    """The errors of the notebook's own run, every cell (a setup cell's failed import explains
    the graded cells' failures; it decides no points, so no verdict names it)."""
    errors = []
    for name in shard.notebooks:
        path = shard.autograded(student) / f"{name}.ipynb"
        if path.exists():
            errors += [f"{o.get('ename')}: {o.get('evalue', '')}"
                       for cell in nbformat.read(path, as_version=4).cells
                       for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    return errors


def _full_reason(cell, shard: Course) -> str:
    """A failed cell's whole verdict (the summary's ``cell_reason`` keeps its first 160
    characters; the cause is often at the end, e.g. the clean room's last lines)."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error" and output.get("ename") != "CellTimeoutError":
            return " ".join(f"{output.get('ename')}: {output.get('evalue', '')}".split())
    return cell_reason(cell, shard.cell_timeout)


def check(course: Course, cells: list[tuple[str, float]], execute: Callable[[list], dict],
          make_job: Callable[[Path, str], dict], *, echo=print, local: bool = True) -> float:
    """Grade the solution and the untouched notebook with ``execute`` (the batch's engine: a
    list of jobs -> student -> answer); raise ``PreflightError`` unless they grade as
    documented. Returns the preflight's seconds."""
    start = time.perf_counter()
    echo("Preflight: grading the master's solution and the untouched notebook ...")
    folder = course.root / ".preflight"
    shards = build_shards(course, folder)
    answers = execute([make_job(shard.root, student) for student, shard in shards.items()])
    solution = outcome(shards[SOLUTION], SOLUTION, answers.get(SOLUTION),
                       "the master's solution", cells)
    untouched = outcome(shards[UNTOUCHED], UNTOUCHED, answers.get(UNTOUCHED),
                        "the untouched notebook", cells)
    shutil.rmtree(folder, ignore_errors=True)
    seconds = time.perf_counter() - start
    solution_fails = bool(solution.failing(solved=True))
    untouched_fails = untouched.score > UNTOUCHED_SCORE
    if not solution_fails and not untouched_fails:
        echo(f"Preflight passed in {seconds:.1f} s: the solution scores "
             f"{solution.score:g}/{solution.max_score:g}, the untouched notebook "
             f"{untouched.score:g}/{untouched.max_score:g}.")
        return seconds
    lines = [f"preflight failed: nobody was graded. Before grading, {course.assignment} was "
             "graded as two submissions, in the same sandbox and engine as the students':"]
    for result, solved, expected in ((solution, True, f"full marks, {solution.max_score:g}"),
                                     (untouched, False, f"at most {UNTOUCHED_SCORE:g}")):
        failing = result.failing(solved)
        verdict = "wrong" if failing and (solved or untouched_fails) else "as documented"
        lines.append(f"  {result.label} scores {result.score:g}/{result.max_score:g} "
                     f"(expected {expected}): {verdict}")
        if verdict == "wrong":
            lines += _failing_cells(failing, solved)
    lines.append("Likely cause: " + likely_cause(solution, untouched, solution_fails,
                                                 local=local))
    lines.append("Fix the environment and grade again; --skip-preflight grades anyway (only if "
                 "you know why the solution does not get full marks).")
    raise PreflightError("\n".join(lines))


def _failing_cells(failing, solved: bool) -> list[str]:
    """The failing cells grouped by their reason: names and points, then the reason."""
    groups: dict[str, list] = {}
    for cell in failing:
        groups.setdefault(cell[3] if solved else "passed without an implementation", []
                          ).append(cell)
    lines = []
    for why, cells in groups.items():
        names = ", ".join(f"{name} {got:g}/{most:g}" for name, got, most, _ in cells[:SHOWN_CELLS])
        more = f" and {len(cells) - SHOWN_CELLS} more" if len(cells) > SHOWN_CELLS else ""
        lines.append(f"    {len(cells)} cell(s): {names}{more}")
        lines.append(f"      {first_line(why or 'no credit', REASON_CHARS)}")
    return lines


def likely_cause(solution: Outcome, untouched: Outcome, solution_fails: bool, *,
                 local: bool = True) -> str:
    """The most probable reason, from the verdicts and the logs of the two preflight jobs."""
    if not solution_fails:
        return ("graded cells pass on the untouched notebook: the release leaks a solution, or a "
                "check accepts the released stub (see the cells above and autograder/hidden)")
    text = "\n".join([solution.text, solution.error, *(c[3] for c in solution.cells)])
    if "No module named 'fusionlab'" in text:
        return ("the submissions' kernel cannot import fusionlab. " + (
            fusionlab_diagnosis() if local else "On the Dask workers, install the course "
            "checkout's fusionlab in the workers' environment (pip install -e . there)."))
    missing = re.search(r"No module named '([\w.]+)'", text)
    missing_name = re.search(r"cannot import name '(\w+)' from '([\w.]+)'", text)
    if missing or missing_name:
        what = missing.group(1) if missing else "{1}.{0}".format(*missing_name.groups())
        return (f"the submissions' kernel cannot import {what}: the grading environment "
                "lacks it (pip install -e '.[instructor]' in it, from a complete checkout)")
    for marker, cause in (
        ("memory limit", "the kernel ran out of memory: raise --memory-limit"),
        ("GradingTimeout", "the solution ran past --submission-timeout on this machine: "
                           "raise it"),
        ("timed out", "a cell of the solution ran past --cell-timeout on this machine: raise it"),
        ("WorkerDied", "the grading worker died: see the logs in --out/logs"),
        ("kernel died", "the kernel died running the solution: see the logs in --out/logs"),
    ):
        if marker in text:
            return cause
    return ("the master's solutions and the trusted references disagree: run the tests of "
            "the assignment (its exercises and autograder/hidden) and `make notebooks`")


def fusionlab_diagnosis() -> str:
    """Where the sandbox's Python finds ``fusionlab`` (a clean environment, as the kernel has),
    against the checkout the grader runs from, with the fix."""
    from . import REPO_ROOT

    try:
        found = subprocess.run(
            [sys.executable, "-I", "-c", "import importlib.util as u; s = u.find_spec("
             "'fusionlab'); print(s.submodule_search_locations[0] if s else '')"],
            env={}, cwd="/", capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        found = ""
    where = (f"its Python ({sys.executable}) finds fusionlab in {found}, which the sandbox does "
             f"not mount" if found else f"its Python ({sys.executable}) has no fusionlab "
             "installed")
    return (f"Outside of PYTHONPATH, {where}; the grader uses {REPO_ROOT / 'fusionlab'} (the "
            "virtual environment's editable install points at another checkout, or is "
            f"missing). Reinstall it from this checkout: cd {REPO_ROOT} && {sys.executable} -m "
            "pip install -e '.[instructor]'")
