"""One grading batch on real nbgrader, shared by the end-to-end tests of each assignment."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from autograder.authoring.examples import examples, release, submission
from autograder.grade import grade


def grade_batch(assignment: str, batch: dict, tmp_path_factory, *, cell_timeout: int,
                submission_timeout: int):
    """Write one submission per entry of ``batch`` (name -> (replacement cells, or None for the
    untouched notebook; the graded cells expected to fail)) and grade them all in one batch,
    with two workers. Returns (the grading report, its output folder)."""
    masters, released = release(assignment)
    master, student = masters[assignment], released[assignment]
    folder = tmp_path_factory.mktemp(f"{assignment}-submissions")
    for name, (replace, _) in batch.items():
        nb = submission(master, student, replace=replace or None, solved=replace is not None)
        nbformat.write(nb, folder / f"{name}.ipynb")
    out = tmp_path_factory.mktemp(f"{assignment}-out")
    # no preflight: the batch itself grades the solution and the untouched notebook
    report = grade(assignment, folder, out, workers=2, cell_timeout=cell_timeout,
                   submission_timeout=submission_timeout, preflight=False, echo=lambda *_: None)
    return report, out


def demo_batch(assignment: str, *, cell_timeout: int, submission_timeout: int):
    """A module-scoped fixture: ``assignment``'s ``make demo`` examples (the solution, the
    untouched notebook and the known mistakes marked ``example``) graded in one batch, as
    ``grade_batch`` returns it."""

    @pytest.fixture(scope="module")
    def graded(tmp_path_factory):
        return grade_batch(assignment, examples(assignment), tmp_path_factory,
                           cell_timeout=cell_timeout, submission_timeout=submission_timeout)

    return graded


def assert_each_submission_loses_its_cells(report, batch: dict, graded: dict,
                                           max_score: float = 50.0) -> None:
    """The solution 50/50, the untouched notebook 0, each mistake exactly the points of the
    cells it declares; every failed cell with a reason, none "cannot evaluate"."""
    results = report.by_student()
    assert set(results) == set(batch)
    for name, (_, failing) in batch.items():
        result = results[name]
        failed = sorted(t.name for t in result.tests if not t.passed)
        assert failed == sorted(failing), (name, [(t.name, t.reason) for t in result.tests
                                                  if not t.passed])
        assert result.score == max_score - sum(graded[c] for c in failing), name
        for test in result.tests:
            assert test.passed or test.reason, (name, test.name)
            assert "cannot evaluate" not in (test.reason or ""), (name, test.name)


def assert_feedback_for_every_submission(out, batch: dict) -> None:
    pages = {p.parent.name for p in (out / "feedback").rglob("*.html")}
    assert pages >= set(batch), set(batch) - pages


def documented_demo_scores() -> dict[str, float]:
    """Each ``make demo`` example's expected score, as autograder/README.md's tables give it
    (``| `wrong_no_scaling` | 43 | ...``)."""
    readme = Path(__file__).resolve().parents[2] / "autograder" / "README.md"
    rows = re.findall(r"^\| `(\w+)` \| (\d+) \|", readme.read_text(), re.M)
    return {name: float(score) for name, score in rows}


def assert_scores_as_documented(scores: dict[str, float]) -> None:
    """``scores`` (example name -> the score the batch gave it) are the README's."""
    documented = documented_demo_scores()
    assert {name: documented.get(name) for name in scores} == scores


def assert_demo_graded(graded, batch: dict, graded_cells: dict) -> None:
    """A ``demo_batch``: each submission loses exactly the points of its cells, each with a
    reason; the scores are the ones autograder/README.md documents; every submission has its
    feedback page."""
    report, out = graded
    assert_each_submission_loses_its_cells(report, batch, graded_cells)
    assert_scores_as_documented({s.student: s.score for s in report.students})
    assert_feedback_for_every_submission(out, batch)
