"""The sandbox of the submissions' kernels (autograder/sandbox.py), end to end.

One batch of the toy course (tests/grading/toy_course.py, no torch, fast) is graded with the
sandbox: a probe that reports from inside its kernel what it can reach, one hostile submission
per category (each on top of a known implementation, so its honest grade is known), and
bystanders whose grades must not move. The tests then check the grades, grades.csv, every
feedback page, the files the hostile code aimed at, and that none of its processes survived.

These tests never skip: CI installs bubblewrap (.ci/run). Without it they fail and say so.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import psutil
import pytest

from autograder import sandbox
from autograder.authoring.examples import release, submission
from autograder.course import REPO_ROOT, CourseError
from autograder.grade import grade
from autograder.report import NO_SANDBOX_WARNING, format_summary

sys.path.insert(0, str(Path(__file__).parents[1] / "grading"))
import toy_course  # noqa: E402

pytestmark = pytest.mark.grading

# in the command line of every process a hostile kernel starts
MARKER, SLEEP = "h1sandboxmarker", "7771.25"
VICTIM_SECRET = "victim-secret-5d41402a"  # only in the victim's notebook
# lines of the toy's hidden test (its verdict may name the inputs: "add(2.5, 2.5) gave 4")
HIDDEN_CODE = ("assert add(2.5, 2.5)", "assert add(-1, 1)", "BEGIN HIDDEN TESTS")
MEMORY_LIMIT = 256 * 2**20  # small, so the memory hog stays cheap on a shared machine
CORRECT, WRONG = toy_course.CORRECT, toy_course.WRONG  # honest grades 5 and 2


def _cwd_parents():
    """Source shared by the hostile cells: the paths a student can work out from the public
    repository and the kernel's working directory (out/course/.shards/S/autograded/S/toy)."""
    return textwrap.dedent("""\
        import os, pathlib
        here = pathlib.Path.cwd()
        shard, course, out = here.parents[2], here.parents[4], here.parents[5]
        import importlib.util
        package = pathlib.Path(importlib.util.find_spec('fusionlab').submodule_search_locations[0])
        repo = package.parent
        def attempt(what, fn):
            try:
                result = fn()
                print(what, 'SUCC' + 'EEDED', str(result)[:2000])
            except Exception as exc:
                print(what, 'refused:', type(exc).__name__)
        """)


PROBE = _cwd_parents() + textwrap.dedent("""\
    import json, socket, subprocess, sys
    found = {}
    found['repo_entries'] = sorted(os.listdir(repo)) if repo.exists() else []
    paths = {
        'source': repo / 'source', 'solutions': repo / 'solutions',
        'autograder': repo / 'autograder', 'hidden': repo / 'autograder' / 'hidden',
        'course_gradebook': course / 'gradebook.db', 'shard_gradebook': shard / 'gradebook.db',
        'course_source': course / 'source', 'shard_source': shard / 'source',
        'submitted': course / 'submitted', 'other_shard': course / '.shards' / 'victim',
        'out': out / 'logs', 'host_secret': pathlib.Path(HOST_SECRET),
    }
    found['visible'] = sorted(k for k, p in paths.items() if p.exists())
    found['cwd'] = str(here)
    found['shards'] = sorted(os.listdir(course / '.shards'))  # only the path to its own folder
    found['cwd_entries'] = sorted(os.listdir('.'))
    found['interfaces'] = [name for _, name in socket.if_nameindex()]
    def connect(addr):
        s = socket.socket(); s.settimeout(2)
        try:
            s.connect(addr); return 'connected'
        except OSError as exc:
            return type(exc).__name__
        finally:
            s.close()
    found['grader_port'] = connect(('127.0.0.1', GRADER_PORT))
    found['internet'] = connect(('1.1.1.1', 53))
    def command(pid):
        try:
            with open(f'/proc/{pid}/cmdline', 'rb') as f:
                return f.read().replace(b'\\0', b' ').decode(errors='replace')[:200]
        except OSError:
            return '(gone)'
    found['processes'] = sorted(command(p) for p in os.listdir('/proc') if p.isdigit())
    try:
        open(package / 'probe.txt', 'w')
        found['fusionlab_writable'] = True
    except OSError:
        found['fusionlab_writable'] = False
    found['home'] = os.environ.get('HOME')
    found['env_keys'] = sorted(os.environ)
    subprocess.Popen(['sleep', 'SLEEP'])
    subprocess.Popen([sys.executable, '-c', 'import os, time\\nif os.fork() == 0:\\n'
                      '    os.setsid()\\n    if os.fork() == 0:\\n'
                      '        time.sleep(300)  # MARKER'])
    print('PROBE', json.dumps(found))
    """).replace("MARKER", MARKER).replace("SLEEP", SLEEP)

