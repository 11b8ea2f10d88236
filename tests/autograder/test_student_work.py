"""Students' work is sacred: no documented command overwrites a notebook a student may have
edited.

A student works in ``work/`` (``make lab`` copies the released notebooks there, once); an
instructor's ``make demo`` writes only under ``grading-output/``; a maintainer's
``make notebooks`` copies an edited ``notebooks/`` or ``solutions/`` file to ``backups/`` before
regenerating it. The end-to-end test runs the README's commands with ``make`` in a fresh clone
of this checkout, after a student has edited all three places.
"""

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import psutil
import pytest

from autograder.authoring import notebooks as generator

REPO = generator.REPO_ROOT
NAME = "part1_fusion_strategies"
DEMO_ASSIGNMENT = NAME
STUDENT_EDIT = "# my answer, written in the notebook\nx = 42\n"


def tracked_copy(destination: Path) -> Path:
    """A fresh clone of this checkout's files as they are (committed or not), with one commit,
    as a student has after `git clone`."""
    files = _git(["ls-files", "-z", "--cached", "--others", "--exclude-standard"], REPO)
    for name in filter(None, files.decode().split("\0")):
        source = REPO / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    _git(["init", "-q"], destination)
    _git(["add", "-A"], destination)
    _git(["commit", "-q", "-m", "clone"], destination)
    return destination


def _git(args: list[str], cwd: Path) -> bytes:
    """git's output; an author for the commit, nothing read from stdin, two minutes at most."""
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
                          cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, check=True,
                          timeout=120).stdout


def edit_notebook(path: Path) -> bytes:
    """Fill the first solution cell and run nothing: what a student saves. Returns the bytes."""
    nb = nbformat.read(str(path), as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")
                or c.get("id") == "bidirectional_solution")
    cell.source = STUDENT_EDIT + cell.source
    nbformat.write(nb, str(path))
    return path.read_bytes()


MAKE_TIMEOUT_S = 900  # `make demo` grades Part 1's examples: about 80 s on a 2-core machine


def make(clone: Path, *targets: str, **variables: str) -> str:
    """`make TARGETS` in ``clone`` with this checkout's venv (never reinstalled). Past
    MAKE_TIMEOUT_S, make and every process it started (the grading workers and their kernels
    run in sessions of their own) are killed, and the test fails with the output so far."""
    venv = Path(sys.prefix)
    command = ["make", "-C", str(clone), f"VENV={venv}", "-o", str(venv / ".installed"),
               *targets, *(f"{key}={value}" for key, value in variables.items())]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    with subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env=env) as process:
        try:
            output, _ = process.communicate(timeout=MAKE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            for proc in [*psutil.Process(process.pid).children(recursive=True), process]:
                with contextlib.suppress(psutil.Error, OSError):
                    proc.kill()
            try:
                output, _ = process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                output = "(the output pipe stayed open)"
            pytest.fail(f"`make {' '.join(targets)}` ran past {MAKE_TIMEOUT_S} s:\n"
                        + output[-4000:])
    assert process.returncode == 0, output[-8000:]
    return output


def digests(root: Path, skip: tuple[str, ...]) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in root.rglob("*")
        if path.is_file() and not path.relative_to(root).as_posix().startswith(skip)
        and "__pycache__" not in path.parts
    }


# ----------------------------------------------------------------------------- unit


def test_write_generated_writes_new_and_pristine_files_and_backs_up_edited_ones(tmp_path):
    target = tmp_path / "notebooks" / "a.ipynb"
    logs = []
    assert generator.write_generated(target, "v1\n", tmp_path, logs.append) is None
    assert target.read_text() == "v1\n"
    mtime = target.stat().st_mtime_ns
    generator.write_generated(target, "v1\n", tmp_path, logs.append)  # unchanged: not rewritten
    assert target.stat().st_mtime_ns == mtime
    # what the generator last wrote is pristine: replaced without a backup
    assert generator.write_generated(target, "v2\n", tmp_path, logs.append) is None
    assert target.read_text() == "v2\n" and not (tmp_path / "backups").exists() and not logs
    # a student's edit is kept in backups/ and the log says where
    target.write_text("v2 and my work\n")
    backup = generator.write_generated(target, "v3\n", tmp_path, logs.append)
    assert backup is not None and backup.parent == tmp_path / generator.BACKUP_DIR
    assert backup.read_text() == "v2 and my work\n" and target.read_text() == "v3\n"
    assert len(logs) == 1 and str(backup) in logs[0] and "your work" in logs[0]
    # a second edit gets a second backup, never overwriting the first
    target.write_text("more work\n")
    second = generator.write_generated(target, "v4\n", tmp_path, logs.append)
    assert second != backup and second.read_text() == "more work\n"
    assert backup.read_text() == "v2 and my work\n"


def test_committed_version_is_pristine(tmp_path):
    clone = tmp_path / "clone"
    (clone / "notebooks").mkdir(parents=True)
    target = clone / "notebooks" / "a.ipynb"
    target.write_text("committed\n")
    _git(["init", "-q"], clone)
    _git(["add", "-A"], clone)
    _git(["commit", "-q", "-m", "c"], clone)
    assert generator.is_pristine(target, clone)
    target.write_text("committed, then edited\n")
    assert not generator.is_pristine(target, clone)


# ----------------------------------------------------------------------------- end to end


@pytest.mark.grading
def test_readme_commands_keep_every_student_edit(tmp_path):
    clone = tracked_copy(tmp_path / "clone")
    student, solution = clone / "notebooks" / f"{NAME}.ipynb", clone / "solutions" / f"{NAME}.ipynb"
    released = student.read_bytes()

    # student: `make lab` starts with `make workspace`, a copy of each notebook in work/
    out = make(clone, "workspace")
    work = clone / "work" / f"{NAME}.ipynb"
    assert work.read_bytes() == released and "copied" in out
    edited_work = edit_notebook(work)
    out = make(clone, "workspace")  # again, as every `make lab` does
    assert work.read_bytes() == edited_work and "kept your work/" in out

    # a student who worked in notebooks/ and solutions/ directly, against the README's advice
    edited_student, edited_solution = edit_notebook(student), edit_notebook(solution)

    # instructor: `make demo` writes under grading-output/ only. Every assignment goes through
    # the same writing code, so one (DEMO_ASSIGNMENTS, documented in the README) stands for all:
    # grading every example again here would double the suite's longest grading batches.
    before = digests(clone, skip=("grading-output/", ".git/"))
    make(clone, "demo", DEMO_ASSIGNMENTS=DEMO_ASSIGNMENT)
    assert sorted(p.name for p in (clone / "grading-output").iterdir()) == [DEMO_ASSIGNMENT]
    assert (clone / "grading-output" / DEMO_ASSIGNMENT / "grades.csv").exists()
    assert digests(clone, skip=("grading-output/", ".git/")) == before

    # maintainer: `make notebooks` regenerates, after keeping the edits in backups/
    out = make(clone, "notebooks", NOTEBOOKS_ARGS="--no-execute")
    backups = sorted((clone / "backups").iterdir())
    assert sorted(b.read_bytes() for b in backups) == sorted([edited_student, edited_solution])
    for backup in backups:
        assert f"kept a copy in {backup}" in out
    assert student.read_bytes() == released  # the released version again
    assert work.read_bytes() == edited_work
