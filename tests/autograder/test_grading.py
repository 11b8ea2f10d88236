"""End-to-end tests of the autograder: real nbgrader, real sqlite gradebooks, the sandbox,
temporary course directories.

Grading is the slow part, so the submissions are graded in batches shared by the tests
(module-scoped fixtures): Part 1 (the real master: the solution, the untouched notebook, the
demo examples and the hostile submissions of issue 19, each of which tampers at run time with
what used to be evidence; every one must get exactly the honest grade of what its TODO cells
implement, since the verdicts come from the clean room), the toy course of
tests/grading/toy_course.py (hangs, crashes, edited cells: fast because its kernel needs no
torch) and a small toy batch graded twice, from a folder and from an LMS zip (idempotence).
Every other Part 1 mistake goes through the self-checks and the trusted verdicts directly, in
tests/grading/test_exercises.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell

from autograder import REPO_ROOT
from autograder.authoring.examples import (
    examples,
    graded_cells,
    release,
    submission,
    write_examples,
)
from autograder.grade import grade
from autograder.hidden import references
from autograder.hidden.part1 import gated_src
from autograder.masters import master_path
from autograder.verdicts import course_secret
from tests.autograder.grading_batch import assert_scores_as_documented

sys.path.insert(0, str(Path(__file__).parents[1] / "grading"))
import toy_course  # noqa: E402

pytestmark = pytest.mark.grading

ASSIGNMENT = "part1_fusion_strategies"
MASTER = master_path(ASSIGNMENT)
GRADED = graded_cells(ASSIGNMENT)  # grade_id -> points, from the master's metadata
MAX_SCORE = 50.0
CELL_TIMEOUT = 30  # generous for the slowest graded cell on a loaded 2-core machine
# text that only the grader's own code contains: it must never reach a feedback page
GRADER_SOURCE_MARKERS = ("bidirectional_facts", "autograder.hidden", "BIDIR_VARIANTS",
                         "BEGIN HIDDEN TESTS")


def _quiet(*_args):
    pass


def _variant(name):
    return next(v for v in references.variants() if v.name == name).replace


# ----------------------------------------------------------------------------- Part 1 batch

def _append(source):
    def edit(nb):
        nb.cells.append(new_code_cell(source))
    return edit


def _after_setup(source):
    def edit(nb):
        at = next(i for i, c in enumerate(nb.cells) if "seed_everything(SEED)" in c.source)
        nb.cells.insert(at + 1, new_code_cell(source))
    return edit


# The hostile submissions of issue 19 (Part 1): each pairs a real mistake with a trick that
# used to rewrite what the kernel reported. Now the kernel reports nothing that counts.

# gate at 1.0, and a state_dict() that reports 0 (inside the TODO cell itself)
GATE_LIES_IN_STATE_DICT = gated_src(gate="nn.Parameter(torch.ones(1))") + """
    def state_dict(self, *args, **kwargs):
        state = super().state_dict(*args, **kwargs)
        state["gate"] = torch.zeros(1)
        return state
"""

# an nn.Parameter subclass that reports 0 while its data (what forward uses) is 1
LYING_GATE = """\
class LyingParameter(nn.Parameter):
    def item(self):
        return 0.0

    def tolist(self):
        return [0.0]


""" + gated_src(gate="LyingParameter(torch.ones(1))")

# an IPython hook (a later cell) that rewrites every evidence file the kernel writes: the
# attributes reported as distinct, the parameters as complete, the outputs reshaped
EVIDENCE_HOOK = """\
import glob

import numpy as np


def _rewrite_evidence(result):
    for path in glob.glob("evidence/*.npz"):
        ev = dict(np.load(path))
        ev["shared"] = np.array("[]")
        ev["params"] = np.array('["gate", "img_proj.weight"]')
        for key in [k for k in ev if k.startswith("out/shape")]:
            ev[key] = ev[key].reshape(ev[key].shape[0], -1)[:, :32]
        np.savez(path, **ev)


get_ipython().events.register("post_run_cell", _rewrite_evidence)
"""

# a thread (started right after the setup) that keeps cleaning NaN out of what is recorded
NAN_CLEANER = """\
import glob
import threading
import time

import numpy as np


def _clean():
    while True:
        for path in glob.glob("evidence/*.npz"):
            ev = dict(np.load(path))
            np.savez(path, **{k: np.nan_to_num(v) if v.dtype.kind == "f" else v
                              for k, v in ev.items()})
        time.sleep(0.05)