# name -> (what it implements, the hostile code run after it)
HOSTILE = {
    "leak": (CORRECT, """\
        for path in [repo / 'source', repo / 'autograder' / 'hidden', course / 'source' / 'toy' /
                     'toy.ipynb', shard / 'source' / 'toy' / 'toy.ipynb',
                     course / 'submitted' / 'victim' / 'toy' / 'toy.ipynb',
                     course / '.shards' / 'victim' / 'submitted' / 'victim' / 'toy' / 'toy.ipynb']:
            attempt(f'read {path}', lambda: path.read_text() if path.is_file()
                    else os.listdir(path))
        """),
    "gradebook": (WRONG, """\
        import sqlite3
        for db in [shard / 'gradebook.db', course / 'gradebook.db']:
            def tamper(db=db):
                con = sqlite3.connect(f'file:{db}?mode=rw', uri=True)
                con.execute("update grade set auto_score = 3")
                con.execute("create trigger evil after update on grade begin "
                            "update grade set auto_score = 0; end")
                con.commit()
            attempt(f'tamper {db}', tamper)
        """),
    "overwrite": (WRONG, """\
        import json
        blank = json.dumps({'cells': [], 'metadata': {}, 'nbformat': 4, 'nbformat_minor': 5})
        for path in [course / 'submitted' / 'victim' / 'toy' / 'toy.ipynb',
                     course / '.shards' / 'victim' / 'submitted' / 'victim' / 'toy' / 'toy.ipynb',
                     course / '.shards' / 'victim' / 'autograded' / 'victim' / 'toy' /
                     'toy.ipynb']:
            attempt(f'overwrite {path}', lambda: path.write_text(blank))
        """),
    "killer": (CORRECT, """\
        import signal, subprocess
        os.kill(os.getppid(), signal.SIGKILL)
        subprocess.run(['pkill', '-9', '-f', 'autograder|pytest|jupyter'])
        mine = {int(t) for t in os.listdir('/proc/self/task')}  # its own threads
        for pid in range(1, 1 << 15):  # everything it can see but itself
            if pid not in mine:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        """),
    "persistent": (WRONG, """\
        import subprocess, sys
        daemon = f'''
        import os, time, pathlib
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                for _ in range(600):  # MARKER: rewrite the grades after the kernel is gone
                    for f in [{str(out / 'grades.csv')!r}, {str(course / 'gradebook.db')!r}]:
                        try:
                            pathlib.Path(f).write_text('student,score\\\\nvictim,0\\\\n')
                        except OSError:
                            pass
                    time.sleep(0.1)
        '''
        subprocess.Popen([sys.executable, '-c', daemon])
        """),
    "site_packages": (CORRECT, """\
        import site
        for folder in site.getsitepackages():
            attempt('drop a .pth', lambda: (pathlib.Path(folder) / 'zz_evil.pth').write_text(
                "import os; os.environ['EVIL'] = '1'\\n"))
        init = package / '__init__.py'
        attempt('patch fusionlab', lambda: init.write_text(init.read_text() + '\\nEVIL = 1\\n'))
        """),
    "memory_hog": (CORRECT, """\
        hoard = []
        while True:
            hoard.append(bytearray(32 * 2**20))
        """),
    "fork_bomb": (CORRECT, """\
        import subprocess
        children = []
        try:
            while len(children) < 5000:
                children.append(subprocess.Popen(['sleep', 'SLEEP']))
        except OSError as exc:
            print('fork refused after', len(children), type(exc).__name__)
        """),
}
# expected scores: the honest grade of what each implements; the memory hog's kernel is killed
EXPECTED = {"victim": 5.0, "bystander": 2.0, "probe": 5.0, "leak": 5.0, "gradebook": 2.0,
            "overwrite": 2.0, "killer": 5.0, "persistent": 2.0, "site_packages": 5.0,
            "memory_hog": 0.0, "fork_bomb": 5.0}


