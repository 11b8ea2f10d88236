"""Fast tests of the autograder's parts (no nbgrader run): course configuration, static scan,
the trusted verdicts' registry and evidence handling, and the feedback preprocessor. The
end-to-end tests are in test_grading.py."""

from __future__ import annotations

import sys
import textwrap

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from autograder import nbgrader_config, scan
from autograder.course import REPO_ROOT, grading_env, student_id_from
from autograder.feedback import HideHiddenTestTracebacks
from autograder.report import (
    NBGRADER_FAILED,
    RUN_FAILED,
    StudentResult,
    TestResult,
    _failure_feedback,
)

# ----------------------------------------------------------------------------- configuration

def test_config_as_python_and_as_config_file(tmp_path):
    from traitlets.config.loader import PyFileConfigLoader

    as_python = nbgrader_config.nbgrader_config(root=tmp_path, cell_timeout=7)
    loader = PyFileConfigLoader("nbgrader_config.py", path=str(REPO_ROOT / "autograder"))
    as_file = loader.load_config()
    for config, timeout in ((as_python, 7), (as_file, nbgrader_config.CELL_TIMEOUT_S)):
        assert config.OverwriteCells.add_missing_cells is True
        assert config.Execute.timeout == timeout
        assert config.CourseDirectory.course_id == nbgrader_config.COURSE_ID
        preprocessors = config.GenerateFeedback.preprocessors
        assert preprocessors[-1] == "nbgrader.preprocessors.ClearHiddenTests"
        assert preprocessors.index("autograder.feedback.HideHiddenTestTracebacks") < len(
            preprocessors) - 1
    assert as_python.CourseDirectory.root == str(tmp_path)


@pytest.mark.parametrize("text, ignored", [
    ("/x.py:3: UserWarning: something\n  warnings.warn(\n", True),
    ("IProgress not found. Please update jupyter and ipywidgets.", True),
    (" 40%|████      | 4/10 [00:01<00:02, 3.1it/s]", True),
    ("Traceback (most recent call last):\n  ValueError: bad", False),
    ("my debug print to stderr", False),
])
def test_ignored_stderr_pattern(text, ignored):
    import re

    assert bool(re.search(nbgrader_config.IGNORED_STDERR, text)) is ignored


def test_grading_env_puts_the_repository_first():
    env = grading_env({"PYTHONPATH": "/elsewhere", "PATH": "/usr/bin"})
    assert env["PYTHONPATH"].split(":")[:2] == [str(REPO_ROOT), "/elsewhere"]
    assert env["PATH"].split(":")[0] == str(__import__("pathlib").Path(sys.executable).parent)
    assert env["FUSIONLAB_NUM_THREADS"] == "1"


@pytest.mark.parametrize("name, expected", [
    ("alice", "alice"), ("Bob Smith", "Bob_Smith-"), ("x/../y", "x_.._y-"), ("...", "unnamed-"),
    ("j.doe@uni.edu", "j.doe@uni.edu"),
])
def test_student_ids(name, expected):
    """A valid id is kept; any other name gets a slug and a hash
    (tests/autograder/test_intake.py)."""
    student_id = student_id_from(name)
    assert student_id == expected if not expected.endswith("-") else (
        student_id.startswith(expected) and len(student_id) == len(expected) + 8)


# ----------------------------------------------------------------------------- static scan

def _nb(*sources):
    nb = new_notebook()
    nb.cells = [new_code_cell(source) for source in sources]
    return nb


SETUP = "import torch\nfrom torch import nn\nimport fusionlab\nfrom fusionlab import check"


@pytest.mark.parametrize("source, finding", [
    ("torch.allclose = lambda *a, **k: True", "modifies torch.allclose"),
    ("nn.LayerNorm.forward = lambda self, x: x", "modifies nn.LayerNorm.forward"),
    ("check.reference_gated = None", "modifies check.reference_gated"),
    ("setattr(torch, 'cat', torch.stack)", "setattr on torch"),
    ("import sys\nsys.modules['fusionlab'] = None", "sys.modules"),
    ("import autograder.hidden", "imports the grader"),
    ("f.__code__ = g.__code__", "rewrites a function's code"),
    ("import os\nos._exit(0)", "os._exit"),
    ("exec('x = 1')", "runs generated code"),
    ("get_ipython().set_custom_exc((Exception,), h)", "exception handler"),
    ("import builtins\nbuiltins.len = lambda x: 0", "modifies builtins.len"),
])
def test_scan_finds_tampering(source, finding):
    released = _nb(SETUP, "pass")
    flags = scan.scan_notebook(_nb(SETUP, source), released)
    assert any(finding in flag for flag in flags), flags
    assert all(flag.startswith("scan: cell 1") for flag in flags)


def test_scan_ignores_ordinary_code_and_released_cells():
    released = _nb(SETUP + "\nimport subprocess, sys", "pass")
    student = _nb(SETUP + "\nimport subprocess, sys", textwrap.dedent("""\
        class Gated(nn.Module):
            def __init__(self):
                super().__init__()
                self.gate = nn.Parameter(torch.zeros(1))
                self.layers = {}
                self.layers["a"] = 1
        model = Gated()
        model.gate.data.fill_(0.0)
        x = torch.randn(2, 3)
        x[0] = 1.0
        %timeit torch.randn(2)
        """))
    assert scan.scan_notebook(student, released) == []


# ----------------------------------------------------------------------------- feedback

def test_feedback_keeps_the_verdict_not_the_traceback():
    cell = new_code_cell(
        "# Hidden test: x (3 points)\n### BEGIN HIDDEN TESTS\n_grader.x(C)\n### END HIDDEN TESTS",
        metadata={"nbgrader": {"grade": True, "grade_id": "x", "points": 3, "locked": True,
                               "solution": False, "schema_version": 3}},
        outputs=[new_output("error", ename="AssertionError", evalue="gate starts at 1.0",
                            traceback=["----> 3 _grader.x(C)", "secret line"]),
                 new_output("stream", name="stderr", text="hidden.py:3: warn(secret)")],
    )
    nb = new_notebook(cells=[cell])
    nb, _ = HideHiddenTestTracebacks().preprocess(nb, {})
    text = nbformat.writes(nb)
    assert "gate starts at 1.0" in text
    assert "secret" not in text and "_grader.x(C)\"" not in text.split('"outputs"')[1]


@pytest.mark.parametrize("flag, says", [
    (f"{RUN_FAILED} (the kernel died)", "Your notebook's own run did not finish"),
    (f"{NBGRADER_FAILED} (KeyError: cells)", "nbgrader could not process your notebook"),
])
def test_a_page_without_nbgraders_feedback_says_which_pass_failed(flag, says):
    """Graded by the clean room alone: the page names what failed, the notebook's run or, under
    --no-notebook-run (nothing ran), nbgrader's processing of the notebook."""
    result = StudentResult("ada", 5.0, 5.0, "graded", flags=[flag],
                           tests=[TestResult("add_test", 5.0, 5.0)])
    page = _failure_feedback("ada", "toy", result)
    assert says in page and flag.split(" (")[1].rstrip(")") in page
    other = "nbgrader could not" if flag.startswith(RUN_FAILED) else "own run did not finish"
    assert other not in page
