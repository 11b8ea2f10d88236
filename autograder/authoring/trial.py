"""Try a TODO cell as the grader and the self-check do, without nbgrader's batch: for the tests
and the authoring tools (thresholds, examples).

``verdicts(assignment, replace)`` releases the assignment (once per process), fills its TODO
cells with the master's solutions, replaces those named in ``replace`` (a class or function
name, or a grade_id, mapped to a cell's source: a known mistake), measures the notebook in the
clean room *in this process* (our own code only, never a submission) and returns the trusted
verdicts. ``self_check(exercise, source)`` runs the exercise's self-check on what ``source``
defines, on top of the master's setup imports, as the notebook's self-check cell does.
"""

from __future__ import annotations

import functools

from fusionlab.grading import registry
from fusionlab.grading.cleanroom import run_cell, setup_imports
from fusionlab.grading.results import CheckResult
from fusionlab.grading.seeds import Seeds

from .. import cleanroom
from .. import verdicts as trusted
from ..masters import strip_solution_markers, submission
from .examples import release

SEEDS = Seeds(inputs=4242, evaluation=777)  # the tests' grading seeds


@functools.lru_cache(maxsize=None)
def released(assignment: str):
    """(master, release) of a single-notebook assignment, released by nbgrader once."""
    masters, releases = release(assignment)
    (name,) = masters
    return masters[name], releases[name]


def solution_source(exercise: registry.Exercise) -> str:
    """The master's own solution of ``exercise`` (its TODO cell, solution markers removed)."""
    master, _ = released(exercise.assignment)
    for cell in master.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == exercise.solution:
            return strip_solution_markers(cell.source)
    raise KeyError(exercise.solution)


def namespace(exercise: registry.Exercise, source: str | None = None) -> dict:
    """What the notebook defines after its setup imports, the master's solutions of the TODO
    cells before ``exercise``'s (a later TODO may build on an earlier one: Part 2's co-attention
    on the attention) and ``source`` (default: the master's solution of ``exercise``); raises
    the cell's error."""
    master, _ = released(exercise.assignment)
    code = [c for c in master.cells if c.cell_type == "code"]
    cells = [("setup", setup_imports(code[0].source))]
    for cell in code:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade_id") == exercise.solution:
            break
        if meta.get("solution"):
            cells.append((meta["grade_id"], strip_solution_markers(cell.source)))
    cells.append((exercise.solution, source or solution_source(exercise)))
    names: dict = {"__name__": "__main__"}
    for name, text in cells:
        error = run_cell(text, name, names)
        if error:
            raise RuntimeError(f"{name}: {error}")
    return names


def self_check(exercise: registry.Exercise, source: str | None = None) -> dict[str, CheckResult]:
    """check name -> the self-check's verdict on what ``source`` defines."""
    target = namespace(exercise, source)[exercise.target]
    return {r.name: r for r in exercise.results(target)}


def verdicts(assignment: str, replace: dict[str, str] | None = None, *, solved: bool = True,
             seeds: Seeds = SEEDS, edit=None) -> dict[str, CheckResult]:
    """grade_id -> the trusted verdict of the assignment's notebook with the master's solutions
    (``solved``) and the cells of ``replace``; ``edit(nb)`` changes the notebook further."""
    master, release_nb = released(assignment)
    nb = submission(master, release_nb, replace=replace, solved=solved, edit=edit)
    measurement = cleanroom.measure(release_nb, nb, seeds, limits=None, in_process=True)
    return trusted.decide(release_nb, measurement, seeds)