def _tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path).encode() + path.read_bytes())
    return digest.hexdigest()


def _marked_processes(out: Path) -> list[str]:
    """Processes started by the batch's kernels (the sandboxes' command lines name ``out``)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if MARKER in cmdline or SLEEP in cmdline or str(out) in cmdline:
            found.append(f"{proc.pid}: {cmdline[:120]}")
    return found


def _require_sandbox():
    problem = sandbox.missing()
    if problem:
        pytest.fail(f"the sandbox cannot be built on this machine: {problem}. CI installs "
                    "bubblewrap (.ci/run); locally: apt-get install bubblewrap")


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """Grade the probe, the hostile submissions and the bystanders in one sandboxed batch."""
    _require_sandbox()
    source = toy_course.write_source(tmp_path_factory.mktemp("sandbox-source"))
    masters, released = release(toy_course.ASSIGNMENT, source)
    master, student = masters[toy_course.ASSIGNMENT], released[toy_course.ASSIGNMENT]
    host_secret = tmp_path_factory.mktemp("host") / "secret.txt"
    host_secret.write_text("host secret")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    sources = {
        "victim": f"{CORRECT}\n# {VICTIM_SECRET}",
        "bystander": WRONG,
        "probe": CORRECT + "\n" + PROBE.replace("HOST_SECRET", repr(str(host_secret)))
        .replace("GRADER_PORT", str(listener.getsockname()[1])),
    }
    for name, (implementation, code) in HOSTILE.items():
        sources[name] = (implementation + "\n" + _cwd_parents()
                         + textwrap.dedent(code).replace("MARKER", MARKER)
                         .replace("SLEEP", SLEEP))
    folder = tmp_path_factory.mktemp("sandbox-submissions")
    for name, code in sources.items():
        nb = submission(master, student, replace={"add_solution": code}, solved=False)
        nbformat.write(nb, folder / f"{name}.ipynb")
    site_packages = Path(psutil.__file__).parents[1]
    before = {"fusionlab": _tree_digest(REPO_ROOT / "fusionlab"),
              "site": sorted(p.name for p in site_packages.iterdir())}
    out = tmp_path_factory.mktemp("sandbox-out")
    report = grade(toy_course.ASSIGNMENT, folder, out, source_root=source, workers=2,
                   cell_timeout=20, submission_timeout=120, memory_limit=MEMORY_LIMIT,
                   echo=lambda *a: None)
    listener.close()
    time.sleep(1.5)  # give a surviving daemon time to strike
    after = {"fusionlab": _tree_digest(REPO_ROOT / "fusionlab"),
             "site": sorted(p.name for p in site_packages.iterdir())}
    return {"report": report, "out": out, "before": before, "after": after,
            "grades_csv": (out / "grades.csv").read_text(), "survivors": _marked_processes(out)}


def _probe(batch) -> dict:
    path = batch["out"] / "course" / "autograded" / "probe" / "toy" / "toy.ipynb"
    for cell in nbformat.read(path, as_version=4).cells:
        for output in cell.get("outputs", []):
            for line in output.get("text", "").splitlines():
                if line.startswith("PROBE "):
                    return json.loads(line[len("PROBE "):])
    raise AssertionError(f"the probe printed nothing; see {path}")


def test_probe_sees_nothing_of_the_course(batch):
    found = _probe(batch)
    assert found["visible"] == [], f"visible from the kernel: {found['visible']}"
    assert set(found["repo_entries"]) <= {".venv", "fusionlab"}, found["repo_entries"]
    # the notebook, the released exercise module, the one folder it may write results to
    assert found["cwd_entries"] == ["evidence", "toy.ipynb", "toy_exercises.py"]
    assert found["shards"] == ["probe"]
    assert found["cwd"].endswith("autograded/probe/toy")
    assert found["fusionlab_writable"] is False
    assert found["home"] == sandbox.SANDBOX_HOME


def test_probe_has_no_network(batch):
    found = _probe(batch)
    assert found["interfaces"] == ["lo"]
    assert found["grader_port"] == "ConnectionRefusedError"
    assert found["internet"] != "connected"


def test_probe_sees_only_its_own_processes(batch):
    processes = _probe(batch)["processes"]
    assert len(processes) <= 6, processes  # bwrap's init, the kernel, its children, the probe
    assert not any("pytest" in p or "autograder.worker" in p for p in processes), processes


def test_no_process_survives_the_job(batch):
    assert batch["survivors"] == []


def test_every_grade_is_the_honest_grade(batch):
    scores = {s.student: s.score for s in batch["report"].students}
    assert scores == EXPECTED


def test_grades_csv_is_the_graders(batch):
    rows = {line.split(",")[3]: float(line.split(",")[-2])
            for line in batch["grades_csv"].splitlines()[1:]}
    assert rows == EXPECTED
    assert (batch["out"] / "grades.csv").read_text() == batch["grades_csv"]  # not rewritten


def test_no_feedback_leaks(batch):
    pages = sorted((batch["out"] / "feedback").glob("*/*.html"))
    assert {p.parent.name for p in pages} == set(EXPECTED)
    for page in pages:
        text = page.read_text()
        leaks = [m for m in HIDDEN_CODE if m in text]
        if page.parent.name != "victim":
            leaks += [VICTIM_SECRET] if VICTIM_SECRET in text else []
        assert not leaks, f"{page} contains {leaks}"
        assert "SUCCEEDED" not in text, f"{page}: a hostile action succeeded"


def test_installed_packages_are_untouched(batch):
    assert batch["after"] == batch["before"]


def test_limits_give_a_clear_reason(batch):
    by = batch["report"].by_student()
    hog = by["memory_hog"]  # its TODO cell hoards memory in the clean room too: 0 points
    assert hog.score == 0 and hog.sandbox["oom_kills"] >= 1
    assert any("the kernel ran out of its 256 MiB memory limit" in f for f in hog.flags)
    assert all("clean room ran out of its memory limit" in t.reason for t in hog.tests)
    bomb = by["fork_bomb"]
    assert any("limit of 256 processes" in flag for flag in bomb.flags), bomb.flags
    assert by["victim"].flags == [] and by["victim"].sandbox["oom_kills"] == 0


def test_results_json_records_the_sandbox(batch):
    data = json.loads((batch["out"] / "results.json").read_text())
    assert data["sandbox"] is True and "warning" not in data
    limits = {s["student"]: s["sandbox"]["memory_limit"] for s in data["students"]}
    assert set(limits.values()) == {MEMORY_LIMIT}


def _leftovers() -> set[str]:
    """Sandbox folders and cgroups of workers that no longer run."""
    paths = list(Path("/tmp").glob("agsb-*-*"))
    paths += [d for g in sandbox.Cgroups.existing("agsb-*-*") for d in g.dirs]
    return {str(p) for p in paths if not psutil.pid_exists(int(p.name.split("-")[1]))}


def test_a_killed_worker_leaves_no_sandbox_behind(tmp_path):
    """A submission that overruns --submission-timeout: its worker is killed, and with it the
    kernel's processes, cgroups and folders."""
    _require_sandbox()
    before = _leftovers()
    source = toy_course.write_source(tmp_path / "source")
    folder = tmp_path / "subs"
    toy_course.write_submissions(folder, source, names=("hang",))
    report = grade(toy_course.ASSIGNMENT, folder, tmp_path / "out", source_root=source,
                   workers=1, cell_timeout=60, submission_timeout=8, preflight=False,
                   echo=lambda *a: None)
    assert "longer than 8 s" in report.by_student()["hang"].reason
    assert _leftovers() - before == set()
    assert _marked_processes(tmp_path / "out") == []


