"""Grading on a Dask cluster: ``python -m autograder grade ... --scheduler tcp://HOST:PORT``.

The coordinator (the ``grade`` command) does everything it does with the local pool (release,
intake, scan, gradebook, feedback, report); only the grading jobs go to the cluster's workers,
through Dask ``distributed`` (the same cluster can be local processes, Slurm through
dask-jobqueue, or Kubernetes through dask-kubernetes).

A job is a pure function, ``grade_remotely``:

- in: the release bundle (the assignment's ``source/`` and ``release/`` folders and the
  gradebook as released: the same for every submission, sent once per worker as the result of
  one small task, so that a worker that dies takes nothing with it that cannot be recomputed),
  the submission's bytes and its job settings (seeds, time and memory limits);
- out: the autograded notebook, the verdicts (the shard's gradebook, where the worker wrote
  them) and the feedback page nbgrader built, the logs.

On the worker the job runs exactly as in the local pool: in a private shard (a temporary course
directory), through an ``autograder.worker`` process (``autograder.pool.Worker``: the job's
wall-clock limit, the kernel in the sandbox, the clean room). A worker that cannot build the
sandbox refuses the job (unless the grade runs with ``--no-sandbox``); the coordinator then
sends it to the workers that can, and refuses the batch when none can.

Only the coordinator writes the course: it puts each answer's files into the submission's shard
on its own disk, and ``autograder.grade`` merges the shard into the gradebook, writes the
feedback, ``results.json`` and ``grades.csv``, exactly as for the local pool. Each submission is
one Dask task with its own key: when a worker dies, the scheduler runs its tasks again on
another worker, and the coordinator takes the first answer of each submission only, so none is
graded twice into the gradebook. A submission whose job kills worker after worker (Dask's
``allowed-failures``) scores 0, "the grading process died", like a worker death in the pool.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from . import REPO_ROOT
from .course import CourseError
from .report import first_line

CONNECT_TIMEOUT_S = 30
WORKER_WAIT_S = 120  # how long the coordinator waits for the first worker to join
# submissions in flight at once, per worker thread: enough to keep every worker busy, few
# enough that the scheduler holds only a window of the batch's bytes
IN_FLIGHT_PER_THREAD = 2
BUNDLE_PARTS = ("source", "release")  # + gradebook.db
RETURNED_PARTS = ("autograded", "feedback")  # + gradebook.db; never the kernel's evidence/


class SandboxRefused(RuntimeError):
    """A worker that cannot build the sandbox refuses a sandboxed job."""


# ----------------------------------------------------------------------------- on the worker

_local_workers: dict[int, object] = {}  # thread id -> autograder.pool.Worker
_local_lock = threading.Lock()


def probe() -> dict:
    """What the coordinator checks on every worker before it sends a job: can it build the
    sandbox, and does it run the same course code (autograder, fusionlab, hidden references)."""
    from . import sandbox

    return {"sandbox_missing": sandbox.missing(), "code": code_digest()}


def code_digest() -> str:
    """A digest of the course code a worker grades with: ``autograder/`` (its trusted references
    included) and ``fusionlab/`` (the exercises and checks): two machines grade alike only if
    they agree."""
    digest = hashlib.sha256()
    for package in ("autograder", "fusionlab"):
        for path in sorted((REPO_ROOT / package).rglob("*")):
            if path.suffix in (".py", ".npz", ".j2") and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(REPO_ROOT)).encode() + b"\0")
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):  # called outside a Dask worker (the tests do)
        return "this process"


def _local_worker():
    """This thread's ``autograder.worker`` process (started once, replaced when it dies)."""
    from .pool import Worker

    key = threading.get_ident()
    with _local_lock:
        if key not in _local_workers:
            home = Path(tempfile.mkdtemp(prefix="autograder-dask-"))
            _local_workers[key] = Worker(home, home / "worker.log").spawn()
        return _local_workers[key]


