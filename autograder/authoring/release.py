"""The student-facing copy of the course, for courses that grade for credit.

    python -m autograder release --out DIR

The public repository holds the instructor masters (``source/``), the solutions
(``solutions/``) and the hidden tests (``autograder/hidden``): fine for self-study, not for a
graded course. ``release`` writes what students need and nothing else: the student notebooks
(``notebooks/``, as ``make notebooks`` generated them), the ``fusionlab`` package and the files
that ``pip install -e .`` needs (``pyproject.toml``, ``README.md``, ``LICENSE`` when there is
one, ``environment.yml``). Publish DIR as the students' repository.

``DIR`` must not exist or be empty: the command never writes over a folder that may hold a
student's work.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..course import REPO_ROOT, CourseError

RELEASED_DIRS = ("notebooks", "fusionlab")
RELEASED_FILES = ("pyproject.toml", "README.md", "LICENSE", "environment.yml")
NEVER_RELEASED = ("source", "solutions", "autograder", "tests", "benchmarks")


def write_release(out: Path, repo_root: Path = REPO_ROOT) -> list[Path]:
    """Write the student-facing copy of ``repo_root`` into ``out``; return the top-level paths
    written. Refuses (``CourseError``) when ``out`` exists and is not an empty folder."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CourseError(f"{out} exists and is not empty: the release is written only into a "
                          "new or empty folder, so that no student's work is overwritten")
    missing = [name for name in RELEASED_DIRS if not (repo_root / name).is_dir()]
    if missing:
        raise CourseError(f"{', '.join(missing)} missing in {repo_root} (run `make notebooks`)")
    out.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "*.pyc", "*.egg-info")
    written = []
    for name in RELEASED_DIRS:
        shutil.copytree(repo_root / name, out / name, ignore=ignore)
        written.append(out / name)
    for name in RELEASED_FILES:
        if (repo_root / name).is_file():
            shutil.copy2(repo_root / name, out / name)
            written.append(out / name)
    return written


__all__ = ["write_release"]