# ----------------------------------------------------------------------------- without it

def test_grade_refuses_without_the_sandbox(tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox, "missing", lambda: "bubblewrap (`bwrap`) is not installed")
    with pytest.raises(CourseError, match="bwrap.*not installed.*--no-sandbox"):
        grade(toy_course.ASSIGNMENT, tmp_path, tmp_path / "out", echo=lambda *a: None)


def test_no_sandbox_grades_with_a_warning(tmp_path):
    source = toy_course.write_source(tmp_path / "source")
    folder = tmp_path / "subs"
    toy_course.write_submissions(folder, source, names=("correct",))
    report = grade(toy_course.ASSIGNMENT, folder, tmp_path / "out", source_root=source,
                   workers=1, cell_timeout=20, use_sandbox=False, echo=lambda *a: None)
    assert report.by_student()["correct"].score == toy_course.MAX_SCORE
    assert NO_SANDBOX_WARNING in format_summary(report)
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert data["sandbox"] is False and data["warning"] == NO_SANDBOX_WARNING


# ----------------------------------------------------------------------------- units

def test_parse_and_format_sizes():
    assert sandbox.parse_bytes("4G") == 4 * 2**30 == sandbox.parse_bytes("4GiB")
    assert sandbox.parse_bytes("512M") == 512 * 2**20
    assert sandbox.parse_bytes("1000") == 1000
    assert sandbox.format_bytes(4 * 2**30) == "4 GiB"
    with pytest.raises(ValueError, match="not a size"):
        sandbox.parse_bytes("lots")


