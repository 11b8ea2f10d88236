"""End-to-end tests of the autograder: real nbgrader, real sqlite gradebooks, temporary course
directories.

Grading is the slow part, so the submissions are graded in three batches shared by the tests
(module-scoped fixtures): Part 1 (the real master: solution, untouched, every wrong variant and
the tampering and hostile cases), the toy course of tests/grading/toy_course.py (hostile
submissions, fast because its kernel needs no torch) and a small toy batch graded twice, from a
folder and from an LMS zip (idempotence).
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell

from autograder.course import REPO_ROOT
from autograder.examples import (
    BIDIR_CELLS,
    GATED_CELLS,
    PART1_VARIANTS,
    release,
    submission,
    write_examples,
)
from autograder.grade import grade

sys.path.insert(0, str(Path(__file__).parent / "grading"))
import toy_course  # noqa: E402

pytestmark = pytest.mark.grading

ASSIGNMENT = "part1_fusion_strategies"
MASTER = REPO_ROOT / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
MAX_SCORE = 50.0
CELL_TIMEOUT = 20  # generous for the slowest graded cell on a loaded 2-core machine
# text that only the hidden test cells or the grader's code contain (a submission may mention
# `_grader` itself: fake_grader does)
HIDDEN_SOURCE_MARKERS = ("BEGIN HIDDEN TESTS", "import part1 as _grader", "_grader.bidir_",
                         "_grader.gated_", "checks_part1", "_trusted_run", "find_tampering")


def _quiet(*_args):
    pass


# ----------------------------------------------------------------------------- Part 1 batch

def _cell_index(nb, grade_id):
    for i, cell in enumerate(nb.cells):
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            return i
    raise KeyError(grade_id)


def _setup_index(nb):
    return next(i for i, c in enumerate(nb.cells) if "seed_everything(SEED)" in c.source)


def _insert_after(index_of, source):
    def edit(nb):
        nb.cells.insert(index_of(nb) + 1, new_code_cell(source))
    return edit


def _edit_cell(grade_id, source):
    def edit(nb):
        nb.cells[_cell_index(nb, grade_id)].source = source
    return edit


def _delete_cells(*grade_ids):
    def edit(nb):
        nb.cells = [c for c in nb.cells
                    if c.metadata.get("nbgrader", {}).get("grade_id") not in grade_ids]
    return edit


NO_RESIDUAL = PART1_VARIANTS["no_residual"][0]
FAKE_GRADER = """\
import autograder.hidden

class _AlwaysPasses:
    def __getattr__(self, name):
        return lambda cls: None