def unpack(files: dict[str, bytes], root: Path) -> None:
    """Write ``files`` (relative path -> bytes) under ``root``, refusing any path that leaves it."""
    root = Path(root).resolve()
    for name, data in files.items():
        path = (root / name).resolve()
        if root not in path.parents:
            raise ValueError(f"refusing to write {name!r} outside {root}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def pack(root: Path, parts, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    """The files under ``root/<part>`` for each part (a folder or a file), as relative path ->
    bytes; plain files only, ``skip`` names folders left out."""
    root, files = Path(root), {}
    for part in parts:
        base = root / part
        paths = [base] if base.is_file() else sorted(base.rglob("*")) if base.is_dir() else []
        for path in paths:
            relative = path.relative_to(root)
            if path.is_file() and not path.is_symlink() and not set(relative.parts) & set(skip):
                files[relative.as_posix()] = path.read_bytes()
    return files


def receive(answer: dict, shard: Path, student: str) -> dict:
    """On the coordinator: an answer's files written into the submission's shard (replacing
    what an earlier attempt left there); the answer without them."""
    files = answer.pop("files", {})
    for part in RETURNED_PARTS:
        shutil.rmtree(shard / part / student, ignore_errors=True)
    unpack(files, shard)
    return answer


def grade_remotely(bundle: dict[str, bytes], submission: dict[str, bytes], job: dict,
                   timeout: float) -> dict:
    """One submission's grading job on a Dask worker (a pure function of its inputs).

    ``bundle`` and ``submission`` are files (relative path -> bytes) of a shard; ``job`` is the
    pool's job (``autograder.worker``) without its ``root``. Returns the worker's answer with
    ``files``: the shard's gradebook, autograded notebook and feedback."""
    from . import sandbox
    from .pool import run_jobs

    if job.get("sandbox") is not None and sandbox.missing():
        raise SandboxRefused(f"{_worker_address()} cannot build the sandbox: {sandbox.missing()}")
    with tempfile.TemporaryDirectory(prefix="autograder-shard-") as tmp:
        root = Path(tmp) / "shard"
        unpack({**bundle, **submission}, root)
        job = {**job, "root": str(root)}
        worker = _local_worker()
        answer = run_jobs([job], [worker], timeout)[job["student"]]
        student = job["student"]
        answer["files"] = pack(root, ["gradebook.db"] + [f"{part}/{student}"
                                                         for part in RETURNED_PARTS],
                               skip=("evidence",))
        if answer.get("error", "").startswith("WorkerDied") and worker.log_path.exists():
            answer["log"] = (answer.get("log") or "") + worker.log_path.read_text()[-4000:]
    answer["worker"] = _worker_address()
    return answer


def _bundle(files: dict[str, bytes]) -> dict[str, bytes]:
    """The release bundle as a task's result: a worker that loses it recomputes it."""
    return files


# ----------------------------------------------------------------------------- the coordinator

class Cluster:
    """A connection to a Dask scheduler that runs the pool's jobs on the cluster's workers."""

    def __init__(self, address: str, *, sandboxed: bool, echo: Callable[[str], None] = print,
                 log: Path | None = None):
        try:
            from distributed import Client
        except ImportError:
            raise CourseError("--scheduler needs Dask's `distributed` package: "
                              "pip install -e '.[instructor]'") from None
        self.address, self.sandboxed, self.echo, self.log = address, sandboxed, echo, log
        try:
            self.client = Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise CourseError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
        self.refusing: dict[str, str] = {}  # worker address -> why it may not grade
        try:
            self._check_workers()
        except BaseException:
            self.close()
            raise

    def _check_workers(self) -> None:
        """Every worker joined so far: the sandbox (unless --no-sandbox) and the same code."""
        try:
            self.client.wait_for_workers(1, timeout=WORKER_WAIT_S)
        except TimeoutError:
            raise CourseError(f"no Dask worker joined the scheduler at {self.address} within "
                              f"{WORKER_WAIT_S} s") from None
        try:
            probes = self.client.run(probe)
        except Exception as exc:  # a worker that cannot even import the autograder
            raise CourseError(
                f"a Dask worker cannot run the autograder ({type(exc).__name__}: {exc}): start "
                "every worker from a checkout of the course with its environment, e.g. "
                "`PYTHONPATH=$PWD dask worker ...` in the repository") from None
        mine = code_digest()
        for address, found in sorted(probes.items()):
            if self.sandboxed and found["sandbox_missing"]:
                self.refusing[address] = f"cannot build the sandbox: {found['sandbox_missing']}"
            elif found["code"] != mine:
                self.refusing[address] = ("grades with other course code (autograder/, "
                                          "fusionlab/ differ from the coordinator's checkout)")
        if len(self.refusing) == len(probes):
            raise CourseError("no Dask worker may grade this batch:" + "".join(
                f"\n  {a}: {why}" for a, why in sorted(self.refusing.items()))
                + ("\nInstall bubblewrap on the workers, or grade without the sandbox only "
                   "with --no-sandbox." if self.sandboxed else ""))
        for address, why in sorted(self.refusing.items()):
            self.echo(f"warning: Dask worker {address} {why}; it gets no job")
        usable = len(probes) - len(self.refusing)
        self.echo(f"Dask scheduler {self.address}: {usable} worker(s) grade, "
                  f"{self._threads()} job(s) at once")

    def _threads(self) -> int:
        return sum(n for a, n in self.client.nthreads().items() if a not in self.refusing) or 1

    def _allowed(self) -> list[str] | None:
        if not self.refusing:
            return None  # any worker, also those that join later
        allowed = [a for a in self.client.nthreads() if a not in self.refusing]
        if not allowed:
            raise CourseError("no Dask worker left that may grade: " + "; ".join(
                f"{a} {why}" for a, why in sorted(self.refusing.items())))
        return allowed

    def run_jobs(self, jobs: list[dict], timeout: float) -> dict[str, dict]:
        """Like ``autograder.pool.run_jobs``: student -> answer, each job graded on the cluster;
        the answer's files are written into the job's shard (``job["root"]``) here."""
        from distributed import as_completed
        from distributed.scheduler import KilledWorker

        if not jobs:
            return {}
        first = Path(jobs[0]["root"])
        batch = uuid.uuid4().hex[:8]
        bundle = self.client.submit(_bundle, pack(first, ["gradebook.db", *(
            f"{part}/{jobs[0]['assignment']}" for part in BUNDLE_PARTS)]),
            key=f"release-bundle-{batch}", pure=False)
        pending = list(reversed(jobs))
        in_flight: dict[str, tuple[dict, int]] = {}  # task key -> (job, attempt)
        answers: dict[str, dict] = {}
        tasks = as_completed(loop=self.client.loop)

        def submit(job: dict, attempt: int = 0) -> None:
            root = Path(job["root"])
            submission = pack(root, [f"submitted/{job['student']}"])
            remote = {k: v for k, v in job.items() if k != "root"}
            allowed = self._allowed()
            future = self.client.submit(
                grade_remotely, bundle, submission, remote, timeout,
                key=f"grade-{job['student']}-{batch}-{attempt}", pure=False,
                workers=allowed, allow_other_workers=False)
            in_flight[future.key] = (job, attempt)
            tasks.add(future)

        def fill() -> None:
            while pending and len(in_flight) < IN_FLIGHT_PER_THREAD * self._threads():
                submit(pending.pop())

        fill()
        for future in tasks:
            job, attempt = in_flight.pop(future.key)
            student = job["student"]
            try:
                answer = future.result()
            except SandboxRefused as exc:
                address = str(exc).split(" ", 1)[0]
                self.refusing[address] = f"cannot build the sandbox ({exc})"
                self.echo(f"warning: Dask worker {exc}; it gets no more jobs")
                submit(job, attempt + 1)
                continue
            except RuntimeError as exc:
                if "deserialization" not in str(exc):
                    raise
                raise CourseError(
                    f"the Dask scheduler at {self.address} cannot load the grading jobs "
                    f"({first_line(str(exc))}): start it from the course checkout with its "
                    "environment, e.g. `PYTHONPATH=$PWD dask scheduler` in the repository"
                ) from None
            except KilledWorker:
                answer = {"student": student, "autograde_ok": False, "feedback_ok": False,
                          "error": "WorkerDied: the grading process died while running this "
                                   "submission, on every worker that tried it", "log": ""}
            if student not in answers:  # the first answer of each submission only
                answers[student] = receive(answer, Path(job["root"]), student)
                self._log(f"{student}: graded on {answer.get('worker', '?')} in "
                          f"{answer.get('seconds', 0):.1f} s (attempt {attempt + 1})")
            future.release()
            fill()
        bundle.release()
        return answers

    def _log(self, line: str) -> None:
        if self.log is not None:
            with open(self.log, "a") as f:
                f.write(f"{time.strftime('%H:%M:%S')} {line}\n")

    def close(self) -> None:
        self.client.close()
