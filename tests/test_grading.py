"""End-to-end tests of the autograder: real nbgrader, real sqlite gradebooks, temporary course
directories.

Grading is the slow part, so the submissions are graded in three batches shared by the tests
(module-scoped fixtures): Part 1 (the real master: what needs real nbgrader and the trusted
verdicts end to end, i.e. the solution, the untouched notebook, the two wrong examples of
``make demo`` and the hostile submissions that tamper at run time or forge their evidence), the
toy course of tests/grading/toy_course.py (hangs, crashes, edited cells: fast because its
kernel needs no torch) and a small toy batch graded twice, from a folder and from an LMS zip
(idempotence). Every other Part 1 mistake is graded through the verdict functions directly in
tests/test_check.py.
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

from autograder import REPO_ROOT
from autograder.examples import PART1_VARIANTS, graded_cells, release, submission, write_examples
from autograder.grade import grade

sys.path.insert(0, str(Path(__file__).parent / "grading"))
import toy_course  # noqa: E402

pytestmark = pytest.mark.grading

ASSIGNMENT = "part1_fusion_strategies"
MASTER = REPO_ROOT / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
GRADED = graded_cells(ASSIGNMENT)  # grade_id -> points, from the master's metadata
MAX_SCORE = 50.0
CELL_TIMEOUT = 30  # generous for the slowest graded cell on a loaded 2-core machine
# text that only the hidden test cells or the grader's code contain
HIDDEN_SOURCE_MARKERS = ("BEGIN HIDDEN TESTS", 'evidence.bidirectional("bidir_attributes"',
                         'evidence.gated("gated_gate_init"', "reference_part1",
                         "bidirectional_facts")


def _quiet(*_args):
    pass


# ----------------------------------------------------------------------------- Part 1 batch

def _setup_index(nb):
    return next(i for i, c in enumerate(nb.cells) if "seed_everything(SEED)" in c.source)


def _insert_after_setup(source):
    def edit(nb):
        nb.cells.insert(_setup_index(nb) + 1, new_code_cell(source))
    return edit


def _append(source):
    def edit(nb):
        nb.cells.append(new_code_cell(source))
    return edit


NO_RESIDUAL = PART1_VARIANTS["no_residual"][0]
GATE_AT_ONE = PART1_VARIANTS["gate_at_one"][0]

# Runtime tampering, all at once: torch.allclose and builtins.abs (for floats) patched with
# classes defined in the notebook, fakes of fusionlab.evidence and autograder.hidden in
# sys.modules, and an IPython input transformer that rewrites the equivalence test cell to call
# the fake, which forges that cell's evidence (the others go to the real exporter).
RUNTIME_TAMPERING = """\
import builtins
import sys
import types

import fusionlab.evidence as _real


class _AlwaysTrue:
    def __call__(self, *args, **kwargs):
        return True


class _FloatsAreClose:  # abs(alpha - 0.5) <= 1e-6 always holds
    def __init__(self, real):
        self.real = real

    def __call__(self, x):
        return 0.0 if isinstance(x, float) else self.real(x)


torch.allclose = _AlwaysTrue()
builtins.abs = _FloatsAreClose(builtins.abs)

_fake = types.ModuleType("fusionlab.evidence")
_fake.__dict__.update(_real.__dict__)


def _forging(grade_id, cls, train=False):
    if grade_id != "bidir_equivalence":
        return _real.bidirectional(grade_id, cls, train)
    ev = _real.collect_bidirectional(cls, _real.read_request()["seed"])
    ev["out/eq"] = ev["out/eq"] * 0.9 + 0.1
    _real.save(ev, "evidence/bidir_equivalence.npz")
    print("PASS")


_fake.bidirectional = _forging
sys.modules["fusionlab.evidence"] = _fake
fusionlab.evidence = _fake
sys.modules["autograder.hidden"] = types.ModuleType("autograder.hidden")


def _rewrite_tests(lines):
    if any('"bidir_equivalence"' in line for line in lines):
        return ["_forging('bidir_equivalence', BidirectionalCrossAttention)\\n"]
    return lines


get_ipython().input_transformers_cleanup.append(_rewrite_tests)
"""

# An nn.Parameter subclass that reports 0 while its data (what forward uses) is 1.
LYING_GATE = """\
class LyingParameter(nn.Parameter):
    def item(self):
        return 0.0

    def tolist(self):
        return [0.0]

    def __repr__(self):
        return "Parameter containing:\\ntensor([0.], requires_grad=True)"


class GatedFusionModel(nn.Module):
    def __init__(self, img_dim=32, txt_dim=16, embed_dim=32, num_classes=3):
        super().__init__()
        self.img_proj = nn.Linear(img_dim, embed_dim)
        self.txt_proj = nn.Linear(txt_dim, embed_dim)
        self.gate = LyingParameter(torch.ones(1))
        self.classifier = nn.Sequential(
            nn.Linear(embed_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, num_classes))

    def forward(self, img_feat, txt_feat):
        alpha = torch.sigmoid(self.gate)
        z = alpha * self.img_proj(img_feat) + (1 - alpha) * self.txt_proj(txt_feat)
        return self.classifier(z)
"""

# CrossAttentionLayer subclasses whose forward does nothing: the layer is a residual + norm.
FAKE_TYPES = """\
class QuietAttention(CrossAttentionLayer):
    def forward(self, query, kv, key_padding_mask=None):
        return torch.zeros_like(query)