threading.Thread(target=_clean, daemon=True).start()
"""

# runtime tampering, all at once, right after the setup: torch.allclose and builtins.abs
# patched, fusionlab's grading modules replaced in sys.modules, an input transformer that
# rewrites every later cell
RUNTIME_TAMPERING = """\
import builtins
import sys
import types


class _AlwaysTrue:
    def __call__(self, *args, **kwargs):
        return True


torch.allclose = _AlwaysTrue()
builtins.abs = lambda x: 0.0
sys.modules["fusionlab.grading"] = types.ModuleType("fusionlab.grading")
sys.modules["autograder.hidden"] = types.ModuleType("autograder.hidden")
get_ipython().input_transformers_cleanup.append(lambda lines: ["print('PASS')\\n"])
"""

# a file that looks like evidence, written next to the notebook from the known answers
FORGED_EVIDENCE = """\
import os

import numpy as np

from fusionlab.part1 import exercises

os.makedirs("evidence", exist_ok=True)
np.savez("evidence/bidir_equivalence.npz",
         **{f"state/{k}": v for k, v in exercises.KNOWN.weights("bidirectional").items()})
"""

# name -> (replacements, edit, graded cells expected to fail): each graded as the honest grade
# of what its TODO cells implement
PART1 = {
    "correct": ({}, None, ()),
    "untouched": (None, None, tuple(GRADED)),
    "no_residual": (_variant("no_residual"), None, ("bidir_equivalence",)),
    "gate_at_one": (_variant("gate_at_one"), None, ("gated_gate_init",)),
    "gate_lies_in_state_dict": ({"GatedFusionModel": GATE_LIES_IN_STATE_DICT}, None,
                                ("gated_gate_init",)),
    "lying_parameter": ({"GatedFusionModel": LYING_GATE}, None, ("gated_gate_init",)),
    "shared_layer_hooked": (_variant("shared_layer"), _append(EVIDENCE_HOOK),
                            ("bidir_attributes", "bidir_equivalence", "bidir_gradients")),
    "concat_axis_hooked": (_variant("concat_feature_axis"), _append(EVIDENCE_HOOK),
                           ("bidir_visible_shape", "bidir_shapes", "bidir_equivalence",
                            "bidir_accuracy")),
    "gate_tensor_hooked": (_variant("gate_not_parameter"), _append(EVIDENCE_HOOK),
                           ("gated_gate_init", "gated_gate_gradient")),
    "nan_cleaned_by_a_thread": (_variant("nan_for_zero_input"), _after_setup(NAN_CLEANER),
                                ("bidir_no_nan",)),
    "runtime_tampering": (_variant("no_residual"), _after_setup(RUNTIME_TAMPERING),
                          ("bidir_equivalence",)),
    "forged_evidence": (_variant("no_residual"), _append(FORGED_EVIDENCE),
                        ("bidir_equivalence",)),
}
DEMO = ("correct", "untouched", "no_residual", "gate_at_one")


def _write(folder: Path, names) -> dict:
    masters, released = release(ASSIGNMENT)
    master, student = masters[ASSIGNMENT], released[ASSIGNMENT]
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        replace, edit, _ = PART1[name]
        nb = submission(master, student, replace=replace, edit=edit, solved=replace is not None)
        nbformat.write(nb, folder / f"{name}.ipynb")
    return {name: PART1[name][2] for name in names}


@pytest.fixture(scope="module")
def part1(tmp_path_factory):
    """Grade the Part 1 submissions in one batch; (report, expected failures, out dir)."""
    folder = tmp_path_factory.mktemp("part1-submissions")
    expected = _write(folder, PART1)
    out = tmp_path_factory.mktemp("part1-out")
    # no preflight: the batch itself grades the solution and the untouched notebook
    report = grade(ASSIGNMENT, folder, out, workers=2, cell_timeout=CELL_TIMEOUT,
                   submission_timeout=600, preflight=False, echo=_quiet)
    return report, expected, out


def _lost(cells):
    return sum(GRADED[c] for c in cells)


def test_part1_scores(part1):
    """Solution 50/50, untouched 0, each wrong or hostile submission loses exactly the points
    of the graded cells that the honest grade of what it implements fails, and only those."""
    report, expected, _ = part1
    results = report.by_student()
    assert set(results) == set(expected)
    problems = []
    for name, failing in expected.items():
        result = results[name]
        failed = tuple(t.name for t in result.tests if not t.passed)
        if sorted(failed) != sorted(failing) or result.score != MAX_SCORE - _lost(failing):
            problems.append(f"{name}: score {result.score}, failed {failed}, expected to fail "
                            f"{failing}: " + "; ".join(f"{t.name}: {t.reason}"
                                                       for t in result.tests if not t.passed))
    assert not problems, "\n".join(problems)


def test_demo_examples_keep_their_scores(part1):
    """The names and scores ``make demo`` documents, derived from the known mistakes marked as
    examples."""
    report, _, _ = part1
    scores = {s.student: s.score for s in report.students}
    declared = examples(ASSIGNMENT)
    assert sorted(declared) == sorted(["correct", "untouched", "wrong_gate_at_one",
                                       "wrong_no_residual"])
    for name, (_, loses) in declared.items():
        assert scores[name.removeprefix("wrong_")] == MAX_SCORE - _lost(loses)
    assert_scores_as_documented({name: scores[name.removeprefix("wrong_")]
                                 for name in declared})


def test_a_regrade_gives_the_same_verdicts(part1, tmp_path):
    """Grading the demo examples again into the same folder: the same seeds (the course secret
    is kept), so the same verdicts, accuracy cells included; --reseed draws a new secret."""
    report, _, out = part1
    secret = (out / "grading-secret").read_bytes()
    folder = tmp_path / "again"
    _write(folder, DEMO)
    again = grade(ASSIGNMENT, folder, out, workers=2, cell_timeout=CELL_TIMEOUT,
                  submission_timeout=600, preflight=False, echo=_quiet)
    first, second = report.by_student(), again.by_student()
    for name in DEMO:
        assert [(t.name, t.score, t.reason) for t in second[name].tests] == \
            [(t.name, t.score, t.reason) for t in first[name].tests], name
    assert (out / "grading-secret").read_bytes() == secret
    # --reseed replaces the secret: tried on a copy, so that the module's batch keeps its seeds
    copy = tmp_path / "reseeded"
    copy.mkdir()
    shutil.copy(out / "grading-secret", copy / "grading-secret")
    assert course_secret(copy, reseed=True) != secret


def test_without_the_notebook_run_the_grades_are_the_same_and_the_feedback_says_so(part1,
                                                                                   tmp_path):
    """``--no-notebook-run``: the same seeds give the same verdicts, reasons included (they
    come from the clean room); the feedback shows the notebook as submitted, with the
    student's own outputs, and says so."""
    from nbformat.v4 import new_output

    from autograder.worker import NOT_RUN_NOTE

    report, _, out = part1
    folder = tmp_path / "subs"
    _write(folder, DEMO)
    path = folder / "correct.ipynb"
    nb = nbformat.read(path, as_version=4)
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    first_code.outputs = [new_output("stream", name="stdout", text="MY-OWN-RUN-SAID-THIS\n")]
    # a graded cell's submitted output never reaches the page: its verdict replaces it
    graded = next(c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade"))
    graded.outputs = [new_output("stream", name="stdout", text="FORGED: ALL TESTS PASSED\n")]
    nbformat.write(nb, path)
    quick_out = tmp_path / "out"
    quick_out.mkdir()
    shutil.copy(out / "grading-secret", quick_out / "grading-secret")  # the same seeds
    quick = grade(ASSIGNMENT, folder, quick_out, workers=2, cell_timeout=CELL_TIMEOUT,
                  submission_timeout=600, preflight=False, notebook_run=False, echo=_quiet)
    first, second = report.by_student(), quick.by_student()
    for name in DEMO:
        assert [(t.name, t.score, t.reason) for t in second[name].tests] == \
            [(t.name, t.score, t.reason) for t in first[name].tests], name
        assert second[name].flags == first[name].flags, name
    page = (quick_out / "feedback" / "correct" / f"{ASSIGNMENT}.html").read_text()
    assert "MY-OWN-RUN-SAID-THIS" in page  # not cleared, not run again
    assert "FORGED: ALL TESTS PASSED" not in page
    assert "did not run it again" in page and "did not run it again" in NOT_RUN_NOTE
    ran = (out / "feedback" / "correct" / f"{ASSIGNMENT}.html").read_text()
    assert "did not run it again" not in ran


def test_part1_grades_csv(part1):
    report, expected, out = part1
    lines = (out / "grades.csv").read_text().splitlines()
    assert lines[0].startswith("assignment,duedate,timestamp,student_id")
    rows = {line.split(",")[3]: line.split(",") for line in lines[1:]}
    for student, result in report.by_student().items():
        if student in rows:  # the re-grade test writes a smaller batch into the same folder
            assert float(rows[student][-2]) == result.score
            assert float(rows[student][-1]) == MAX_SCORE
    assert set(rows) >= set(DEMO)


def test_every_failed_test_has_a_reason(part1):
    report, _, _ = part1
    for result in report.students:
        for test in result.tests:
            assert test.passed or test.reason, (result.student, test.name)


def _reason(report, student, cell):
    return next(t.reason for t in report.by_student()[student].tests if t.name == cell)


def test_trusted_verdicts_name_the_cause(part1):
    report, _, _ = part1
    assert "residual connection is missing" in _reason(report, "no_residual", "bidir_equivalence")
    for name in ("gate_at_one", "gate_lies_in_state_dict", "lying_parameter"):
        assert "sigmoid(gate) = 0.731" in _reason(report, name, "gated_gate_init"), name
    assert "the same layer" in _reason(report, "shared_layer_hooked", "bidir_attributes")
    assert "all-zero inputs" in _reason(report, "nan_cleaned_by_a_thread", "bidir_no_nan")
    assert "not an nn.Parameter" in _reason(report, "gate_tensor_hooked", "gated_gate_init")
    assert "concatenate along the token axis" in _reason(report, "concat_axis_hooked",
                                                         "bidir_shapes")
    assert "residual connection is missing" in _reason(report, "runtime_tampering",
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
    assert all("NotImplementedError" in t.reason or "not implemented" in t.reason
               for t in result.tests)


def test_verdicts_replace_the_graded_cells_outputs(part1):
    """The autograded notebook shows the trusted verdict in every graded cell, and the
    gradebook holds its score (grades.csv agrees, test_part1_grades_csv)."""
    _, _, out = part1
    nb_path = out / "course" / "autograded" / "gate_at_one" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    graded = {c.metadata.nbgrader.grade_id: c for c in nb.cells
              if c.metadata.get("nbgrader", {}).get("grade")}
    assert set(graded) == set(GRADED)
    for grade_id, cell in graded.items():
        (output,) = cell.outputs
        if grade_id == "gated_gate_init":
            assert output.output_type == "error" and output.ename == "AssertionError"
        else:
            assert output.output_type == "stream" and output.text.startswith("PASS: ")


def test_scan_flags_the_tampering_and_not_the_honest(part1):
    report, _, _ = part1
    by = report.by_student()
    assert any(flag.startswith("scan:") for flag in by["runtime_tampering"].flags)
    assert by["correct"].flags == []
    assert by["untouched"].flags == []


def test_feedback_has_no_grader_source(part1):
    report, expected, out = part1
    pages = sorted((out / "feedback").glob("*/*.html"))
    assert {p.parent.name for p in pages} >= set(DEMO)
    for page in pages:
        text = page.read_text()
        leaks = [marker for marker in GRADER_SOURCE_MARKERS if marker in text]
        assert not leaks, f"{page} contains {leaks}"
    wrong = (out / "feedback" / "gate_at_one" / f"{ASSIGNMENT}.html").read_text()
    assert "0.731" in wrong  # the verdict of the failed hidden test is kept
    assert "PASS: " in wrong


def test_results_json(part1):
    report, _, out = part1
    data = json.loads((out / "results.json").read_text())
    assert data["max_score"] == MAX_SCORE
    gate = next(s for s in data["students"] if s["student"] == "gate_at_one")
    failed = [t for t in gate["tests"] if t["score"] < t["max_score"]]
    assert [t["name"] for t in failed] == ["gated_gate_init"] and "0.731" in failed[0]["reason"]


# ----------------------------------------------------------------------------- fail closed

def _copy_master(tmp_path: Path, name: str, edit=None) -> Path:
    root = tmp_path / "source"
    (root / name).mkdir(parents=True)
    nb = nbformat.read(MASTER, as_version=4)
    if edit:
        edit(nb)
    nbformat.write(nb, root / name / f"{name}.ipynb")
    return root


def test_a_graded_cell_without_a_trusted_verdict_refuses_the_whole_run(tmp_path):
    """A master with a graded cell that no exercise declares: grading refuses before anything
    is graded, and names the cell (nbgrader's own, in-kernel scores are never kept)."""
    def add_cell(nb):
        nb.cells.append(new_code_cell("assert True", metadata={"nbgrader": {
            "grade": True, "grade_id": "mystery_cell", "locked": True, "points": 5,
            "schema_version": 3, "solution": False, "task": False}}))

    source = _copy_master(tmp_path, "part1_mystery", add_cell)
    folder = tmp_path / "subs"
    folder.mkdir()
    shutil.copy(REPO_ROOT / "notebooks" / f"{ASSIGNMENT}.ipynb", folder / "alice.ipynb")
    completed = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", "part1_mystery", str(folder), "--out",
         str(tmp_path / "out"), "--source", str(source), "--no-sandbox"],
        cwd=REPO_ROOT, capture_output=True, text=True)
    assert completed.returncode == 2, completed.stderr
    assert "mystery_cell" in completed.stderr and "no trusted verdict" in completed.stderr
    assert not (tmp_path / "out" / "grades.csv").exists()


