"""Generate every notebook's student and solution versions from its nbgrader master.

    python -m autograder.authoring.notebooks               # what `make notebooks` runs
    python -m autograder.authoring.notebooks --no-execute  # skip running the solutions (no outputs)
    python -m autograder.authoring.notebooks --out DIR     # write DIR/notebooks/, DIR/solutions/

Each master ``source/<name>/<name>.ipynb`` (nbgrader's layout: one folder per assignment) gives

- ``notebooks/<name>.ipynb``, the student version: nbgrader ``generate_assignment`` in a
  temporary course directory (solutions replaced by stubs, hidden tests removed, nbgrader
  metadata and checksums kept for grading). The test cells that raise while the stubs are
  unfilled get the ``raises-exception`` tag, so that ``pytest --nbval-lax`` validates the
  untouched student notebook too;
- ``solutions/<name>.ipynb``, the solution version: the solutions without their
  ``### BEGIN/END SOLUTION`` markers, the visible tests, no hidden-test cells, no nbgrader
  metadata, executed in a fresh kernel so that its figures show on GitHub.

The "Open in Colab" badge of every version is derived from the ``FUSIONLAB_REPO`` variable of the
master's setup cell: that variable is the one place a fork changes.

The output is byte-identical from run to run on one machine: the solutions are executed on the
CPU with one thread, timings and widget state are not recorded, and progress-bar widgets (whose
ids are random) are dropped. Execution fails loudly when a cell raises or writes to stderr.

Students' work is never lost: a file is rewritten only when its content changes, and a file that
holds changes this generator did not make (it is neither the committed version nor what the
generator last wrote there) is first copied to ``backups/``, and the log says so.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from .. import REPO_ROOT, kernel_env
from ..masters import (
    HIDDEN_TESTS,
    OUTPUT_MARKER,
    SOURCE_DIR,
    find_masters,
    is_test_cell,
    strip_solution_markers,
)

STUDENT_DIR = "notebooks"
SOLUTION_DIR = "solutions"
BADGE_CELL_ID = "colab-badge"
BACKUP_DIR = "backups"  # copies of edited files, before they are regenerated
WRITTEN_RECORD = Path("build") / "generated-notebooks.json"  # what the generator last wrote
EXECUTION_TIMEOUT_S = 600  # per cell, for the solution run

REPO_VARIABLE = re.compile(r'^FUSIONLAB_REPO\s*=\s*["\']([^"\']+)["\']', re.MULTILINE)
GITHUB_URL = re.compile(r"^https://github\.com/([\w.-]+/[\w.-]+?)(?:\.git)?/?$")
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


class GenerationError(RuntimeError):
    """A master is malformed, nbgrader failed, or the solution did not run cleanly."""


# ----------------------------------------------------------------------------- discovery

def output_paths(master: Path, out_root: Path = REPO_ROOT) -> tuple[Path, Path]:
    """Where the student and the solution version of ``master`` go."""
    name = f"{master.stem}.ipynb"
    return Path(out_root) / STUDENT_DIR / name, Path(out_root) / SOLUTION_DIR / name


# ----------------------------------------------------------------------------- badge

def fusionlab_repo(nb: NotebookNode) -> str:
    """The ``FUSIONLAB_REPO = "https://github.com/<owner>/<repo>"`` value of the setup cell."""
    values = {m.group(1) for cell in nb.cells if cell.cell_type == "code"
              for m in REPO_VARIABLE.finditer(cell.source)}
    if len(values) != 1:
        raise GenerationError(
            f"expected exactly one FUSIONLAB_REPO = \"https://github.com/<owner>/<repo>\" in the "
            f"setup cell, found {sorted(values) or 'none'}"
        )
    return values.pop()


def colab_badge(repo_url: str, notebook_path: str) -> str:
    """Markdown of the "Open in Colab" badge for ``notebook_path`` in the repository."""
    match = GITHUB_URL.match(repo_url)
    if match is None:
        raise GenerationError(
            f"FUSIONLAB_REPO must be https://github.com/<owner>/<repo>, got {repo_url}"
        )
    return (
        "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        f"(https://colab.research.google.com/github/{match.group(1)}/blob/main/{notebook_path})"
    )


def _badge_cell(nb: NotebookNode) -> NotebookNode:
    cells = [c for c in nb.cells if c.get("id") == BADGE_CELL_ID]
    if len(cells) != 1 or cells[0].cell_type != "markdown":
        raise GenerationError(f"expected one markdown cell with id {BADGE_CELL_ID!r}")
    return cells[0]


def set_badge(nb: NotebookNode, notebook_path: str) -> None:
    _badge_cell(nb).source = colab_badge(fusionlab_repo(nb), notebook_path)


def check_master_badge(master_nb: NotebookNode, name: str) -> None:
    """The master's badge must be the one derived from its FUSIONLAB_REPO (the student link)."""
    expected = colab_badge(fusionlab_repo(master_nb), f"{STUDENT_DIR}/{name}.ipynb")
    if _badge_cell(master_nb).source.strip() != expected:
        raise GenerationError(
            f"the master's Colab badge does not match its FUSIONLAB_REPO; set the "
            f"{BADGE_CELL_ID!r} cell to:\n{expected}"
        )