class BidirectionalCrossAttention(nn.Module):
    def __init__(self, dim, num_heads=4):
        super().__init__()
        self.txt_to_img = QuietAttention(dim, num_heads)
        self.img_to_txt = QuietAttention(dim, num_heads)
        self.norm_txt = nn.LayerNorm(dim)
        self.norm_img = nn.LayerNorm(dim)

    def forward(self, img_embed, txt_embed):
        txt_upd = self.norm_txt(txt_embed + self.txt_to_img(txt_embed, img_embed))
        img_upd = self.norm_img(img_embed + self.img_to_txt(img_embed, txt_embed))
        return torch.cat([txt_upd, img_upd], dim=1).mean(dim=1)
"""

# Evidence files rewritten after the graded cells, from the known answers shipped in fusionlab
# (the reference's outputs for the self-checks' weights and inputs).
FORGED_EVIDENCE = """\
import numpy as np

from fusionlab import check
from fusionlab import evidence as _evidence

_answers = check.known_answers()
_ev = _evidence.load("evidence/bidir_equivalence.npz")
for _key, _value in _answers.items():
    if _key.startswith("bidir/weights/"):
        _ev["state/" + _key[len("bidir/weights/"):]] = _value
_ev["out/eq"] = _answers["bidir/expected/out/eq"]
_evidence.save(_ev, "evidence/bidir_equivalence.npz")
"""

# name -> (replacements, edit, graded cells expected to fail): each graded as the honest grade
# of what it implements
PART1 = {
    "correct": ({}, None, ()),
    "untouched": (None, None, tuple(GRADED)),
    "no_residual": (NO_RESIDUAL, None, ("bidir_equivalence",)),
    "gate_at_one": (GATE_AT_ONE, None, ("gated_gate_init",)),
    "runtime_tampering": (NO_RESIDUAL, _insert_after_setup(RUNTIME_TAMPERING),
                          ("bidir_equivalence",)),
    "lying_parameter": ({"GatedFusionModel": LYING_GATE}, None, ("gated_gate_init",)),
    "fake_types": ({"BidirectionalCrossAttention": FAKE_TYPES}, None,
                   ("bidir_attributes", "bidir_equivalence", "bidir_gradients",
                    "bidir_accuracy")),
    "forged_evidence": (NO_RESIDUAL, _append(FORGED_EVIDENCE), ("bidir_equivalence",)),
}


@pytest.fixture(scope="module")
def part1(tmp_path_factory):
    """Grade the Part 1 submissions in one batch; (report, expected failures, out dir)."""
    masters, released = release(ASSIGNMENT)
    master, student = masters[ASSIGNMENT], released[ASSIGNMENT]
    folder = tmp_path_factory.mktemp("part1-submissions")
    expected = {}
    for name, (replace, edit, failing) in PART1.items():
        nb = submission(master, student, replace=replace, edit=edit, solved=replace is not None)
        nbformat.write(nb, folder / f"{name}.ipynb")
        expected[name] = failing
    out = tmp_path_factory.mktemp("part1-out")
    report = grade(ASSIGNMENT, folder, out, workers=2, cell_timeout=CELL_TIMEOUT,
                   submission_timeout=600, echo=_quiet)
    return report, expected, out


def _lost(cells):
    return sum(GRADED[c] for c in cells)


def test_rubric_totals_50():
    assert sum(GRADED.values()) == MAX_SCORE


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
    report, _, _ = part1
    scores = {s.student: s.score for s in report.students}
    assert [scores[n] for n in ("correct", "untouched", "gate_at_one", "no_residual")] == \
        [50, 0, 45, 42]


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


def _reason(report, student, cell):
    return next(t.reason for t in report.by_student()[student].tests if t.name == cell)


def test_trusted_verdicts_name_the_cause(part1):
    report, _, _ = part1
    assert "residual connection is missing" in _reason(report, "no_residual", "bidir_equivalence")
    assert "sigmoid(gate) = 0.731" in _reason(report, "gate_at_one", "gated_gate_init")
    assert "sigmoid(gate) = 0.731" in _reason(report, "lying_parameter", "gated_gate_init")
    assert "does not compute what CrossAttentionLayer" in _reason(report, "fake_types",
                                                                  "bidir_attributes")
    assert "txt_to_img" in _reason(report, "fake_types", "bidir_gradients")
    # the forged state does not produce the outputs its own submodules recorded
    assert "cannot compare with the reference" in _reason(report, "forged_evidence",
                                                          "bidir_equivalence")
    assert "differs from the reference" in _reason(report, "runtime_tampering",
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
    assert "PASS: " in wrong


def test_results_json(part1):
    report, _, out = part1
    data = json.loads((out / "results.json").read_text())
    assert data["max_score"] == MAX_SCORE
    assert {s["student"] for s in data["students"]} == {s.student for s in report.students}
    gate = next(s for s in data["students"] if s["student"] == "gate_at_one")
    failed = [t for t in gate["tests"] if t["score"] < t["max_score"]]
    assert [t["name"] for t in failed] == ["gated_gate_init"] and "0.731" in failed[0]["reason"]


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
    paths = write_examples(ASSIGNMENT, tmp_path)
    assert sorted(p.stem for p in paths) == sorted(
        ["correct", "untouched", "wrong_gate_at_one", "wrong_no_residual"])
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
