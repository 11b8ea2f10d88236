"""Example submissions, built from the instructor master so that they never go stale.

A submission is the released notebook (what students download) with its solution cells filled
in: with the master's solutions (``correct``), left as released (``untouched``), or with one
class replaced by a typical mistake. ``write_examples`` writes the ones ``make demo`` grades;
the tests build every variant in ``PART1_VARIANTS`` the same way.

    python -m autograder examples part1_fusion_strategies --out example-submissions
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import nbformat

from .. import SOURCE_ROOT
from ..masters import graded_cells as notebook_graded_cells
from ..masters import strip_solution_markers, submission


def release(assignment: str, source_root: Path = SOURCE_ROOT) -> tuple[dict, dict]:
    """({notebook: master}, {notebook: released}) for ``assignment``, released by nbgrader in a
    temporary course directory."""
    from ..course import create_course  # nbgrader: imported only where it is needed

    with tempfile.TemporaryDirectory(prefix="autograder-release-") as tmp:
        course = create_course(Path(tmp) / "course", assignment, source_root)
        masters, released = {}, {}
        for name in course.notebooks:
            masters[name] = nbformat.read(
                Path(source_root) / assignment / f"{name}.ipynb", as_version=4)
            released[name] = nbformat.read(
                course.root / "release" / assignment / f"{name}.ipynb", as_version=4)
    return masters, released


def master_namespace(assignment: str, cell_ids, source_root: Path = SOURCE_ROOT,
                     preset: dict | None = None) -> dict:
    """The master's own code as plain Python, as the clean room runs a submission: the imports
    of its setup cell (the first code cell), then the cells ``cell_ids`` (solution markers
    stripped), in a fresh namespace (holding ``preset``'s names first: what the setup cell
    sets beyond its imports, e.g. ``GRADING``).

    Tests use it to exercise the reference solutions exactly as the notebook defines them, so
    that no second copy of a solution exists to drift.
    """
    from fusionlab.grading.cleanroom import run_cell, setup_imports

    master = nbformat.read(Path(source_root) / assignment / f"{assignment}.ipynb", as_version=4)
    code_cells = [cell for cell in master.cells if cell.cell_type == "code"]
    cells = {cell.get("id"): cell.source for cell in code_cells}
    namespace: dict = {"__name__": "__main__", **(preset or {})}
    for name, source in [("setup", setup_imports(code_cells[0].source))] + [
            (cell_id, strip_solution_markers(cells[cell_id])) for cell_id in cell_ids]:
        error = run_cell(source, name, namespace)
        if error:
            raise RuntimeError(f"{assignment}.ipynb:{name}: {error}")
    return namespace


def graded_cells(assignment: str, source_root: Path = SOURCE_ROOT) -> dict[str, float]:
    """grade_id -> points of every graded cell of the master, in notebook order."""
    master = nbformat.read(Path(source_root) / assignment / f"{assignment}.ipynb", as_version=4)
    return notebook_graded_cells(master)


def examples(assignment: str) -> dict[str, tuple[dict[str, str] | None, tuple[str, ...]]]:
    """The example submissions of ``assignment``: name -> (the TODO cells replaced, or None for
    the untouched notebook; the graded cells it loses). ``correct`` and ``untouched`` first,
    then each known mistake its reference marks ``example`` (``autograder.hidden``), as
    ``wrong_<variant>``."""
    from fusionlab.grading import registry

    from ..hidden import references

    cells = tuple(c.grade_id for e in registry.exercises(assignment) for c in e.cells)
    found = {"correct": ({}, ()), "untouched": (None, cells)}
    for exercise in registry.exercises(assignment):
        for variant in references.variants(exercise.name):
            if variant.example:
                found[f"wrong_{variant.name}"] = (variant.replace, variant.loses)
    return found


def write_examples(assignment: str, out: Path, source_root: Path = SOURCE_ROOT) -> list[Path]:
    """Write the example submissions of ``assignment`` (``examples``) as ``out/<name>.ipynb``."""
    masters, released = release(assignment, source_root)
    if len(masters) != 1:
        raise ValueError("example submissions are built for single-notebook assignments")
    (name,) = masters
    master, student = masters[name], released[name]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for example, (replace, _) in examples(assignment).items():
        nb = submission(master, student, replace=replace or None, solved=replace is not None)
        path = out / f"{example}.ipynb"
        nbformat.write(nb, path)
        paths.append(path)
    return paths