def test_evidence_is_copied_as_plain_files_only(tmp_path):
    source, dest = tmp_path / "scratch" / "evidence", tmp_path / "workdir" / "evidence"
    (source / "sub").mkdir(parents=True)
    (source / "a.json").write_text("{}")
    (source / "sub" / "b.npz").write_bytes(b"x" * 10)
    (source / "link").symlink_to("/etc/hostname")
    (source / "dirlink").symlink_to(tmp_path)
    assert sandbox.copy_plain_files(source, dest) == 2
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == \
        ["a.json", "sub", "sub/b.npz"]
    assert sandbox.copy_plain_files(source, dest, max_bytes=5) == 1  # a.json only


def test_a_checkout_under_tmp_stays_visible_in_the_sandbox(tmp_path, monkeypatch):
    """bwrap mounts in order: the sandbox's private /tmp must not hide a venv or a fusionlab
    that live under the host's /tmp (a CI clone can be there). tmp_path is under /tmp."""
    package = tmp_path / "checkout" / "fusionlab"
    package.mkdir(parents=True)
    (package / "marker.txt").write_text("visible")
    monkeypatch.setattr(sandbox, "package_roots", lambda: [str(package)])
    scratch, ipc = tmp_path / "scratch", tmp_path / "ipc"
    scratch.mkdir()
    ipc.mkdir()
    argv = sandbox.bwrap_argv(["/usr/bin/cat", str(package / "marker.txt")],
                              workdir=str(tmp_path / "work"), scratch=str(scratch),
                              ipc_dir=str(ipc))
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert completed.stdout == "visible", completed.stderr


def test_the_sandbox_imports_the_fusionlab_the_grader_mounted(tmp_path, monkeypatch):
    """A clone graded with another checkout's venv: the venv's editable install points at a
    folder the sandbox does not mount, so the kernel must find the mounted package itself."""
    package = tmp_path / "clone" / "fusionlab"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("WHERE = 'the clone'\n")
    (tmp_path / "clone" / "secret.txt").write_text("not for the kernel")
    monkeypatch.setattr(sandbox, "package_roots", lambda: [str(package)])
    scratch, ipc = tmp_path / "scratch", tmp_path / "ipc"
    scratch.mkdir()
    ipc.mkdir()
    probe = ("import fusionlab, os; print(fusionlab.WHERE, "
             f"os.path.exists({str(tmp_path / 'clone' / 'secret.txt')!r}))")
    argv = sandbox.bwrap_argv([sys.executable, "-c", probe], workdir=str(tmp_path / "work"),
                              scratch=str(scratch), ipc_dir=str(ipc))
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert completed.stdout.strip() == "the clone False", completed.stderr