# ----------------------------------------------------------------------------- helpers

def has_code(source: str) -> bool:
    """Whether ``source`` holds anything but comments and blank lines."""
    return any(line.strip() and not line.lstrip().startswith("#") for line in source.splitlines())


def read(path: Path) -> NotebookNode:
    return nbformat.read(str(path), as_version=4)


def dumps(nb: NotebookNode) -> str:
    """The canonical bytes of a notebook: nbformat's JSON, one trailing newline."""
    nbformat.validate(nb)
    return nbformat.writes(nb).rstrip("\n") + "\n"


def _clean_metadata(nb: NotebookNode, master: NotebookNode) -> None:
    """Notebook metadata as in the master, minus what kernels and widgets add (versions,
    widget state), so that the bytes do not depend on the machine's patch versions."""
    nb.metadata = copy.deepcopy(master.metadata)
    for key in ("widgets", "papermill", "execution"):
        nb.metadata.pop(key, None)


# ----------------------------------------------------------------------------- student version

def student_version(master_path: Path) -> NotebookNode:
    """nbgrader's release of the master, with tags for the cells that raise until solved."""
    from ..course import CourseError, create_course  # nbgrader: imported only where needed

    master_path = Path(master_path)
    name = master_path.stem
    with tempfile.TemporaryDirectory(prefix="fusionlab-release-") as tmp:
        try:
            course = create_course(Path(tmp) / "course", name, master_path.parent.parent)
        except CourseError as error:
            raise GenerationError(str(error)) from None
        nb = read(course.root / "release" / name / master_path.name)

    master = read(master_path)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if "### BEGIN" in cell.source or "### END" in cell.source:
            raise GenerationError(f"cell {cell.get('id')} still holds an nbgrader marker")
        cell.source = OUTPUT_MARKER.sub("", cell.source)  # nbval's marker: noise for students
        tags = [t for t in cell.metadata.get("tags", []) if t != "raises-exception"]
        if is_test_cell(cell) and has_code(cell.source):
            tags.append("raises-exception")  # its stubs raise NotImplementedError
        if tags:
            cell.metadata["tags"] = tags
        else:
            cell.metadata.pop("tags", None)
    set_badge(nb, f"{STUDENT_DIR}/{name}.ipynb")
    _clean_metadata(nb, master)
    return nb


# ----------------------------------------------------------------------------- solution version

