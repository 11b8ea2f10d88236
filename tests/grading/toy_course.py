"""A tiny nbgrader course for fast tests of the grading machinery (no torch in the kernel).

Assignment ``toy``, notebook ``toy.ipynb``: one solution cell (``add``), a visible test worth 2
points and a hidden test worth 3. ``write_submissions()`` writes the hostile and ordinary
submissions the pipeline must survive, built from the released notebook by replacing cell
sources.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ASSIGNMENT = "toy"
MAX_SCORE = 5.0

SOLUTION = """\
def add(a, b):
    ### BEGIN SOLUTION
    return a + b
    ### END SOLUTION"""

HIDDEN = """\
# Hidden test: add works on negatives and floats (3 points)
### BEGIN HIDDEN TESTS
assert add(-1, 1) == 0
assert add(2.5, 2.5) == 5
### END HIDDEN TESTS"""


def _meta(grade_id, *, grade=False, solution=False, locked=False, points=0):
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3,
            "solution": solution, "task": False}
    if grade:
        meta["points"] = points
    return {"nbgrader": meta}


def master() -> nbformat.NotebookNode:
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                               "language": "python"},
                                # the course's own exercise declaration and trusted reference
                                # (the reference stays with the tests: never released)
                                "fusionlab": {"exercises": "toy_exercises",
                                              "references": "tests.grading.toy_references"}})
    nb.cells = [
        new_markdown_cell("# Toy assignment\nImplement `add`."),
        new_code_cell("import os\nprint('ready')"),
        new_code_cell(SOLUTION, metadata=_meta("add_solution", solution=True)),
        new_code_cell("assert add(1, 2) == 3",
                      metadata=_meta("add_visible", grade=True, locked=True, points=2)),
        new_code_cell(HIDDEN, metadata=_meta("add_hidden", grade=True, locked=True, points=3)),
    ]
    return nb


def write_source(root: Path) -> Path:
    """Write ``root/toy/toy.ipynb`` and its exercise declaration beside it; return ``root`` (a
    ``--source`` folder)."""
    import shutil

    (root / ASSIGNMENT).mkdir(parents=True, exist_ok=True)
    nbformat.write(master(), root / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    shutil.copy(Path(__file__).with_name("toy_exercises.py"), root / ASSIGNMENT)
    return root


CORRECT = "def add(a, b):\n    return a + b"


def _edit_test(nb):
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "add_hidden":
            cell.source = "pass  # trust me"


def _delete_tests(nb):
    nb.cells = [c for c in nb.cells if not c.metadata.get("nbgrader", {}).get("grade")]


def _strip_metadata_of_test(nb):
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "add_visible":
            cell.metadata = {}
            cell.source = "pass"


WRONG = "def add(a, b):\n    return int(a) + int(b)"  # passes the visible test only

# name -> (source of the solution cell, None for the untouched stub; an edit; expected score)
SUBMISSIONS = {
    "correct": (CORRECT, None, MAX_SCORE),
    "stub": (None, None, 0.0),
    "wrong": (WRONG, None, 2.0),
    "hang": ("import time\nwhile True:\n    time.sleep(0.1)", None, 0.0),
    "crash": ("import os\nos._exit(1)", None, 0.0),
    "sysexit": (CORRECT + "\nimport sys\nsys.exit(3)", None, MAX_SCORE),  # IPython catches it
    "quitter": (CORRECT + "\nexit()", None, MAX_SCORE),  # ipykernel keeps running
    "unstoppable": ("import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                    "while True:\n    time.sleep(0.1)", None, 0.0),
    "edited_test": (WRONG, _edit_test, 2.0),  # the hidden test is restored and fails
    "deleted_tests": (WRONG, _delete_tests, 2.0),  # both tests are restored
    "stripped_test": ("def add(a, b):\n    return a - b", _strip_metadata_of_test, 0.0),
}
NOT_NOTEBOOKS = {
    "garbage": b"{this is not json",
    "not_a_notebook": json.dumps({"hello": "world"}).encode(),
}


def write_submissions(folder: Path, source_root: Path, names=None) -> dict[str, float]:
    """Write ``<name>.ipynb`` for each submission, built from the notebook as nbgrader releases
    it from ``source_root``; return name -> expected score."""
    from autograder.authoring.examples import release, submission

    masters, released = release(ASSIGNMENT, source_root)
    master, student = masters[ASSIGNMENT], released[ASSIGNMENT]
    folder.mkdir(parents=True, exist_ok=True)
    expected = {}
    for name, (source, edit, score) in SUBMISSIONS.items():
        if names is not None and name not in names:
            continue
        replace = {"add_solution": source} if source is not None else None
        nb = submission(master, student, replace=replace, edit=edit, solved=False)
        nbformat.write(nb, folder / f"{name}.ipynb")
        expected[name] = score
    for name, content in NOT_NOTEBOOKS.items():
        if names is not None and name not in names:
            continue
        (folder / f"{name}.ipynb").write_bytes(content)
        expected[name] = 0.0
    return expected
