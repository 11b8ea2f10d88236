"""One grading batch on real nbgrader, shared by the end-to-end tests of each assignment."""

from __future__ import annotations

import nbformat

from autograder.authoring.examples import release, submission
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