def solution_source(master_path: Path) -> NotebookNode:
    """The solution version before execution: no hidden-test cells, no solution markers, no
    nbgrader metadata."""
    master = read(master_path)
    nb = copy.deepcopy(master)
    cells = []
    for cell in nb.cells:
        if cell.cell_type == "code" and HIDDEN_TESTS.search(cell.source):
            if has_code(HIDDEN_TESTS.sub("", cell.source)):
                raise GenerationError(
                    f"cell {cell.get('id')} mixes hidden tests with other code; keep hidden "
                    "tests in cells of their own"
                )
            continue  # a hidden-test cell: nothing is left of it for readers
        cell.metadata.pop("nbgrader", None)
        if cell.cell_type == "code":
            cell.source = strip_solution_markers(cell.source)
            cell.outputs = []
            cell.execution_count = None
        cells.append(cell)
    nb.cells = cells
    set_badge(nb, f"{SOLUTION_DIR}/{master_path.stem}.ipynb")
    _clean_metadata(nb, master)
    return nb


def solution_env() -> dict[str, str]:
    """Environment of the kernel that runs the solutions: the course's ``kernel_env``, the CPU
    only (outputs must not depend on the machine having a GPU), no grading mode."""
    env = kernel_env()
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["PYTORCH_ENABLE_MPS_FALLBACK"] = "0"
    for key in ("NBGRADER_EXECUTION", "MPLBACKEND", "TQDM_DISABLE"):
        env.pop(key, None)
    return env


def execute(nb: NotebookNode, workdir: Path) -> NotebookNode:
    """Run ``nb`` in a fresh kernel in ``workdir``; raise on any error or stderr output."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    client = NotebookClient(
        nb,
        timeout=EXECUTION_TIMEOUT_S,
        kernel_name="python3",
        record_timing=False,
        store_widget_state=False,
        allow_errors=False,
        resources={"metadata": {"path": str(workdir)}},
    )
    try:
        client.execute(env=solution_env())
    except CellExecutionError as error:
        raise GenerationError(f"the solution notebook raised an error:\n{error}") from None
    problems = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.outputs:
            if output.output_type == "stream" and output.name == "stderr":
                problems.append(f"cell {cell.get('id')} wrote to stderr:\n{output.text}")
    if problems:
        raise GenerationError(
            "the solution notebook must not write to stderr:\n" + "\n".join(problems)
        )
    return nb


def clean_outputs(nb: NotebookNode) -> NotebookNode:
    """Drop widget outputs (progress bars: random ids, nothing to see on GitHub), merge
    consecutive stream outputs, and drop per-run metadata."""
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type != "code":
            continue
        outputs = []
        for output in cell.outputs:
            is_display = output.output_type in ("display_data", "execute_result")
            if is_display and WIDGET_MIME in output.data:
                continue
            previous = outputs[-1] if outputs else None
            if (output.output_type == "stream" and previous is not None
                    and previous.output_type == "stream" and previous.name == output.name):
                previous.text += output.text
                continue
            outputs.append(output)
        cell.outputs = outputs
    return nb


def solution_version(master_path: Path, execute_cells: bool = True,
                     workdir: Path | None = None) -> NotebookNode:
    nb = solution_source(master_path)
    if execute_cells:
        execute(nb, Path(workdir or REPO_ROOT / SOLUTION_DIR))
        clean_outputs(nb)
        _clean_metadata(nb, read(master_path))
    return nb


# ----------------------------------------------------------------------------- driver

def stamp_rubric(master: Path, log=print) -> None:
    """Write the exercise registry's rubric into ``master`` (points, graded cells' header
    comments, the rubric table: ``autograder.authoring.rubric``) when it differs."""
    from . import rubric

    nb = read(master)
    changes = rubric.stamped(nb, master.stem)
    if changes:
        master.write_text(dumps(nb))
        log(f"{master.name}: stamped from the exercise registry: {', '.join(changes)}")



def generate(masters: Iterable[Path] | None = None, out_root: Path = REPO_ROOT,
             execute_cells: bool = True, log=print) -> list[Path]:
    """Write the student and solution versions of ``masters`` (default: all) under
    ``out_root``; return the paths written."""
    masters = list(find_masters() if masters is None else masters)
    if not masters:
        raise GenerationError(f"no master notebook found under {REPO_ROOT / SOURCE_DIR}")
    written = []
    for master in masters:
        stamp_rubric(master, log)
        check_master_badge(read(master), master.stem)
        student_path, solution_path = output_paths(master, out_root)
        log(f"{master.relative_to(REPO_ROOT) if master.is_relative_to(REPO_ROOT) else master}:")
        student = dumps(student_version(master))
        write_generated(student_path, student, out_root, log)
        log(f"  student version  -> {student_path}")
        solution_path.parent.mkdir(parents=True, exist_ok=True)
        solution = dumps(solution_version(master, execute_cells, workdir=solution_path.parent))
        write_generated(solution_path, solution, out_root, log)
        log(f"  solution version -> {solution_path}" + ("" if execute_cells else " (not executed)"))
        written += [student_path, solution_path]
    return written


# ----------------------------------------------------------------------------- safe writing

def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _record(out_root: Path) -> dict[str, str]:
    path = Path(out_root) / WRITTEN_RECORD
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _committed(path: Path) -> bytes | None:
    """The file's content in git's HEAD, or None (no git, not a repository, not tracked)."""
    try:
        completed = subprocess.run(["git", "show", f"HEAD:./{path.name}"], cwd=path.parent,
                                   capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return completed.stdout if completed.returncode == 0 else None


def is_pristine(path: Path, out_root: Path = REPO_ROOT) -> bool:
    """Whether ``path`` holds only what a generator made: the committed version, or what the
    generator last wrote there. Anything else may be a student's work."""
    current = path.read_bytes()
    key = path.resolve().relative_to(Path(out_root).resolve()).as_posix()
    return _record(out_root).get(key) == _digest(current) or _committed(path) == current


