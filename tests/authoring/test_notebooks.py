"""The notebooks: the masters follow the grading contract, the generated versions are fresh and
leak nothing, and nbval passes on all three versions.

- Freshness: the student version is regenerated (nbgrader ``generate_assignment``) and compared
  byte for byte. The solution version is compared without its outputs: outputs (figures,
  accuracies) depend on the machine's matplotlib and CPU, so comparing them would fail on every
  other machine; ``make notebooks`` itself is byte-identical from run to run on one machine,
  and the nbval run below re-executes the solution and checks its deterministic cells
  (``NBVAL_CHECK_OUTPUT``) against the committed outputs.
- nbval: ``pytest --nbval-lax`` in a subprocess, on the master and the untouched student
  version as nbgrader runs them (``NBGRADER_EXECUTION`` set: shortened demonstrations, every
  graded cell), and on the solution version as a reader runs it (in full, and nothing may be
  written to stderr).
"""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from autograder import masters
from autograder.authoring import notebooks as generator
from autograder.authoring import rubric
from fusionlab.grading import registry
from tests.notebook_contract import by_id

REPO = generator.REPO_ROOT
MASTERS = masters.find_masters()
PART1 = masters.master_path("part1_fusion_strategies")

pytestmark = pytest.mark.notebooks

def master_ids(path):
    return path.stem


def read(path):
    return nbformat.read(str(path), as_version=4)


