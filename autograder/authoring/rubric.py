"""The rubric of every master, derived from the exercise registry.

An exercise's graded cells are declared once (``fusionlab.grading.registry.GradedCell``: points,
kind, what it checks). This module writes that declaration into the master notebooks:

- each graded cell's nbgrader ``points``;
- its first line, ``# Hidden test (3 points): ...`` or ``# Visible test (3 points): ...``; a
  hidden test cell holds nothing else but a note (the grader runs it outside the notebook), a
  visible one keeps the asserts written under that line;
- the rubric table under the master's ``### Rubric (N points)`` heading.

``make notebooks`` stamps the masters before it generates the notebooks (``stamp``), and a test
fails when a master differs from what its declarations say (``differences``).
"""

from __future__ import annotations

import re
import textwrap

from fusionlab.grading import registry

HIDDEN_NOTE = ("# The grader runs this test outside your notebook: on your TODO cell alone, in "
               "a clean process,\n# with inputs of its own. Nothing here runs in your notebook.")
WIDTH = 99  # a code line JupyterLab shows without wrapping
RUBRIC_HEADING = re.compile(r"^### Rubric \((\d+) points\)\s*$", re.MULTILINE)


def _nbgrader(cell) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def _plural(n: int) -> str:
    return f"{n} point" + ("" if n == 1 else "s")


def first_line(cell: registry.GradedCell) -> str:
    """The cell's header comment, wrapped at ``WIDTH`` (continuation lines start ``#   ``)."""
    text = f"# {cell.kind.capitalize()} test ({_plural(cell.points)}): {cell.description}"
    return "\n".join(textwrap.wrap(text, WIDTH, subsequent_indent="#   ",
                                   break_long_words=False, break_on_hyphens=False))


def _body(source: str) -> str:
    """A visible test cell's code under its header comment."""
    lines = source.splitlines()
    i = 1 if lines and lines[0].startswith("# Visible test") else 0
    while i and i < len(lines) and lines[i].startswith("#   "):
        i += 1
    return "\n".join(lines[i:])


def hidden_source(cell: registry.GradedCell) -> str:
    return f"{first_line(cell)}\n{HIDDEN_NOTE}"


def table(exercises) -> str:
    """The rubric table of ``exercises``, with its heading."""
    cells = [c for e in exercises for c in e.cells]
    total = sum(c.points for c in cells)
    rows = [f"### Rubric ({total} points)", "", "| graded cell | points | what is checked |",
            "|---|---:|---|"]
    rows += [f"| `{c.grade_id}` | {c.points} | {c.kind}: {c.description} |" for c in cells]
    rows.append(f"| **total** | **{total}** | |")
    return "\n".join(rows)


def mistakes_table(exercises) -> str:
    """The known mistakes of ``exercises`` (``autograder.hidden``), with the cells and points
    each one loses."""
    from ..hidden import references

    points = {c.grade_id: c.points for e in exercises for c in e.cells}
    rows = ["### Known mistakes", "", "| exercise | mistake | loses | points lost |",
            "|---|---|---|---:|"]
    for exercise in exercises:
        for variant in references.variants(exercise.name):
            lost = ", ".join(f"`{g}`" for g in variant.loses)
            rows.append(f"| {exercise.name} | {variant.description} | {lost} | "
                        f"{sum(points[g] for g in variant.loses)} |")
    return "\n".join(rows)


def _replace_table(source: str, rendered: str) -> str:
    lines = source.splitlines()
    start = next(i for i, line in enumerate(lines) if RUBRIC_HEADING.match(line))
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or lines[end].startswith("|")):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():  # keep the blank line after the table
        end -= 1
    return "\n".join(lines[:start] + rendered.splitlines() + lines[end:]) + (
        "\n" if source.endswith("\n") else "")


def stamped(nb, assignment: str) -> list[str]:
    """Stamp the registry's rubric into the master ``nb`` (in place); what changed, in words."""
    exercises = registry.exercises(assignment)
    declared = {c.grade_id: c for e in exercises for c in e.cells}
    changes = []
    for cell in nb.cells:
        meta = _nbgrader(cell)
        grade_id = meta.get("grade_id")
        if cell.get("cell_type") == "markdown" and RUBRIC_HEADING.search(cell.source):
            new = _replace_table(cell.source, table(exercises))
            if new != cell.source:
                cell.source = new
                changes.append("the rubric table")
        if not meta.get("grade") or grade_id not in declared:
            continue
        decl = declared[grade_id]
        if meta.get("points") != decl.points:
            meta["points"] = decl.points
            changes.append(f"{grade_id}: points")
        if decl.visible:
            new = f"{first_line(decl)}\n{_body(cell.source)}".rstrip("\n")
        else:
            new = hidden_source(decl)
        if new != cell.source:
            cell.source = new
            changes.append(f"{grade_id}: source")
    return changes


def differences(nb, assignment: str) -> list[str]:
    """What ``stamp`` would change in the master ``nb``: [] when it agrees with the registry.
    Also names the graded cells the registry does not declare, and those it declares that the
    master lacks."""
    import copy

    found = stamped(copy.deepcopy(nb), assignment)
    ids = {_nbgrader(c).get("grade_id") for c in nb.cells if _nbgrader(c).get("grade")}
    declared = {c.grade_id for e in registry.exercises(assignment) for c in e.cells}
    found += [f"{g}: graded in the master, declared by no exercise" for g in sorted(ids - declared)]
    found += [f"{g}: declared, missing from the master" for g in sorted(declared - ids)]
    if not any(RUBRIC_HEADING.search(c.source) for c in nb.cells if c.cell_type == "markdown"):
        found.append("no '### Rubric (N points)' heading")
    return found