def backup_path(path: Path, out_root: Path = REPO_ROOT) -> Path:
    """A new file in ``backups/`` for a copy of ``path``, named after it and the time."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = Path(out_root) / BACKUP_DIR
    candidate = folder / f"{path.parent.name}-{path.stem}-{stamp}{path.suffix}"
    count = 1
    while candidate.exists():
        count += 1
        candidate = folder / f"{path.parent.name}-{path.stem}-{stamp}-{count}{path.suffix}"
    return candidate


def write_generated(path: Path, text: str, out_root: Path = REPO_ROOT, log=print) -> Path | None:
    """Write the generated ``text`` to ``path``; return the backup made first, if any.

    Nothing is written when ``path`` already holds ``text``. A file with changes that no
    generator made is copied to ``backups/`` before it is replaced, and ``log`` says where.
    """
    path, out_root = Path(path), Path(out_root)
    data = text.encode("utf-8")
    backup = None
    if path.exists() and path.read_bytes() != data:
        if not is_pristine(path, out_root):
            backup = backup_path(path, out_root)
            backup.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, backup)
            log(f"  {path} has changes that `make notebooks` did not make (your work?): "
                f"kept a copy in {backup} before regenerating it")
        _write(path, text)
    elif not path.exists():
        _write(path, text)
    record = _record(out_root)
    record[path.resolve().relative_to(out_root.resolve()).as_posix()] = _digest(data)
    record_path = out_root / WRITTEN_RECORD
    record_path.parent.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return backup


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.authoring.notebooks",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("masters", nargs="*", type=Path,
                        help="master notebooks (default: every source/<name>/<name>.ipynb)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT,
                        help="folder that receives notebooks/ and solutions/ "
                             "(default: the repository)")
    parser.add_argument("--no-execute", action="store_true",
                        help="do not run the solution notebooks (they then have no outputs)")
    args = parser.parse_args(argv)
    masters = [m.resolve() for m in args.masters] or None
    missing = [str(m) for m in masters or () if not m.is_file()]
    if missing:
        sys.exit(f"error: no master notebook {', '.join(missing)}")
    try:
        generate(masters, args.out.resolve(), execute_cells=not args.no_execute)
    except GenerationError as error:
        sys.exit(f"error: {error}")  # on stderr, exit status 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
