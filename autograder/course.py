"""nbgrader course directories: create one from source/, collect submissions into it, and
copy one student's share of it into a private "shard" where that submission is graded.

Layout of a course directory (nbgrader's)::

    <root>/nbgrader_config.py           points at autograder/nbgrader_config.py
    <root>/gradebook.db                 the sqlite gradebook
    <root>/source/<assignment>/         the instructor master (copied from the repository)
    <root>/release/<assignment>/        the student version (generate_assignment)
    <root>/downloaded/<assignment>/archive/   what was handed in (a zip, or .ipynb files)
    <root>/submitted/<student>/<assignment>/  collected by zip_collect
    <root>/autograded/..., <root>/feedback/...

A shard is a small course directory for one student: a copy of the gradebook as it is after
generate_assignment, the assignment's source files and that student's submission. Grading in a
shard means that two submissions graded at the same time never write the same sqlite file, and
that nothing a submission does can reach another student's grades.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from nbgrader.plugins.zipcollect import FileNameCollectorPlugin

from . import REPO_ROOT, SOURCE_ROOT, nbgrader_config

IGNORED_FILES = shutil.ignore_patterns(
    ".ipynb_checkpoints", "__pycache__", "*.pyc", ".nbgrader.log"
)


class CourseError(RuntimeError):
    """A step that concerns the whole course failed (not one student's submission)."""


def grading_env(base: dict | None = None) -> dict:
    """Environment for nbgrader and the kernels it starts.

    The repository root goes first on ``PYTHONPATH`` so that the kernel imports this checkout's
    ``autograder`` (the hidden tests) and ``fusionlab``. Tiny models run on one thread (fast and
    deterministic), figures render off-screen. nbgrader itself sets ``NBGRADER_EXECUTION``
    while it executes a notebook.
    """
    env = dict(os.environ if base is None else base)
    env["PATH"] = _path_with_python_tools(env.get("PATH", ""))
    path = [str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(path))
    # the python3 kernel of this environment first, before any user-level kernelspec that could
    # point at another Python
    jupyter_path = [os.path.join(sys.prefix, "share", "jupyter")]
    jupyter_path += [p for p in env.get("JUPYTER_PATH", "").split(os.pathsep) if p]
    env["JUPYTER_PATH"] = os.pathsep.join(dict.fromkeys(jupyter_path))
    env.setdefault("MPLBACKEND", "Agg")
    env.setdefault("FUSIONLAB_NUM_THREADS", "1")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("PYTHONHASHSEED", "0")
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # ipykernel's debugger start-up notice
    return env


def _path_with_python_tools(path: str) -> str:
    """``path`` with this interpreter's scripts folder first: nbgrader runs ``alembic`` by name
    when it creates a gradebook, and a virtual environment need not be activated."""
    tools = str(Path(sys.executable).parent)
    return os.pathsep.join(dict.fromkeys([tools, *[p for p in path.split(os.pathsep) if p]]))


def make_api(root: Path, cell_timeout: int | None = None):
    """An ``NbGraderAPI`` for the course at ``root``, configured by ``nbgrader_config`` only
    (no config file from the working or home directory is read)."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    os.environ["PATH"] = _path_with_python_tools(os.environ.get("PATH", ""))
    config = nbgrader_config.nbgrader_config(root=Path(root).resolve(), cell_timeout=cell_timeout)
    config.Exchange.root = str(Path(root).resolve())  # unused; avoids a warning about the default
    return NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)


def _config_file_text(root: Path, cell_timeout: int | None) -> str:
    return (
        "# Written by `python -m autograder grade`: nbgrader commands run in this folder use\n"
        "# the course settings of autograder/nbgrader_config.py.\n"
        "import sys\n"
        f"sys.path.insert(0, {str(REPO_ROOT)!r})\n"
        "from autograder.nbgrader_config import configure\n"
        f"configure(get_config(), root={str(root)!r}, cell_timeout={cell_timeout!r})\n"
    )


@dataclass
class Course:
    """A course directory with one assignment released in it."""

    root: Path
    assignment: str
    cell_timeout: int | None = None

    @property
    def db_path(self) -> Path:
        return self.root / "gradebook.db"

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.db_path}"

    @property
    def notebooks(self) -> list[str]:
        """Notebook names (without .ipynb) of the released assignment."""
        return sorted(p.stem for p in (self.root / "release" / self.assignment).glob("*.ipynb"))

    def submitted(self, student: str) -> Path:
        return self.root / "submitted" / student / self.assignment

    def autograded(self, student: str) -> Path:
        return self.root / "autograded" / student / self.assignment

    def feedback(self, student: str) -> Path:
        return self.root / "feedback" / student / self.assignment

    def students(self) -> list[str]:
        base = self.root / "submitted"
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if (p / self.assignment).is_dir())


def create_course(
    root: Path, assignment: str, source_root: Path = SOURCE_ROOT, cell_timeout: int | None = None
) -> Course:
    """Create a fresh course directory at ``root`` (anything there is replaced) and release
    ``assignment`` from ``source_root/<assignment>/`` into it."""
    root = Path(root).resolve()
    source = Path(source_root).resolve() / assignment
    if not any(source.glob("*.ipynb")):
        raise CourseError(f"no instructor notebook found in {source}")
    if root.exists():
        shutil.rmtree(root)
    (root / "source").mkdir(parents=True)
    shutil.copytree(source, root / "source" / assignment, ignore=IGNORED_FILES)
    (root / "nbgrader_config.py").write_text(_config_file_text(root, cell_timeout))
    course = Course(root, assignment, cell_timeout)
    result = make_api(root, cell_timeout).generate_assignment(assignment, force=True, create=True)
    if not result["success"]:
        raise CourseError(
            f"nbgrader generate_assignment {assignment} failed:\n{result.get('error') or ''}\n"
            f"{result.get('log') or ''}"
        )
    return course


def collect(course: Course, submissions: Path) -> list[str]:
    """Hand ``submissions`` (a folder of ``<student_id>.ipynb``, or a zip of them as an LMS
    exports it) to ``nbgrader zip_collect``; return the collected student ids."""
    submissions = Path(submissions)
    archive = course.root / "downloaded" / course.assignment / "archive"
    if archive.parent.exists():
        shutil.rmtree(archive.parent)
    archive.mkdir(parents=True)
    if submissions.is_dir():
        for path in sorted(submissions.iterdir()):
            if path.is_file() and path.suffix in (".ipynb", ".zip"):
                shutil.copy(path, archive / path.name)
    elif submissions.is_file() and submissions.suffix in (".zip", ".ipynb"):
        shutil.copy(submissions, archive / submissions.name)
    else:
        raise CourseError(f"{submissions} is neither a folder of .ipynb files nor a .zip file")
    from nbgrader.apps.zipcollectapp import ZipCollectApp
    from nbgrader.coursedir import CourseDirectory

    config = nbgrader_config.nbgrader_config(root=course.root, cell_timeout=course.cell_timeout)
    app = ZipCollectApp(config=config)  # nbgrader zip_collect, without reading config files
    app.log_level = logging.ERROR  # its INFO and WARNING lines narrate folder creation
    app.coursedir = CourseDirectory(parent=app)
    app.coursedir.assignment_id = course.assignment
    app.force = True
    try:
        app.init_plugins()
        app.extract_archive_files()
        app.process_extracted_files()
    except SystemExit as exc:  # nbgrader apps fail() with sys.exit
        raise CourseError(f"nbgrader zip_collect failed (exit {exc.code})") from exc
    students = course.students()
    extracted = archive.parent / "extracted"
    skipped = sorted(
        str(p.relative_to(extracted)) for p in extracted.rglob("*")
        if p.is_file() and (p.suffix != ".ipynb" or "__MACOSX" in p.parts)
    ) if extracted.is_dir() else []
    if skipped:
        print(f"not collected (not a notebook): {', '.join(skipped)}", file=sys.stderr)
    return students


def make_shard(course: Course, student: str, shard_root: Path) -> Course:
    """A private course directory for ``student``: the gradebook as released, the assignment's
    source and release files, and the student's submission."""
    shard_root = Path(shard_root).resolve()
    if shard_root.exists():
        shutil.rmtree(shard_root)
    shard_root.mkdir(parents=True)
    shutil.copy(course.db_path, shard_root / "gradebook.db")
    for kind in ("source", "release"):
        shutil.copytree(
            course.root / kind / course.assignment,
            shard_root / kind / course.assignment,
            ignore=IGNORED_FILES,
        )
    shutil.copytree(
        course.submitted(student), shard_root / "submitted" / student / course.assignment
    )
    return Course(shard_root, course.assignment, course.cell_timeout)


# ----------------------------------------------------------------------------- zip_collect plugin

STUDENT_ID_CHARS = re.compile(r"[^A-Za-z0-9_.@-]+")


def student_id_from(name: str) -> str:
    """A student id nbgrader accepts, from a file or folder name."""
    return STUDENT_ID_CHARS.sub("_", name).strip("._") or "unnamed"


class SubmissionCollector(FileNameCollectorPlugin):
    """Names a submission after its file: ``alice.ipynb`` is alice's copy of the assignment's
    notebook. A file named like the notebook itself (``alice/part1_fusion_strategies.ipynb``,
    the layout of some LMS exports) is named after its folder instead."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._seen: dict[tuple[str, str], str] = {}

    def collect(self, submitted_file: str):
        info = self._identify(Path(submitted_file))
        if info is None:
            return None
        # zip_collect stops the whole collection on a duplicate without timestamps; keep the
        # first file (files come sorted by path) and say so instead
        key = (info["student_id"], info["file_id"])
        if key in self._seen:
            print(f"duplicate submission for {info['student_id']}: kept {self._seen[key]}, "
                  f"skipped {submitted_file}", file=sys.stderr)
            return None
        self._seen[key] = submitted_file
        return info

    def _identify(self, path: Path):
        if path.suffix not in self.valid_ext or "__MACOSX" in path.parts:
            return None
        coursedir = self.parent.coursedir
        release = Path(coursedir.root) / "release" / coursedir.assignment_id
        notebooks = sorted(p.name for p in release.glob("*.ipynb"))
        if path.name in notebooks:
            return {"student_id": student_id_from(path.parent.name), "file_id": path.name}
        if len(notebooks) != 1:
            self.log.warning(
                "Skipping %s: the assignment has several notebooks, so submissions must be "
                "<student_id>/<notebook>.ipynb", path
            )
            return None
        return {"student_id": student_id_from(path.stem), "file_id": notebooks[0]}