_grader = _AlwaysPasses()
autograder.hidden.part1 = _grader  # refused: the suite is read-only
"""
VISIBLE_ONLY = ("bidir_visible_shape", "gated_visible_shape")

# name -> (replacements, edit, graded cells expected to fail or None for "all hidden cells")
HOSTILE = {
    # tampering: no credit for what was tampered with
    "edited_test": (NO_RESIDUAL, _edit_cell("bidir_equivalence", "pass  # looks fine to me"),
                    ("bidir_equivalence",)),
    "deleted_tests": (NO_RESIDUAL, _delete_cells("bidir_equivalence", "bidir_visible_shape"),
                      ("bidir_equivalence",)),
    "patched_check": (NO_RESIDUAL, _insert_after(_setup_index, (
        "check.reference_bidirectional = lambda module, img, txt: module(img, txt)")), None),
    "patched_torch": ({}, _insert_after(_setup_index, (
        "torch.allclose = lambda *args, **kwargs: True")), None),
    "fake_grader": (NO_RESIDUAL, _insert_after(_setup_index, FAKE_GRADER),
                    ("bidir_equivalence",)),
    # hostile: each gets a score and a reason, the batch goes on
    "hang_cell": ({}, _insert_after(lambda nb: _cell_index(nb, "gated_accuracy"), (
        "import time\nwhile True:\n    time.sleep(0.5)")), ()),
    "sys_exit": ({}, _insert_after(lambda nb: _cell_index(nb, "gated_accuracy"), (
        "import sys\nsys.exit('bye')")), ()),
    "kernel_crash": ({}, _insert_after(lambda nb: _cell_index(nb, "bidir_accuracy"), (
        "import os\nos._exit(1)")), BIDIR_CELLS + GATED_CELLS),
}


@pytest.fixture(scope="module")
def part1(tmp_path_factory):
    """Grade every Part 1 submission in one batch; (report, expected failures, out dir)."""
    if not MASTER.exists():
        pytest.skip("the Part 1 master is not there yet")
    masters, released = release(ASSIGNMENT)
    master, student = masters[ASSIGNMENT], released[ASSIGNMENT]
    folder = tmp_path_factory.mktemp("part1-submissions")
    expected = {"correct": (), "correct_again": (), "untouched": BIDIR_CELLS + GATED_CELLS}
    notebooks = {
        "correct": submission(master, student),
        "correct_again": submission(master, student),
        "untouched": submission(master, student, solved=False),
    }
    for name, (replace, failing) in PART1_VARIANTS.items():
        notebooks[name] = submission(master, student, replace=replace)
        expected[name] = failing
    hidden = tuple(c for c in BIDIR_CELLS + GATED_CELLS if c not in VISIBLE_ONLY)
    for name, (replace, edit, failing) in HOSTILE.items():
        notebooks[name] = submission(master, student, replace=replace, edit=edit)
        expected[name] = hidden if failing is None else failing
    for name, nb in notebooks.items():
        nbformat.write(nb, folder / f"{name}.ipynb")
    (folder / "not_json.ipynb").write_text("{ this is not a notebook")
    expected["not_json"] = BIDIR_CELLS + GATED_CELLS
    out = tmp_path_factory.mktemp("part1-out")
    report = grade(ASSIGNMENT, folder, out, workers=2, cell_timeout=CELL_TIMEOUT,
                   submission_timeout=300, echo=_quiet)
    return report, expected, out


def _points(cells):
    points = {}
    nb = nbformat.read(MASTER, as_version=4)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade"):
            points[meta["grade_id"]] = float(meta["points"])
    return sum(points[c] for c in cells), points


def test_rubric_totals_50():
    if not MASTER.exists():
        pytest.skip("the Part 1 master is not there yet")
    total, points = _points(())
    assert sum(points.values()) == MAX_SCORE
    assert set(points) == set(BIDIR_CELLS + GATED_CELLS)


def test_part1_scores(part1):
    """Solution 50/50, untouched 0, each wrong, tampered or hostile submission loses exactly
    the points of the graded cells it is expected to fail, and only those."""
    report, expected, _ = part1
    results = report.by_student()
    assert set(results) == set(expected)
    problems = []
    for name, failing in expected.items():
        result = results[name]
        failed = tuple(t.name for t in result.tests if not t.passed)
        lost, _ = _points(failing)
        if sorted(failed) != sorted(failing) or result.score != MAX_SCORE - lost:
            problems.append(f"{name}: score {result.score}, failed {failed}, expected to fail "
                            f"{failing} ({result.reason})")
    assert not problems, "\n".join(problems)


def test_part1_grades_csv(part1):
    report, expected, out = part1
    lines = (out / "grades.csv").read_text().splitlines()
    assert lines[0].startswith("assignment,duedate,timestamp,student_id")
    rows = {line.split(",")[3]: line.split(",") for line in lines[1:]}
    assert set(rows) == set(expected)
    for student, result in report.by_student().items():
        assert float(rows[student][-2]) == result.score
        assert float(rows[student][-1]) == MAX_SCORE


def test_every_failed_test_has_a_reason(part1):
    report, _, _ = part1
    for result in report.students:
        for test in result.tests:
            assert test.passed or test.reason, (result.student, test.name)


def test_wrong_submissions_get_specific_reasons(part1):
    report, _, _ = part1
    by = report.by_student()

    def reason(student, cell):
        return next(t.reason for t in by[student].tests if t.name == cell)

    assert "residual" in reason("no_residual", "bidir_equivalence")
    assert "LayerNorm" in reason("no_norm", "bidir_equivalence")
    assert "swapped" in reason("swapped_directions", "bidir_equivalence")
    assert "0.731" in reason("gate_at_one", "gated_gate_init")
    assert "nn.Parameter" in reason("gate_not_parameter", "gated_gate_init")
    assert "accuracy" in reason("linear_head", "gated_accuracy")
    assert "(2, 32)" in reason("no_pooling", "bidir_visible_shape")
    for cell in ("bidir_attributes", "gated_accuracy"):
        assert "tampering detected" in reason("patched_torch", cell)
        assert "torch.allclose" in reason("patched_torch", cell)
    assert "fusionlab.check.reference_bidirectional" in reason("patched_check",
                                                               "bidir_equivalence")


def test_untouched_notebook_raises_only_in_graded_cells(part1):
    report, _, out = part1
    nb_path = out / "course" / "autograded" / "untouched" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    errors = [
        (i, o.ename) for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
        for o in cell.outputs if o.output_type == "error"
        and not cell.metadata.get("nbgrader", {}).get("grade")
    ]
    assert errors == []
    result = report.by_student()["untouched"]
    assert result.score == 0
    assert all("not implemented" in t.reason or t.reason == "NotImplementedError"
               for t in result.tests)


def test_hostile_submissions_are_reported(part1):
    report, _, _ = part1
    by = report.by_student()
    assert by["kernel_crash"].status == "not graded"
    assert "kernel died" in by["kernel_crash"].reason
    assert by["not_json"].status == "not graded"
    assert "not a notebook" in by["not_json"].reason
    assert any("timed out" in flag for flag in by["hang_cell"].flags)
    assert any("bidir_equivalence was edited" in flag for flag in by["edited_test"].flags)
    assert any("bidir_equivalence was deleted" in flag for flag in by["deleted_tests"].flags)
    for name in ("patched_check", "patched_torch"):
        assert any(flag.startswith("scan:") and "modifies" in flag for flag in by[name].flags)
    assert any("imports the grader" in flag for flag in by["fake_grader"].flags)
    assert by["correct"].flags == []
    assert by["untouched"].flags == []


def test_same_submission_same_score(part1):
    report, _, _ = part1
    by = report.by_student()
    assert [(t.name, t.score) for t in by["correct"].tests] == \
        [(t.name, t.score) for t in by["correct_again"].tests]


def test_feedback_has_no_hidden_test_source(part1):
    report, expected, out = part1
    pages = sorted((out / "feedback").glob("*/*.html"))
    assert {p.parent.name for p in pages} == set(expected)
    for page in pages:
        text = page.read_text()
        leaks = [marker for marker in HIDDEN_SOURCE_MARKERS if marker in text]
        assert not leaks, f"{page} contains {leaks}"
    wrong = (out / "feedback" / "gate_at_one" / f"{ASSIGNMENT}.html").read_text()
    assert "0.731" in wrong  # the verdict of the failed hidden test is kept


def test_results_json(part1):
    report, _, out = part1
    data = json.loads((out / "results.json").read_text())
    assert data["max_score"] == MAX_SCORE
    assert {s["student"] for s in data["students"]} == {s.student for s in report.students}


# ----------------------------------------------------------------------------- toy batches

@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    source = toy_course.write_source(tmp_path_factory.mktemp("toy-source"))
    folder = tmp_path_factory.mktemp("toy-submissions")
    expected = toy_course.write_submissions(folder, source)
    out = tmp_path_factory.mktemp("toy-out")
    report = grade(toy_course.ASSIGNMENT, folder, out, source_root=source, workers=2,
                   cell_timeout=3, submission_timeout=60, echo=_quiet)
    return report, expected


def test_toy_hostile_batch(toy):
    """Hangs, crashes, exits, edited/deleted/stripped test cells and files that are not
    notebooks: every one gets its expected score and a reason, none stops the batch."""
    report, expected = toy
    scores = {s.student: s.score for s in report.students}
    assert scores == expected
    for result in report.students:
        if result.score < toy_course.MAX_SCORE:
            assert result.reason or all(t.reason for t in result.tests if not t.passed)
    by = report.by_student()
    assert "kernel died" in by["crash"].reason
    assert "ignored the interrupt" in by["unstoppable"].reason
    assert "invalid JSON" in by["garbage"].reason


def test_submission_wall_clock_limit(tmp_path):
    """A submission that outlives --submission-timeout is stopped with that reason, and the
    others are still graded."""
    source = toy_course.write_source(tmp_path / "source")
    folder = tmp_path / "subs"
    toy_course.write_submissions(folder, source, names=("correct", "hang"))
    report = grade(toy_course.ASSIGNMENT, folder, tmp_path / "out", source_root=source,
                   workers=1, cell_timeout=30, submission_timeout=8, echo=_quiet)
    by = report.by_student()
    assert by["correct"].score == toy_course.MAX_SCORE
    assert by["hang"].score == 0 and "longer than 8 s" in by["hang"].reason


def test_rerun_and_zip_give_the_same_grades(tmp_path):
    """Grading again into the same folder, this time from an LMS-style zip of the same files
    (plus a duplicate, which is skipped), gives the same grades.csv: re-running is
    idempotent."""
    source = toy_course.write_source(tmp_path / "source")
    folder = tmp_path / "subs"
    toy_course.write_submissions(folder, source, names=("correct", "wrong", "garbage"))
    out = tmp_path / "out"
    grade(toy_course.ASSIGNMENT, folder, out, source_root=source, workers=2, cell_timeout=10,
          echo=_quiet)
    first = (out / "grades.csv").read_text()
    archive = tmp_path / "lms-export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.glob("*.ipynb")):
            zf.write(path, f"{path.stem}/{toy_course.ASSIGNMENT}.ipynb")
        zf.writestr("zz/wrong.ipynb", "a later duplicate of wrong: skipped, not an error")
    grade(toy_course.ASSIGNMENT, archive, out, source_root=source, workers=2, cell_timeout=10,
          echo=_quiet)
    assert (out / "grades.csv").read_text() == first
    assert "wrong" in first and "garbage" in first


# ----------------------------------------------------------------------------- command line

def test_examples_command_writes_the_examples(tmp_path):
    if not MASTER.exists():
        pytest.skip("the Part 1 master is not there yet")
    paths = write_examples(ASSIGNMENT, tmp_path)
    assert sorted(p.stem for p in paths) == sorted(
        ["correct", "untouched", "wrong_gate_at_one", "wrong_no_residual"])
    for path in paths:
        nbformat.validate(nbformat.read(path, as_version=4))


def test_cli_reports_a_missing_assignment(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", "no_such_assignment", str(tmp_path),
         "--out", str(tmp_path / "out")],
        cwd=REPO_ROOT, capture_output=True, text=True,
    )
    assert completed.returncode == 2
    assert "no instructor notebook" in completed.stderr