def code_cells(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


@pytest.fixture(params=MASTERS, ids=master_ids)
def master(request):
    return request.param


def test_masters_are_found():
    assert PART1 in MASTERS


# ----------------------------------------------------------------------------- the master


def test_the_master_agrees_with_the_exercise_registry(master):
    """Points, graded cells' header comments and the rubric table are as declared (``make
    notebooks`` stamps them); no graded cell is undeclared and none declared is missing; a
    hidden cell is its header comment only (the grader measures the TODO cells itself), a
    visible one is an assert the student can read; none records evidence in the notebook."""
    nb = read(master)
    assignment = master.stem
    assert rubric.differences(nb, assignment) == []
    assert sum(e.points for e in registry.exercises(assignment)) == 50
    for cell in code_cells(nb):
        meta = cell.metadata.get("nbgrader", {})
        if not meta.get("grade"):
            continue
        _, declared = registry.graded_cell(meta["grade_id"])
        assert cell.id == meta["grade_id"]
        assert (meta["solution"], meta["locked"], meta["schema_version"]) == (False, True, 3)
        assert "evidence" not in cell.source and "HIDDEN TESTS" not in cell.source, cell.id
        if declared.visible:
            assert "assert " in cell.source, cell.id
        else:
            assert cell.source == rubric.hidden_source(declared), cell.id


@pytest.mark.parametrize("exercise", [pytest.param(e, id=e.name)
                                      for e in registry.exercises()])
def test_each_todo_is_followed_by_its_self_check_then_its_graded_cells(exercise):
    nb = read(masters.master_path(exercise.assignment))
    ids = [cell.get("id") for cell in nb.cells]
    cell = by_id(nb)[exercise.solution]
    meta = cell.metadata.nbgrader
    assert (meta.grade_id, meta.solution, meta.grade, meta.locked) == (exercise.solution, True,
                                                                       False, False)
    assert cell.source.count("### BEGIN SOLUTION") == cell.source.count("### END SOLUTION") >= 1
    self_check = nb.cells[ids.index(exercise.solution) + 1]
    assert f"check.{exercise.name}({exercise.target})" in self_check.source
    start = ids.index(exercise.solution) + 2
    graded = [c.grade_id for c in exercise.cells]
    assert ids[start:start + len(graded)] == graded


def test_master_is_stored_without_outputs(master):
    for cell in code_cells(read(master)):
        assert cell.outputs == [] and cell.execution_count is None, cell.get("id")


# ----------------------------------------------------------------------------- badges


def test_colab_badges_follow_the_fusionlab_repo_variable(master):
    repo = generator.fusionlab_repo(read(master))
    student, solution = generator.output_paths(master)
    for path, target in ((master, student), (student, student), (solution, solution)):
        nb = read(path)
        assert generator.fusionlab_repo(nb) == repo
        expected = generator.colab_badge(repo, target.relative_to(REPO).as_posix())
        assert by_id(nb)[generator.BADGE_CELL_ID].source == expected, path
        assert nb.cells[0].get("id") == generator.BADGE_CELL_ID


def test_badge_derivation():
    badge = generator.colab_badge("https://github.com/someone/fork.git", "notebooks/x.ipynb")
    assert badge.endswith("(https://colab.research.google.com/github/someone/fork/blob/main/"
                          "notebooks/x.ipynb)")
    with pytest.raises(generator.GenerationError, match="github.com"):
        generator.colab_badge("https://gitlab.com/a/b", "notebooks/x.ipynb")


# ----------------------------------------------------------------------------- freshness


def test_student_version_is_fresh(master):
    student, _ = generator.output_paths(master)
    assert student.exists(), "run `make notebooks`"
    expected = generator.dumps(generator.student_version(master))
    assert student.read_text(encoding="utf-8") == expected, (
        f"{student.relative_to(REPO)} is stale: run `make notebooks` and commit the result"
    )


def test_solution_version_is_fresh_apart_from_its_outputs(master):
    _, solution = generator.output_paths(master)
    assert solution.exists(), "run `make notebooks`"
    committed = read(solution)
    for cell in code_cells(committed):
        cell.outputs, cell.execution_count = [], None
    expected = generator.dumps(generator.solution_source(master))
    assert generator.dumps(committed) == expected, (
        f"{solution.relative_to(REPO)} is stale: run `make notebooks` and commit the result"
    )


def test_solution_version_is_executed_with_figures(master):
    _, solution = generator.output_paths(master)
    cells = code_cells(read(solution))
    assert [cell.execution_count for cell in cells] == list(range(1, len(cells) + 1))
    figures = sum("image/png" in out.get("data", {}) for cell in cells for out in cell.outputs)
    assert figures >= 1
    for cell in cells:
        for output in cell.outputs:
            assert output.output_type != "error", cell.get("id")
            assert not (output.output_type == "stream" and output.name == "stderr"), cell.get("id")
            assert generator.WIDGET_MIME not in output.get("data", {}), cell.get("id")


def test_part1_solution_shows_every_figure():
    _, solution = generator.output_paths(PART1)
    cells = by_id(read(solution))
    for cell_id in ("plot-data", "curves", "xor-data", "final-per-class", "final-comparison"):
        assert any("image/png" in o.get("data", {}) for o in cells[cell_id].outputs), cell_id


# ----------------------------------------------------------------------------- no leaks


def solution_and_hidden_lines(master_nb) -> set[str]:
    """Lines of the solution and hidden-test blocks that appear nowhere else in the master."""
    secret, public = set(), set()
    for cell in code_cells(master_nb):
        inside = False
        for line in cell.source.splitlines():
            stripped = line.strip()
            if re.match(r"### BEGIN (SOLUTION|HIDDEN TESTS)", stripped):
                inside = True
            elif re.match(r"### END (SOLUTION|HIDDEN TESTS)", stripped):
                inside = False
            elif stripped:
                (secret if inside else public).add(stripped)
    return {line for line in secret - public if len(line) >= 8}


def test_student_version_leaks_no_solution_and_no_hidden_test(master):
    student, _ = generator.output_paths(master)
    text = student.read_text(encoding="utf-8")
    for forbidden in ("### BEGIN", "### END", "_grader", "autograder.hidden", "HIDDEN TESTS"):
        assert forbidden not in text, forbidden
    secret = solution_and_hidden_lines(read(master))
    assert secret, "the master has no solution lines to look for"
    sources = "\n".join(cell.source for cell in read(student).cells)
    leaked = sorted(line for line in secret if line in sources)
    assert not leaked, f"solution or hidden-test lines in the student version: {leaked}"


def test_student_version_keeps_every_graded_cell(master):
    student, _ = generator.output_paths(master)
    graded = [c.get("id") for c in code_cells(read(master))
              if c.metadata.get("nbgrader", {}).get("grade")]
    released = {c.get("id"): c for c in code_cells(read(student))}
    for cell_id in graded:
        meta = released[cell_id].metadata.nbgrader
        assert meta.grade_id == cell_id and meta.locked and "checksum" in meta


def test_student_stubs_raise_not_implemented_and_only_visible_tests_are_tagged(master):
    student, _ = generator.output_paths(master)
    nb = read(student)
    for cell in code_cells(nb):
        if cell.metadata.get("nbgrader", {}).get("solution"):
            assert "raise NotImplementedError()" in cell.source
    tagged = {c.get("id") for c in code_cells(nb)
              if "raises-exception" in c.metadata.get("tags", [])}
    visible = {c.get("id") for c in code_cells(nb)
               if masters.is_test_cell(c) and generator.has_code(c.source)}
    assert tagged == visible and visible


def test_solution_version_has_no_markers_hidden_tests_or_nbgrader_metadata(master):
    _, solution = generator.output_paths(master)
    text = solution.read_text(encoding="utf-8")
    for forbidden in ("### BEGIN", "### END", "_grader", "autograder.hidden", '"nbgrader"'):
        assert forbidden not in text, forbidden
    nb = read(solution)
    master_nb = read(master)
    hidden = {c.get("id") for c in code_cells(master_nb) if "BEGIN HIDDEN TESTS" in c.source}
    assert hidden.isdisjoint(by_id(nb))


# ----------------------------------------------------------------------------- nbval

NO_STDERR_PLUGIN = textwrap.dedent('''
    """pytest plugin for nbval runs: a cell that writes to stderr fails."""
    import pytest


    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(item):
        result = yield
        outputs = getattr(item, "test_outputs", None) or []
        stderr = "".join(o.get("text", "") for o in outputs
                         if o.get("output_type") == "stream" and o.get("name") == "stderr")
        if stderr:
            raise AssertionError(f"the cell wrote to stderr:\\n{stderr}")
        return result
''')


def run_nbval(notebook: Path, tmp_path: Path, grading: bool, no_stderr: bool):
    env = generator.solution_env()
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env["PYTHONPATH"]])
    if grading:
        env["NBGRADER_EXECUTION"] = "autograde"
    command = [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env",
               "-p", "no:cacheprovider", "-q", "-o", "addopts=", str(notebook)]
    if no_stderr:
        (tmp_path / "nbval_no_stderr.py").write_text(NO_STDERR_PLUGIN)
        command[3:3] = ["-p", "nbval_no_stderr"]
    completed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stdout[-6000:] + completed.stderr[-3000:]
    assert re.search(r"\d+ passed", completed.stdout)


def test_nbval_master_as_graded(master, tmp_path):
    run_nbval(master, tmp_path, grading=True, no_stderr=False)


def test_nbval_untouched_student_version_as_graded(master, tmp_path):
    student, _ = generator.output_paths(master)
    run_nbval(student, tmp_path, grading=True, no_stderr=False)


def test_nbval_solution_version_in_full_without_stderr(master, tmp_path):
    _, solution = generator.output_paths(master)
    run_nbval(solution, tmp_path, grading=False, no_stderr=True)


def test_nbval_no_stderr_plugin_fails_a_cell_that_writes_to_stderr(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("print('fine')", id="quiet"),
        nbformat.v4.new_code_cell("import sys\nsys.stderr.write('oops\\n')", id="noisy"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    path = tmp_path / "noisy.ipynb"
    nbformat.write(nb, str(path))
    with pytest.raises(AssertionError, match="wrote to stderr"):
        run_nbval(path, tmp_path, grading=False, no_stderr=True)
