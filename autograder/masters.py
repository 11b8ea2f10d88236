"""What an nbgrader master notebook is, for every tool that reads one (the grading pipeline and
the authoring tools alike): where it lives, nbgrader's markers, its graded cells and their
points, and a released notebook filled in with its solutions.

A master ``source/<name>/<name>.ipynb`` holds the solutions between ``### BEGIN SOLUTION`` and
``### END SOLUTION`` lines, hidden tests between ``### BEGIN HIDDEN TESTS`` and
``### END HIDDEN TESTS``, and each graded cell's points in its nbgrader metadata.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from . import REPO_ROOT

SOURCE_DIR = "source"
SOLUTION_MARKER = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?", re.MULTILINE)
HIDDEN_TESTS = re.compile(r"### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS", re.DOTALL)
OUTPUT_MARKER = re.compile(r"^# NBVAL_CHECK_OUTPUT[ \t]*\n", re.MULTILINE)


def strip_solution_markers(source: str) -> str:
    """The solution code of a master cell, without nbgrader's ``### BEGIN/END SOLUTION``."""
    return SOLUTION_MARKER.sub("", source)


def find_masters(repo_root: Path = REPO_ROOT) -> list[Path]:
    """Every nbgrader master ``source/<name>/<name>.ipynb``, sorted by name."""
    source = Path(repo_root) / SOURCE_DIR
    return sorted(
        path for path in source.glob("*/*.ipynb")
        if path.stem == path.parent.name and ".ipynb_checkpoints" not in path.parts
    )


def master_path(assignment: str, repo_root: Path = REPO_ROOT) -> Path:
    """The master of ``assignment``: ``source/<assignment>/<assignment>.ipynb``."""
    return Path(repo_root) / SOURCE_DIR / assignment / f"{assignment}.ipynb"


def _nbgrader(cell: NotebookNode) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def is_test_cell(cell: NotebookNode) -> bool:
    meta = _nbgrader(cell)
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


def graded_cells(nb: NotebookNode) -> dict[str, float]:
    """grade_id -> points of every graded cell of ``nb`` (a master or a released notebook), in
    notebook order: the one reading of the rubric from nbgrader's metadata."""
    return {_nbgrader(cell)["grade_id"]: float(_nbgrader(cell).get("points", 0))
            for cell in nb.cells if _nbgrader(cell).get("grade")}


def submission(master, released, replace: dict[str, str] | None = None,
               edit: Callable | None = None, solved: bool = True):
    """A student notebook: ``released`` with each solution cell set to the master's solution
    (``solved``) or left as released; ``replace`` maps a class or function name
    (``"GatedFusionModel"``, ``"clip_loss"``) or a grade_id to the source of the cell that
    defines it; ``edit(nb)`` changes it further."""
    solutions = {_nbgrader(c).get("grade_id"): strip_solution_markers(c.source)
                 for c in master.cells if _nbgrader(c).get("solution")}
    nb = nbformat.reads(nbformat.writes(released), as_version=4)  # a deep copy
    replaced = set()
    for cell in nb.cells:
        grade_id = _nbgrader(cell).get("grade_id")
        if grade_id not in solutions:
            continue
        if solved:
            cell.source = solutions[grade_id]
        for key, source in (replace or {}).items():
            if key == grade_id or re.search(rf"^(class|def) {re.escape(key)}\b",
                                            solutions[grade_id], re.MULTILINE):
                cell.source = source
                replaced.add(key)
    missing = set(replace or {}) - replaced
    if missing:
        raise ValueError(f"no solution cell defines {sorted(missing)}")
    if edit is not None:
        edit(nb)
    return nb
