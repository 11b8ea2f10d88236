"""Reading a submitted notebook before anything else does: parse it with a depth limit,
validate it against nbformat's schema, and make its nbgrader metadata the release's.

Every later step (the scan, the locked-cell report, nbgrader, the clean room, the feedback)
reads the notebook that ``read_submission`` accepted and ``normalize`` rewrote, so none of
them meets JSON nested 5,000 deep, a cell whose ``metadata.nbgrader`` is a string, or a
``source`` that is a number. What cannot be read is not a notebook, with the reason.

``normalize`` also keeps honest accidents from costing points:

- a graded cell pasted twice (Jupyter's copy and paste keeps the ``grade_id``): the last copy
  is the graded one, as nbgrader's ``DeduplicateIds`` decides, and the earlier copies become
  plain cells, flagged (nbgrader itself would leave them with empty metadata, and its
  ``add_missing_cells`` then fails on them with ``KeyError: 'grade_id'``). An earlier copy of a
  TODO cell still runs in the clean room, in notebook order, as it runs in the notebook
  (``metadata.autograder.duplicate_of``);
- a cell with graded-cell metadata whose ``grade_id`` the assignment does not have (a cell
  pasted from another notebook): a plain cell, flagged;
- the nbgrader metadata of every known cell is the released cell's, so a wrong type or a
  changed ``points`` never reaches nbgrader.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import nbformat

MAX_DEPTH = 64  # nesting of the notebook's JSON; a real notebook stays under 20
MAX_BYTES = 64 * 2**20  # as autograder.intake.MAX_MEMBER_BYTES
DUPLICATE_KEY = "autograder"  # cell metadata written here: {"duplicate_of": grade_id}


class NotANotebook(ValueError):
    """The file cannot be graded as a notebook; the message says why."""


def _short(text: str, limit: int = 160) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _depth(value) -> int:
    """How deeply ``value`` nests lists and objects (iterative: no recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


def parse(data: bytes):
    """The notebook in ``data`` (an nbformat v4 NotebookNode, validated); NotANotebook if not."""
    if len(data) > MAX_BYTES:
        raise NotANotebook(f"not a notebook: larger than {MAX_BYTES // 2**20} MiB")
    try:
        raw = json.loads(data)
    except RecursionError:
        raise NotANotebook(f"not a notebook: its JSON nests deeper than {MAX_DEPTH} "
                           "levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise NotANotebook(f"not a notebook: invalid JSON ({_short(exc, 80)})") from None
    if _depth(raw) > MAX_DEPTH:
        raise NotANotebook(f"not a notebook: its JSON nests deeper than {MAX_DEPTH} levels")
    if not isinstance(raw, dict) or "cells" not in raw and "worksheets" not in raw:
        raise NotANotebook("not a notebook: the JSON has no cells")
    if not isinstance(raw.get("nbformat"), int) or raw.get("nbformat") < 4:
        if raw.get("nbformat") != 3:
            raise NotANotebook("not a notebook: no nbformat version 3 or 4 "
                               f"(nbformat: {_short(repr(raw.get('nbformat')), 40)})")
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nb = nbformat.reads(json.dumps(raw), as_version=4)
            _repair(nb)
            nbformat.validate(nb)
    except RecursionError:
        raise NotANotebook("not a notebook: nested too deeply to validate") from None
    except Exception as exc:  # nbformat and jsonschema raise many kinds
        raise NotANotebook(f"not a valid notebook: {_schema_error(exc)}") from None
    return nb


def _schema_error(exc: Exception) -> str:
    path = "/".join(str(p) for p in getattr(exc, "absolute_path", []) or [])
    message = getattr(exc, "message", None) or str(exc)
    return _short((f"at {path}: " if path else "") + message, 200)


def _repair(nb) -> None:
    """Fill what nbformat's own writer would fill and Jupyter tolerates: cell ids (added by
    nbformat >= 5.1), a missing ``metadata`` or ``outputs``. Wrong types are not repaired:
    validation names them."""
    if not isinstance(nb.get("cells"), list):
        return
    for cell in nb.cells:
        if not isinstance(cell, dict):
            continue
        cell.setdefault("metadata", nbformat.NotebookNode())
        if cell.get("cell_type") == "code":
            cell.setdefault("outputs", [])
            cell.setdefault("execution_count", None)
    try:
        from nbformat.validator import normalize  # nbformat >= 5.7: adds missing cell ids

        _, fixed = normalize(nb, repair_duplicate_cell_ids=True, strip_invalid_metadata=False)
        nb.update(nbformat.from_dict(fixed))
    except Exception:  # noqa: BLE001 (older nbformat, or a shape validation will name)
        pass


def read_submission(path: Path):
    """(notebook, "") or (None, why it is not a notebook). Never raises."""
    try:
        return parse(Path(path).read_bytes()), ""
    except NotANotebook as exc:
        return None, str(exc)
    except RecursionError:
        return None, "not a notebook: nested too deeply to read"
    except MemoryError:
        return None, "not a notebook: too large to read"
    except OSError as exc:
        return None, f"not a notebook: it could not be read ({type(exc).__name__})"


def nbgrader_meta(cell) -> dict:
    """A cell's nbgrader metadata, or {} when it has none or it is not a dict."""
    meta = cell.get("metadata", {})
    meta = meta.get("nbgrader", {}) if isinstance(meta, dict) else {}
    return meta if isinstance(meta, dict) else {}


def _released_meta(released) -> dict[str, dict]:
    found = {}
    for cell in released.cells:
        meta = nbgrader_meta(cell)
        if isinstance(meta.get("grade_id"), str) and meta["grade_id"] not in found:
            found[meta["grade_id"]] = meta
    return found


def _is_nbgrader_cell(meta: dict) -> bool:
    return any(meta.get(key) for key in ("grade", "solution", "locked", "task")) or \
        "grade_id" in meta


def normalize(nb, released) -> list[str]:
    """Make ``nb``'s nbgrader metadata the release's (see the module doc), in place; the flags
    for the instructor, one sentence each."""
    known = _released_meta(released)
    solutions = {grade_id for grade_id, meta in known.items() if meta.get("solution")}
    flags: list[str] = []
    last = {}  # grade_id -> index of the copy that nbgrader grades
    for index, cell in enumerate(nb.cells):
        cell.metadata.pop(DUPLICATE_KEY, None)  # written by us only
        raw = cell.metadata.get("nbgrader")
        if raw is None:
            continue
        meta = raw if isinstance(raw, dict) else {}
        grade_id = meta.get("grade_id")
        if not isinstance(raw, dict) or not isinstance(grade_id, str) or grade_id not in known:
            del cell.metadata["nbgrader"]
            if not isinstance(raw, dict):
                flags.append(f"cell {index}: its nbgrader metadata is not an object "
                             f"({type(raw).__name__}): ignored")
            elif isinstance(grade_id, str):
                flags.append(f"cell {index} carries the metadata of a graded cell "
                             f"{_short(grade_id, 60)!r} that this assignment does not have: "
                             "graded as a plain cell (no points depend on it)")
            elif _is_nbgrader_cell(meta):
                flags.append(f"cell {index}: its nbgrader metadata has no valid grade_id: "
                             "ignored")
            continue
        last[grade_id] = index
    for index, cell in enumerate(nb.cells):
        grade_id = nbgrader_meta(cell).get("grade_id")
        if grade_id is None or "nbgrader" not in cell.metadata:
            continue
        if last[grade_id] != index:
            del cell.metadata["nbgrader"]
            if grade_id in solutions:
                cell.metadata[DUPLICATE_KEY] = {"duplicate_of": grade_id}
            flags.append(f"cell {index} is a copy of cell {grade_id} (same grade_id, e.g. "
                         f"pasted twice): graded once, the copy at cell {last[grade_id]}")
            continue
        cell.metadata["nbgrader"] = copy.deepcopy(known[grade_id])
    return flags


def write(nb, path: Path) -> None:
    """``nb`` to ``path`` as ``nbformat.write`` writes it, without its second schema check
    (which only logs): ``parse`` validated the notebook, ``normalize`` edits only metadata."""
    text = nbformat.v4.writes(nb)
    Path(path).write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")


__all__ = ["MAX_DEPTH", "NotANotebook", "nbgrader_meta", "normalize", "parse", "read_submission",
           "write"]