def test_a_copied_master_is_graded_by_its_exercises_not_by_the_kernel(tmp_path):
    """Part 1's master copied under another name: its cells are still declared, so the
    untouched notebook gets 0 (it used to keep nbgrader's in-kernel scores: 42/50)."""
    source = _copy_master(tmp_path, "part1_copy")
    folder = tmp_path / "subs"
    folder.mkdir()
    masters, released = release("part1_copy", source)
    nbformat.write(submission(masters["part1_copy"], released["part1_copy"], solved=False),
                   folder / "alice.ipynb")
    report = grade("part1_copy", folder, tmp_path / "out", source_root=source, workers=1,
                   cell_timeout=CELL_TIMEOUT, use_sandbox=False, preflight=False, echo=_quiet)
    assert report.by_student()["alice"].score == 0


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

    def why(name):  # the notebook's own run failing is a flag: the clean room decides points
        return " ".join([by[name].reason, *by[name].flags])

    assert "kernel died" in why("crash")
    assert "ignored the interrupt" in why("unstoppable") or "graded again alone" in why(
        "unstoppable")
    assert "invalid JSON" in by["garbage"].reason


def test_submission_wall_clock_limit(tmp_path):
    """A submission that outlives --submission-timeout is stopped with that reason, and the
    others are still graded."""
    source = toy_course.write_source(tmp_path / "source")
    folder = tmp_path / "subs"
    toy_course.write_submissions(folder, source, names=("correct", "hang"))
    report = grade(toy_course.ASSIGNMENT, folder, tmp_path / "out", source_root=source,
                   workers=1, cell_timeout=30, submission_timeout=20, preflight=False,
                   echo=_quiet)
    by = report.by_student()
    assert by["correct"].score == toy_course.MAX_SCORE
    assert by["hang"].score == 0 and "longer than 20 s" in by["hang"].reason


