"""Grading on a real Dask cluster (``grade --scheduler``), started with the ``distributed``
command-line tools over TCP on localhost: a scheduler, two workers that grade and one worker
without bubblewrap, which must get no job.

One batch of Part 1 (the fastest part): its two wrong demo examples, graded on the cluster while
one of the two grading workers is killed in the middle of a job; the preflight before it grades
the solution and the untouched notebook on the same cluster. The same two examples graded by
the local pool with the same course secret give the same grades, cell by cell; every submission
is graded exactly once into the gradebook, the killed worker's job on the other worker.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import psutil
import pytest

from autograder import REPO_ROOT, cluster, sandbox
from autograder.authoring.examples import examples as demo_examples
from autograder.authoring.examples import release, submission
from autograder.course import CourseError
from autograder.grade import grade
from autograder.verdicts import SECRET_FILE

pytestmark = pytest.mark.grading

ASSIGNMENT = "part1_fusion_strategies"
BATCH = ("wrong_gate_at_one", "wrong_no_residual")  # the preflight grades correct and untouched
KILLED = "wrong_no_residual"  # the worker grading it is killed mid-job
DASK = str(Path(sys.executable).parent / "dask")
START_TIMEOUT_S = 60


def _quiet(*_):
    pass


class LocalCluster:
    """A Dask scheduler and workers as separate processes, started with the ``dask`` CLI."""

    def __init__(self, folder: Path):
        self.folder, self.procs = folder, {}
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}  # the course checkout, as documented
        self.scheduler_file = folder / "scheduler.json"
        self._start("scheduler", [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0",
                                  "--no-dashboard", "--scheduler-file", str(self.scheduler_file)],
                    env)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.scheduler_file.exists():
            assert time.monotonic() < deadline, (folder / "scheduler.log").read_text()
            time.sleep(0.2)
        self.address = json.loads(self.scheduler_file.read_text())["address"]
        from distributed import Client

        self.client = Client(self.address, timeout=START_TIMEOUT_S, set_as_default=False)

    def _start(self, name: str, argv: list[str], env: dict) -> None:
        with open(self.folder / f"{name}.log", "wb") as log:
            self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                                env=env, cwd=REPO_ROOT, start_new_session=True)

    def add_worker(self, name: str, env: dict | None = None) -> str:
        """Start a worker (one job at a time, no nanny: killed, it stays dead); its address."""
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})}
        known = set(self.client.nthreads())
        self._start(name, [DASK, "worker", "--scheduler-file", str(self.scheduler_file),
                           "--nthreads", "1", "--no-nanny", "--no-dashboard", "--name", name,
                           "--local-directory", str(self.folder / name)], env)
        self.client.wait_for_workers(len(known) + 1, timeout=START_TIMEOUT_S)
        (address,) = set(self.client.nthreads()) - known
        return address

    def kill(self, name: str) -> None:
        """SIGKILL a process and everything it started (its grading worker, the kernels)."""
        proc = self.procs[name]
        try:
            tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        except psutil.Error:
            tree = []
        for p in tree:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass
        proc.wait()

    def close(self) -> None:
        self.client.close()
        for name in reversed(list(self.procs)):
            self.kill(name)


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    local = LocalCluster(tmp_path_factory.mktemp("dask"))
    try:
        local.workers = {name: local.add_worker(name) for name in ("w1", "w2")}
        # a worker that cannot build the sandbox: no bwrap on its PATH
        local.workers["nobwrap"] = local.add_worker("nobwrap", {"PATH": "/nonexistent"})
        yield local
    finally:
        local.close()


def _write_batch(folder: Path) -> None:
    masters, released = release(ASSIGNMENT)
    found = demo_examples(ASSIGNMENT)
    folder.mkdir(parents=True)
    for name in BATCH:
        nb = submission(masters[ASSIGNMENT], released[ASSIGNMENT], replace=found[name][0])
        nbformat.write(nb, folder / f"{name}.ipynb")


@pytest.fixture(scope="module")
def batches(dask_cluster, tmp_path_factory):
    """The batch graded on the cluster (one worker killed mid-job), then by the local pool with
    the same course secret."""
    tmp = tmp_path_factory.mktemp("cluster-batch")
    _write_batch(tmp / "submissions")
    on_cluster, lines, outcome = tmp / "on-cluster", [], {}

    def run():
        try:
            outcome["report"] = grade(ASSIGNMENT, tmp / "submissions", on_cluster,
                                      scheduler=dask_cluster.address, cell_timeout=120,
                                      submission_timeout=400, echo=lines.append)
        except BaseException as exc:  # reported by the test
            outcome["error"] = exc

    grading = threading.Thread(target=run)
    grading.start()
    killed = _kill_the_worker_grading(dask_cluster, KILLED, grading)
    grading.join()
    if "error" in outcome:
        raise outcome["error"]

    local = tmp / "local"
    local.mkdir()
    shutil.copy(on_cluster / SECRET_FILE, local / SECRET_FILE)  # the same grading seeds
    grade(ASSIGNMENT, tmp / "submissions", local, workers=2, cell_timeout=120,
          submission_timeout=400, preflight=False, echo=_quiet)
    return {"cluster": on_cluster, "local": local, "killed": killed, "lines": lines,
            "report": outcome["report"]}


def _kill_the_worker_grading(local: LocalCluster, student: str, grading: threading.Thread):
    """Wait until ``student``'s job has run a few seconds on a worker, then kill that worker;
    its (name, address)."""
    deadline = time.monotonic() + 600
    since = None
    while time.monotonic() < deadline and grading.is_alive():
        for address, keys in local.client.processing().items():
            if any(str(key).startswith(f"grade-{student}-") for key in keys):
                since = since or time.monotonic()
                if time.monotonic() - since > 3:  # mid-job: the worker is grading it
                    name = next(n for n, a in local.workers.items() if a == address)
                    local.kill(name)
                    return name, address
        time.sleep(0.2)
    pytest.fail(f"{student}'s job was never seen running on a worker")


def _results(out: Path) -> dict[str, dict]:
    data = json.loads((out / "results.json").read_text())
    names = [s["student"] for s in data["students"]]
    assert len(names) == len(set(names)), names
    return {s["student"]: s for s in data["students"]}


def test_the_cluster_grades_as_the_local_pool_does(batches):
    """Same seeds, same grades: every cell's score and reason, the totals in grades.csv."""
    on_cluster, local = _results(batches["cluster"]), _results(batches["local"])
    assert sorted(on_cluster) == sorted(local) == sorted(BATCH)
    found = demo_examples(ASSIGNMENT)
    for student in BATCH:
        cells = {t["name"]: (t["score"], t["reason"]) for t in on_cluster[student]["tests"]}
        assert cells == {t["name"]: (t["score"], t["reason"]) for t in local[student]["tests"]}
        assert {name for name, (score, _) in cells.items() if score == 0} == set(found[student][1])
    assert (batches["cluster"] / "grades.csv").read_text() == \
        (batches["local"] / "grades.csv").read_text()
    for student in BATCH:  # the coordinator wrote the feedback and the autograded notebooks
        page = batches["cluster"] / "feedback" / student / f"{ASSIGNMENT}.html"
        assert "AssertionError" in page.read_text()
        assert (batches["cluster"] / "course" / "autograded" / student / ASSIGNMENT /
                f"{ASSIGNMENT}.ipynb").is_file()
    # the preflight ran on the cluster first: solution 50/50, untouched 0/50
    assert any(line.startswith("Preflight passed") and "50/50" in line and "0/50" in line
               for line in batches["lines"])


