"""The preflight (``autograder.preflight``): before grading a class, ``grade`` grades the
master's solution and the untouched notebook in the same sandbox and engine, and refuses,
before grading anyone, unless they score full marks and 0."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder import REPO_ROOT, SOURCE_ROOT, preflight
from autograder.authoring.examples import write_examples
from autograder.grade import grade
from fusionlab.grading import registry
from tests.grading import toy_course

pytestmark = pytest.mark.grading

ASSIGNMENT = "part1_fusion_strategies"


def test_a_grading_environment_that_lacks_a_module_makes_grade_refuse_before_grading_anyone(
        tmp_path):
    """A broken environment (issue 21): the grader runs from a checkout whose fusionlab is
    half there (the notebook's `from fusionlab import check, plots` fails), so the sandboxed
    kernel fails in the locked setup cell, and the clean room with it. Every student would
    get 0, and the command exit 0. (A venv whose editable install points at another checkout
    no longer breaks grading: the sandbox imports the fusionlab it mounts, see
    tests/autograder/test_sandbox.py and tests/autograder/test_student_work.py.)"""
    checkout = tmp_path / "half-copied-checkout"
    for package in ("autograder", "fusionlab"):
        shutil.copytree(REPO_ROOT / package, checkout / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    (checkout / "fusionlab" / "plots.py").unlink()
    submissions = tmp_path / "submissions"
    write_examples(ASSIGNMENT, submissions)
    for extra in ("untouched", "wrong_gate_at_one", "wrong_no_residual"):
        (submissions / f"{extra}.ipynb").unlink()  # one student is enough
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", ASSIGNMENT, str(submissions), "--out",
         str(out), "--source", str(SOURCE_ROOT), "--workers", "2"],
        cwd=checkout, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stdout + done.stderr
    error = done.stderr
    assert "preflight failed: nobody was graded" in error
    # the setup cell stopped, so the exercise built on CrossAttentionLayer loses all its cells
    bidirectional = registry.exercise("bidirectional")
    score = 50 - bidirectional.points
    assert f"the master's solution scores {score}/50 (expected full marks, 50): wrong" in error
    visible = bidirectional.cell("bidir_visible_shape")
    assert f"bidir_visible_shape 0/{visible.points}" in error  # the failing cells, named
    assert "name 'CrossAttentionLayer' is not defined" in error  # the setup cell stopped
    assert ("Likely cause: the submissions' kernel cannot import fusionlab.plots: the grading "
            "environment lacks it") in error
    assert "--skip-preflight" in error
    assert "Autograding" not in done.stdout  # nobody was graded
    assert not (out / "grades.csv").exists() and not (out / "results.json").exists()
    assert not (out / "course" / "autograded").exists()


def _leaky_master(source: Path) -> None:
    """The toy master with a solution left outside the solution markers: the released stub
    is overridden, so the untouched notebook passes."""
    path = source / toy_course.ASSIGNMENT / f"{toy_course.ASSIGNMENT}.ipynb"
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "add_solution":
            cell.source += "\nadd = lambda a, b: a + b  # left over"
    nbformat.write(nb, path)


def test_an_untouched_notebook_that_scores_refuses_and_skip_preflight_grades_anyway(tmp_path):
    source = toy_course.write_source(tmp_path / "source")
    _leaky_master(source)
    folder = tmp_path / "subs"
    toy_course.write_submissions(folder, source, names=("wrong",))
    with pytest.raises(preflight.PreflightError) as refused:
        grade(toy_course.ASSIGNMENT, folder, tmp_path / "out", source_root=source, workers=2,
              cell_timeout=20, echo=lambda *_: None)
    message = str(refused.value)
    assert "the master's solution scores 5/5 (expected full marks, 5): as documented" in message
    assert "the untouched notebook scores 5/5 (expected at most 0): wrong" in message
    assert "add_visible 2/2, add_hidden 3/3" in message
    assert "the release leaks a solution" in message
    assert not (tmp_path / "out" / "grades.csv").exists()

    report = grade(toy_course.ASSIGNMENT, folder, tmp_path / "out", source_root=source,
                   workers=2, cell_timeout=20, preflight=False, echo=lambda *_: None)
    assert report.by_student()["wrong"].score == 2.0


@pytest.mark.parametrize("text, cause", [
    ("ModuleNotFoundError: No module named 'sklearn'", "cannot import sklearn"),
    ("ModuleNotFoundError: No module named 'fusionlab'",
     f"cannot import fusionlab. Outside of PYTHONPATH, its Python ({sys.executable})"),
    ("GradingTimeout: grading took longer than 10 s", "--submission-timeout"),
    ("AssertionError: timed out (cell limit 5 s)", "--cell-timeout"),
    ("the kernel ran out of its 256 MiB memory limit", "--memory-limit"),
    ("AssertionError: the output differs", "references disagree"),
])
def test_the_likely_cause_follows_the_reasons(text, cause):
    solution = preflight.Outcome("the master's solution", 0.0, 5.0,
                                 [("add_hidden", 0.0, 5.0, text)])
    untouched = preflight.Outcome("the untouched notebook", 0.0, 5.0)
    assert cause in preflight.likely_cause(solution, untouched, True)