def test_rerun_and_zip_give_the_same_grades(tmp_path):
    """Grading again into the same folder, this time from an LMS-style zip of the same files
    (plus a duplicate, which is skipped), gives the same grades.csv: re-running is
    idempotent."""
    source = toy_course.write_source(tmp_path / "source")
    folder = tmp_path / "subs"
    toy_course.write_submissions(folder, source, names=("correct", "wrong", "garbage"))
    out = tmp_path / "out"
    grade(toy_course.ASSIGNMENT, folder, out, source_root=source, workers=2, cell_timeout=10,
          preflight=False, echo=_quiet)
    first = (out / "grades.csv").read_text()
    archive = tmp_path / "lms-export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.glob("*.ipynb")):
            zf.write(path, f"{path.stem}/{toy_course.ASSIGNMENT}.ipynb")
        zf.writestr("zz/wrong.ipynb", "a later duplicate of wrong: skipped, not an error")
    grade(toy_course.ASSIGNMENT, archive, out, source_root=source, workers=2, cell_timeout=10,
          preflight=False, echo=_quiet)
    assert (out / "grades.csv").read_text() == first
    assert "wrong" in first and "garbage" in first


# ----------------------------------------------------------------------------- command line

def test_examples_command_writes_the_examples(tmp_path):
    paths = write_examples(ASSIGNMENT, tmp_path)
    assert sorted(p.stem for p in paths) == sorted(examples(ASSIGNMENT))
    for path in paths:
        nbformat.validate(nbformat.read(path, as_version=4))


def test_demo_refuses_an_unknown_assignment_before_grading_anything(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "autograder", "demo", "part1_fusion_strategies", "no_such_part",
         "--out", str(tmp_path / "out")],
        cwd=REPO_ROOT, capture_output=True, text=True,
    )
    assert completed.returncode == 2, completed.stderr
    assert "no assignment named no_such_part" in completed.stderr
    assert not (tmp_path / "out").exists()


def test_cli_reports_a_missing_assignment(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", "no_such_assignment", str(tmp_path),
         "--out", str(tmp_path / "out")],
        cwd=REPO_ROOT, capture_output=True, text=True,
    )
    assert completed.returncode == 2
    assert "no instructor notebook" in completed.stderr