def test_a_killed_worker_loses_nothing_and_nothing_is_graded_twice(batches, dask_cluster):
    """The worker killed in the middle of a job: that job ran again on the other worker; every
    submission is in the gradebook once, graded."""
    name, address = batches["killed"]
    assert dask_cluster.procs[name].poll() is not None  # it is dead
    log = (batches["cluster"] / "logs" / "cluster.log").read_text()
    graded_on = {line.split()[1].rstrip(":"): line.split(" on ")[1].split()[0]
                 for line in log.splitlines() if " graded on " in line}
    survivor = dask_cluster.workers["w1" if name == "w2" else "w2"]
    assert graded_on[KILLED] == survivor != address
    assert set(graded_on) == {*BATCH, "preflight-solution", "preflight-untouched"}
    assert dask_cluster.workers["nobwrap"] not in graded_on.values()
    db = sqlite3.connect(batches["cluster"] / "course" / "gradebook.db")
    rows = db.execute("SELECT student_id, count(*) FROM submitted_assignment "
                      "GROUP BY student_id").fetchall()
    assert sorted(rows) == sorted((student, 1) for student in BATCH)
    results = _results(batches["cluster"])
    assert all(results[s]["status"] == "graded" for s in BATCH)
    assert results[KILLED]["score"] == 42  # wrong_no_residual: bidir_equivalence, 8 points


def test_a_worker_without_bubblewrap_gets_no_job(batches, dask_cluster):
    """It is named in a warning before anything is graded, and the batch goes to the others."""
    nobwrap = dask_cluster.workers["nobwrap"]
    warning = next(line for line in batches["lines"] if nobwrap in line)
    assert "cannot build the sandbox" in warning and "bwrap" in warning
    assert batches["lines"].index(warning) < next(
        i for i, line in enumerate(batches["lines"]) if line.startswith("Releasing"))


def test_a_cluster_where_no_worker_has_bubblewrap_refuses(tmp_path):
    """Before releasing anything: no worker may grade a sandboxed batch."""
    local = LocalCluster(tmp_path)
    try:
        local.add_worker("nobwrap", {"PATH": "/nonexistent"})
        with pytest.raises(CourseError, match=r"(?s)no Dask worker may grade.*bwrap.*--no-sandbox"):
            grade(ASSIGNMENT, tmp_path, tmp_path / "out", scheduler=local.address, echo=_quiet)
    finally:
        local.close()
    assert not (tmp_path / "out" / "course").exists()


def test_a_job_refuses_on_a_worker_without_the_sandbox(monkeypatch):
    """The job itself checks, for a worker that joins after the coordinator's check."""
    monkeypatch.setattr(sandbox, "missing", lambda: "bubblewrap (`bwrap`) is not installed")
    job = {"student": "alice", "assignment": ASSIGNMENT, "sandbox": {"memory_limit": 1}}
    with pytest.raises(cluster.SandboxRefused, match="bwrap"):
        cluster.grade_remotely({}, {}, job, 10)


def test_unpack_refuses_paths_outside_the_shard(tmp_path):
    with pytest.raises(ValueError, match="outside"):
        cluster.unpack({"../escape.txt": b"x"}, tmp_path / "shard")
    assert not (tmp_path / "escape.txt").exists()
    cluster.unpack({"a/b.txt": b"y"}, tmp_path / "shard")
    assert cluster.pack(tmp_path / "shard", ["a"]) == {"a/b.txt": b"y"}
