"""The sandbox every submission's kernel runs in: bubblewrap (Linux namespaces) plus limits.

nbgrader starts each notebook's kernel through jupyter_client. For a graded job the worker
(``autograder.worker``) opens a ``SandboxJob``: it writes a kernelspec named
``autograder-sandbox`` whose command is this module's launcher, points nbgrader at it
(``Execute.kernel_name``) and makes the kernel talk over unix sockets (``ipc`` transport), since
the kernel has no network. The launcher (``python -m autograder.sandbox ... -- python -m
ipykernel_launcher -f CONNECTION_FILE``) runs in the trusted worker's environment: it moves itself
into the job's cgroups (or sets rlimits), copies the kernel's working folder into a private
scratch folder and execs ``bwrap`` with the kernel command. Inside, the kernel

- sees ``/usr``, ``/etc``, the Python installation, the virtual environment and the package
  ``fusionlab`` read-only, and nothing else of the host: not the repository (``source/``,
  ``solutions/``, ``autograder/``), not the course directory, its gradebook or other shards, not
  ``--out``, ``$HOME`` or the host's ``/tmp``;
- works at the path of its autograded folder (nbgrader's working directory for it), so the
  path it sees is the usual one: a tmpfs of ``WORKDIR_SIZE_LIMIT`` bytes holding the entries of
  its scratch copy read-only; what it writes there stays there, except in ``--writable``
  subfolders (``evidence/``; the clean room's ``out/``), from which the worker copies out only
  the known ``<grade_id>.npz`` files after the run;
- has a fresh ``/tmp``, a tmpfs of ``TMP_SIZE_LIMIT`` bytes (``HOME``, ``IPYTHONDIR``,
  ``MPLCONFIGDIR`` live there), no network (its own network namespace holds only ``lo``), its
  own PID, IPC and UTS namespaces, no capabilities, a clean environment (bwrap itself, pid 1 in
  there with a readable ``/proc/1/environ``, is exec'd with ``LAUNCH_ENV`` only); it dies with
  its parent, and when it ends every process it started ends with it (the PID namespace goes
  away; the worker also kills whatever is left in its cgroup);
- runs under a memory limit, a process-count limit and, where the ``cpu`` controller is
  writable, a CPU quota (``DEFAULT_CPU_LIMIT`` CPUs): cgroups (v1 ``memory``, ``pids``, ``cpu``,
  or v2) when the grader may create them (root), rlimits otherwise (``RLIMIT_DATA`` per process,
  ``RLIMIT_NPROC``), plus ``RLIMIT_FSIZE`` and no core files. The wall-clock limits are the
  pipeline's (cell and submission timeouts; a timeout is re-graded alone before it stands);
- can create at most ``FILES_LIMIT`` files and folders in each writable place (``/tmp``, the
  working folder, each ``--writable`` subfolder): ``ScratchMounts`` makes them tmpfs mounts
  with ``nr_inodes``, which bwrap 0.8 cannot set, for the job; where it cannot (no user
  namespaces), ``/tmp`` and the working folder are bwrap's tmpfs (a size only) and the
  writable subfolders are bound from the scratch folder on disk, as before.

``missing()`` says what is missing to build the sandbox on this machine; ``grade`` refuses
without it unless ``--no-sandbox``.
"""

from __future__ import annotations

import os
import resource
import shutil
import stat
import sys
from pathlib import Path

# The launcher (``main``) runs once per kernel start: this module imports only what it needs at
# the top; what the worker alone uses is imported where it is used.

KERNEL_NAME = "autograder-sandbox"
DEFAULT_MEMORY_LIMIT = 4 * 2**30  # bytes, all of a kernel's processes together
DEFAULT_PIDS_LIMIT = 256  # processes and threads of one kernel (ipykernel alone uses ~10)
FILE_SIZE_LIMIT = 2**30  # largest file a kernel may write
TMP_SIZE_LIMIT = 512 * 2**20  # the kernel's /tmp: a tmpfs of this size
WORKDIR_SIZE_LIMIT = 512 * 2**20  # its working folder: a tmpfs of this size (see bwrap_argv)
DEFAULT_CPU_LIMIT = 1.0  # CPUs one kernel may use (cgroup CPU quota, where cgroups allow it)
# bwrap itself runs with this environment only: bwrap is pid 1 in the sandbox, and
# /proc/1/environ is readable from the kernel (the kernel's own is set with --setenv)
LAUNCH_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
EVIDENCE_DIR = "evidence"  # what the worker copies out of the scratch folder (see course notes)
EVIDENCE_MAX_BYTES = 512 * 2**20
EVIDENCE_MAX_FILES = 10_000
# files and folders (inodes) in each writable place of a kernel: its /tmp, its working folder,
# evidence/ (the clean room's out/). The solved notebooks of the four parts create at most a few
# dozen (README); a student who saves a file per epoch or per sample stays far below; a tmpfs
# inode costs about 1 KiB of the kernel's memory limit, so 20,000 is about 20 MiB a place
FILES_LIMIT = 20_000

# host environment variables a kernel keeps (everything else, e.g. tokens, is dropped)
KEPT_ENV = ("LANG", "LC_ALL", "LC_CTYPE", "TZ", "MPLBACKEND", "FUSIONLAB_NUM_THREADS",
            "OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYTHONHASHSEED", "NBGRADER_EXECUTION",
            "NBGRADER_VALIDATING", "PYDEVD_DISABLE_FILE_VALIDATION")
SANDBOX_HOME = "/tmp/home"


def format_bytes(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            value = n / size
            return f"{value:g} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} bytes"


def parse_bytes(text: str) -> int:
    """``"4G"``, ``"512M"``, ``"4GiB"`` or a number of bytes."""
    text = str(text).strip().upper().removesuffix("IB").removesuffix("B")
    factor = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}.get(text[-1:], 1)
    number = text[:-1] if factor > 1 else text
    try:
        value = int(float(number) * factor)
    except ValueError:
        raise ValueError(f"not a size: {text!r} (e.g. 4G, 512M)") from None
    if value <= 0:
        raise ValueError(f"a memory limit must be positive, got {text!r}")
    return value


# ----------------------------------------------------------------------------- what it sees

def python_roots() -> list[str]:
    """Folders the kernel's Python needs, read-only: the interpreter's installation and the
    virtual environment (wherever they live, e.g. under ``~/.pyenv``)."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    return sorted(os.path.realpath(r) for r in roots)


def package_roots() -> list[str]:
    """Installed-in-place (editable) packages the kernel imports: ``fusionlab``'s folder only,
    never the repository around it."""
    import importlib.util

    spec = importlib.util.find_spec("fusionlab")
    if spec is None or not spec.submodule_search_locations:
        return []
    return [os.path.realpath(p) for p in spec.submodule_search_locations]


SYSTEM_DIRS = ("/usr", "/etc")
HIDDEN_SYSTEM_FILES = ("/etc/shadow", "/etc/gshadow", "/etc/sudoers")


def _bind_system(args: list[str]) -> None:
    for path in SYSTEM_DIRS:
        if os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = f"/{name}"
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in HIDDEN_SYSTEM_FILES:
        if os.path.exists(path):
            args += ["--ro-bind", "/dev/null", path]


def _workdir_mounts(workdir: str, scratch: str, writable: list[str],
                    mounts: str | None = None) -> list[str]:
    """The working folder: a tmpfs of ``WORKDIR_SIZE_LIMIT`` bytes holding the scratch's
    entries read-only, except the ``writable`` subfolders, bound read-write from the scratch
    (what the grader reads back afterwards: ``evidence/``, the clean room's ``out/``). With
    ``mounts`` (see ``ScratchMounts``), the working folder and the ``writable`` subfolders are
    its tmpfs instead, each with a size and a file-count limit."""
    if mounts:
        args = ["--bind", os.path.join(mounts, WORK_PLACE), workdir]
    else:
        args = ["--size", str(WORKDIR_SIZE_LIMIT), "--tmpfs", workdir]
    for name in sorted(os.listdir(scratch)):
        source, dest = os.path.join(scratch, name), os.path.join(workdir, name)
        if name in writable or os.path.islink(source):
            continue
        args += ["--ro-bind", source, dest]
    for name in writable:
        if mounts:
            source = os.path.join(mounts, name)
        else:
            source = os.path.join(scratch, name)
            os.makedirs(source, exist_ok=True)
        args += ["--bind", source, os.path.join(workdir, name)]
    return args + ["--chdir", workdir]


def bwrap_argv(
    command: list[str], *, workdir: str, scratch: str, ipc_dir: str,
    font_cache: str | None = None, env: dict | None = None, writable: list[str] | None = None,
    mounts: str | None = None,
) -> list[str]:
    """The ``bwrap`` command line that runs ``command`` in the sandbox (see the module doc).
    ``writable``: subfolders of the working folder the command writes results to; None binds
    the whole scratch folder read-write (without a size limit). ``mounts``: a folder whose
    ``tmp``, ``work`` and ``writable`` subfolders are tmpfs mounts with a size and a file-count
    limit (``ScratchMounts``; bwrap 0.8 mounts a tmpfs with a size only), used instead of
    bwrap's own tmpfs for ``/tmp`` and the working folder."""
    args = ["bwrap", "--unshare-all", "--die-with-parent", "--cap-drop", "ALL", "--clearenv"]
    _bind_system(args)
    # the private /tmp first: bwrap mounts in order, and a checkout under /tmp (its venv and
    # fusionlab) must be mounted on top of it, not hidden by it
    args += ["--proc", "/proc", "--dev", "/dev"]
    if mounts:
        args += ["--bind", os.path.join(mounts, TMP_PLACE), "/tmp"]
    else:
        args += ["--size", str(TMP_SIZE_LIMIT), "--tmpfs", "/tmp"]
    args += ["--dir", SANDBOX_HOME, "--dir", "/tmp/ipython", "--dir", "/tmp/matplotlib"]
    packages = package_roots()
    for root in python_roots() + packages:
        args += ["--ro-bind", root, root]
    if font_cache:
        args += ["--ro-bind", font_cache, f"/tmp/matplotlib/{os.path.basename(font_cache)}"]
    connection_file = _connection_file(command)
    if connection_file:
        args += ["--ro-bind", connection_file, connection_file]
    args += ["--bind", ipc_dir, ipc_dir]
    if writable is None:
        args += ["--bind", scratch, workdir, "--chdir", workdir]
    else:
        args += _workdir_mounts(workdir, scratch, writable, mounts)
    kernel_env = {key: value for key, value in (env or os.environ).items() if key in KEPT_ENV}
    kernel_env.update({
        "PATH": os.pathsep.join([os.path.join(sys.prefix, "bin"), "/usr/local/bin", "/usr/bin",
                                 "/bin"]),
        "HOME": SANDBOX_HOME, "IPYTHONDIR": "/tmp/ipython", "MPLCONFIGDIR": "/tmp/matplotlib",
        "TMPDIR": "/tmp", "PYTHONDONTWRITEBYTECODE": "1", "AUTOGRADER_SANDBOX": "1",
    })
    # the kernel imports the fusionlab the grader mounted, wherever the venv's own install
    # points (a clone graded with another checkout's venv); its parent holds nothing else here
    search_path = [os.path.dirname(root) for root in packages]
    if search_path:
        kernel_env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(search_path))
    for key, value in sorted(kernel_env.items()):
        args += ["--setenv", key, value]
    return args + ["--", *command]


def _connection_file(command: list[str]) -> str | None:
    for flag, value in zip(command, command[1:]):
        if flag in ("-f", "--f"):
            return value
    return None


# ----------------------------------------------------------------------------- availability

_MISSING: dict[str, str | None] = {}


def missing() -> str | None:
    """What is missing to build the sandbox here, in a sentence; None when it works."""
    if "result" not in _MISSING:
        _MISSING["result"] = _probe()
    return _MISSING["result"]


def _probe() -> str | None:
    import subprocess
    import tempfile

    if not sys.platform.startswith("linux"):
        return f"the sandbox needs Linux namespaces; this is {sys.platform}"
    if shutil.which("bwrap") is None:
        return "bubblewrap (`bwrap`) is not installed: apt-get install bubblewrap"
    with tempfile.TemporaryDirectory(prefix="agsb-probe-") as tmp:
        args = bwrap_argv(["true"], workdir=tmp, scratch=tmp, ipc_dir=tmp)
        try:
            probe = subprocess.run(args, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"bubblewrap could not run: {exc}"
    if probe.returncode != 0:
        why = (probe.stderr or "").strip().splitlines()
        return ("bubblewrap cannot create the namespaces (user namespaces disabled?): "
                + (why[-1] if why else f"exit code {probe.returncode}"))
    if os.geteuid() == 0 and Cgroups.available() is None:
        return ("running as root without writable cgroups (memory, pids): the process-count "
                "limit cannot be enforced (rlimits do not bind root)")
    return None


# ----------------------------------------------------------------------------- cgroups

class Cgroups:
    """One kernel job's cgroups: ``memory`` and ``pids`` (v1 hierarchies), or one v2 group."""

    V1_ROOT = Path("/sys/fs/cgroup")

    def __init__(self, name: str, memory_limit: int, pids_limit: int,
                 cpu_limit: float | None = DEFAULT_CPU_LIMIT):
        self.kind = self.available()
        self.dirs: list[Path] = []
        self.cpu_limited = False
        period = 100_000  # microseconds
        quota = int(cpu_limit * period) if cpu_limit else None
        if self.kind == "v1":
            for controller in ("memory", "pids"):
                path = self._v1_parent(controller) / name
                path.mkdir()
                self.dirs.append(path)
            memory, pids = self.dirs[:2]
            (memory / "memory.limit_in_bytes").write_text(str(memory_limit))
            swap = memory / "memory.memsw.limit_in_bytes"
            if swap.exists():
                try:
                    swap.write_text(str(memory_limit))
                except OSError:
                    pass
            (pids / "pids.max").write_text(str(pids_limit))
            if quota:  # CPU where the cpu controller is writable too; otherwise the pipeline's
                try:   # re-grade-alone rule is what keeps contention from costing points
                    path = self._v1_parent("cpu") / name
                    path.mkdir()
                    self.dirs.append(path)
                    (path / "cpu.cfs_period_us").write_text(str(period))
                    (path / "cpu.cfs_quota_us").write_text(str(quota))
                    self.cpu_limited = True
                except OSError:
                    pass
        elif self.kind == "v2":
            parent = self.V1_ROOT / "autograder"
            parent.mkdir(exist_ok=True)
            controllers = (self.V1_ROOT / "cgroup.controllers").read_text().split()
            wanted = "+memory +pids" + (" +cpu" if quota and "cpu" in controllers else "")
            try:
                (parent / "cgroup.subtree_control").write_text(wanted)
            except OSError:
                (parent / "cgroup.subtree_control").write_text("+memory +pids")
            path = parent / name
            path.mkdir()
            self.dirs.append(path)
            (path / "memory.max").write_text(str(memory_limit))
            (path / "memory.swap.max").write_text("0")
            (path / "pids.max").write_text(str(pids_limit))
            if quota and (path / "cpu.max").exists():
                try:
                    (path / "cpu.max").write_text(f"{quota} {period}")
                    self.cpu_limited = True
                except OSError:
                    pass

    @classmethod
    def available(cls) -> str | None:
        """"v1" or "v2" when this process may create cgroups with memory and pids limits."""
        if not hasattr(os, "geteuid") or os.geteuid() != 0:
            return None
        if (cls.V1_ROOT / "cgroup.controllers").exists():  # a pure v2 hierarchy
            controllers = (cls.V1_ROOT / "cgroup.controllers").read_text().split()
            ok = {"memory", "pids"} <= set(controllers) and os.access(cls.V1_ROOT, os.W_OK)
            return "v2" if ok else None
        try:
            ok = all(os.access(cls._v1_parent(c), os.W_OK) for c in ("memory", "pids"))
        except OSError:
            return None
        return "v1" if ok else None

    @classmethod
    def _v1_parent(cls, controller: str) -> Path:
        """The calling process's own cgroup in ``controller`` (its children nest there)."""
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controller in controllers.split(","):
                folder = cls.V1_ROOT / controller / path.lstrip("/")
                if not folder.is_dir():
                    raise OSError(f"no cgroup folder {folder}")
                return folder
        raise OSError(f"no {controller} cgroup")

    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def _read(self, name: str) -> str:
        for folder in self.dirs:
            if (folder / name).exists():
                return (folder / name).read_text()
        return ""

    def oom_kills(self) -> int:
        for name in ("memory.events", "memory.oom_control"):
            for line in self._read(name).splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    def pids_limit_hits(self) -> int:
        for line in self._read("pids.events").splitlines():
            key, _, value = line.partition(" ")
            if key == "max":
                return int(value)
        return 0

    def pids(self) -> set[int]:
        found = set()
        for folder in self.dirs:
            try:
                found |= {int(p) for p in (folder / "cgroup.procs").read_text().split()}
            except OSError:
                pass
        return found

    def kill_all(self) -> int:
        """Kill every process still in the group; how many there were."""
        import signal
        import time

        killed: set[int] = set()
        for _ in range(50):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.add(pid)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        return len(killed)

    def remove(self) -> None:
        for folder in reversed(self.dirs):
            try:
                folder.rmdir()
            except OSError:
                pass

    @classmethod
    def existing(cls, pattern: str) -> list[Cgroups]:
        """The groups named like ``pattern`` (a glob) that this process could have created."""
        kind = cls.available()
        if kind == "v1":
            parents = [cls._v1_parent(c) for c in ("memory", "pids")]
            try:
                parents.append(cls._v1_parent("cpu"))
            except OSError:
                pass
        elif kind == "v2":
            parents = [cls.V1_ROOT / "autograder"]
        else:
            return []
        found = []
        for name in sorted({p.name for parent in parents for p in parent.glob(pattern)}):
            group = cls.__new__(cls)
            group.kind, group.dirs = kind, [p / name for p in parents if (p / name).is_dir()]
            found.append(group)
        return found


def clean_up_after(worker_pid: int) -> None:
    """After a worker was killed (its job overran): end what is left of its jobs' sandboxes and
    remove their cgroups and temporary folders (``SandboxJob`` names them after the worker)."""
    prefix = f"agsb-{int(worker_pid)}-"
    for group in Cgroups.existing(prefix + "*"):
        group.kill_all()
        group.remove()
    for folder in Path("/tmp").glob(prefix + "*"):
        shutil.rmtree(folder, ignore_errors=True)


# ----------------------------------------------------------------------------- file-count limits

TMP_PLACE, WORK_PLACE = "tmp", "work"  # ScratchMounts' folders for /tmp and the working folder
PLACE_NAMES = {TMP_PLACE: "/tmp", WORK_PLACE: "its working folder"}
_CLONE_NEWUSER, _CLONE_NEWNS = 0x10000000, 0x00020000
_MS_REC, _MS_PRIVATE = 0x4000, 0x40000


class ScratchMounts:
    """The writable places of one job as tmpfs mounts with a size and a file-count
    (``nr_inodes``) limit, which bwrap 0.8 cannot set::

        with ScratchMounts(folder, {"tmp": size, "work": size, "evidence": size}) as mounts:
            mounts.active                   # False: not available here (bwrap's own tmpfs)
            ... launcher --mounts folder --mounts-pid mounts.pid ...
            mounts.path("evidence")         # where the worker reads what the kernel wrote
            mounts.full()                   # the places whose file-count limit was reached

    A holder process (``hold``), started by the trusted worker, makes a mount namespace (in a
    user namespace of its own when not root), mounts one tmpfs on each ``folder/<name>`` there,
    and waits until its stdin closes (the job ended, or the worker died). The launcher enters
    its namespaces before it execs bwrap, which binds those folders into the sandbox; the
    worker reads them through ``/proc/<holder>/root``, so what the kernel wrote outlives the
    kernel but not the job. Where the holder cannot mount (no user namespaces), ``active`` is
    False and the sandbox keeps bwrap's tmpfs (a size limit only)."""

    def __init__(self, folder: Path, places: dict[str, int], files_limit: int = FILES_LIMIT):
        self.folder, self.places, self.files_limit = Path(folder), dict(places), files_limit
        self.process = None

    @property
    def active(self) -> bool:
        return self.process is not None

    @property
    def pid(self) -> int:
        return self.process.pid

    def __enter__(self) -> ScratchMounts:
        import json
        import subprocess

        spec = []
        for name, size in self.places.items():
            (self.folder / name).mkdir(parents=True, exist_ok=True)
            spec.append([str(self.folder / name), int(size), int(self.files_limit)])
        here = str(Path(__file__).resolve().parents[1])  # where this autograder is importable
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [here] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "autograder.sandbox", "--hold", json.dumps(spec)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                env=env)
        except OSError:
            return self
        if process.stdout.readline().strip() == b"ready":
            self.process = process
        else:
            process.stdin.close()
            process.wait()
        return self

    def path(self, name: str) -> Path:
        """``folder/<name>`` as the holder's mount namespace has it (the tmpfs)."""
        if not self.active:
            raise RuntimeError("the file-count limits are not active")
        return Path(f"/proc/{self.pid}/root") / self.folder.relative_to("/") / name

    def full(self) -> list[str]:
        """The places whose file-count limit was reached (no free inode left)."""
        found = []
        for name in self.places if self.active else ():
            try:
                if os.statvfs(self.path(name)).f_ffree == 0:
                    found.append(name)
            except OSError:
                pass
        return found

    def close(self) -> None:
        """End the holder: the tmpfs mounts and everything in them go."""
        if self.process is not None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except Exception:  # noqa: BLE001 (a holder that does not end is killed)
                self.process.kill()
                self.process.wait()
            self.process.stdout.close()
            self.process = None

    def __exit__(self, *exc) -> None:
        self.close()


def _libc():
    import ctypes

    return ctypes, ctypes.CDLL(None, use_errno=True)


def _check(ctypes, result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def hold(spec_json: str) -> None:
    """``python -m autograder.sandbox --hold SPEC``: the holder of ``ScratchMounts``. SPEC is
    ``[[folder, size, files], ...]``; prints ``ready`` once every tmpfs is mounted, then waits
    for its stdin to close."""
    import json

    ctypes, libc = _libc()
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNS) == 0:
        # the same uid inside: the kernel's files and the worker's are one owner's
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
        Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
    else:  # root on a machine without user namespaces: a mount namespace alone
        _check(ctypes, libc.unshare(_CLONE_NEWNS), "unshare")
    # nothing mounted here reaches the host's namespace
    _check(ctypes, libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None), "private")
    for folder, size, files in json.loads(spec_json):
        options = f"size={int(size)},nr_inodes={int(files)},mode=0755".encode()
        _check(ctypes, libc.mount(b"tmpfs", os.fsencode(folder), b"tmpfs", 0, options), folder)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.buffer.read()  # until the worker closes it, or dies


def _enter_namespaces(pid: int) -> None:
    """The launcher joins the holder's user (if its own) and mount namespaces."""
    ctypes, libc = _libc()
    user = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY)
    mnt = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY)
    try:
        if os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user"):
            _check(ctypes, libc.setns(user, _CLONE_NEWUSER), "setns user")
        _check(ctypes, libc.setns(mnt, _CLONE_NEWNS), "setns mnt")
    finally:
        os.close(user)
        os.close(mnt)
    os.chdir("/")


# ----------------------------------------------------------------------------- one job

class SandboxReport:
    """What the limits saw in one job."""

    def __init__(self, memory_limit: int, pids_limit: int, limits: str):
        self.memory_limit, self.pids_limit = memory_limit, pids_limit
        self.limits = limits  # "cgroup v1", "cgroup v2" or "rlimit"
        self.cpu_limit = None  # CPUs (cgroup quota), None: no quota here
        self.oom_kills = 0
        self.pids_limit_hits = 0
        self.leftover_processes = 0  # killed after the job (the PID namespace ends them first)
        self.files_limit = None  # files and folders per writable place; None: no such limit here
        self.files_limit_hits: list[str] = []  # the places where it was reached

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def end_confinement(cgroups, mounts) -> None:
    """Kill what is left in ``cgroups`` and remove them, then unmount ``mounts`` (either may be
    None or inactive): the end of every sandboxed job and command."""
    if cgroups:
        cgroups.kill_all()
        cgroups.remove()
    if mounts:
        mounts.close()


def for_job(job: dict):
    """The worker's context for ``job``: a ``SandboxJob``, or a null context (``None``) when the
    job is graded without the sandbox (``job["sandbox"]`` is None)."""
    import contextlib

    settings = job.get("sandbox")
    if settings is None:
        return contextlib.nullcontext()
    root = Path(job["root"])
    workdir = root / "autograded" / job["student"] / job["assignment"]
    return SandboxJob(workdir, scratch=root / "sandbox-scratch",
                      evidence_names=known_evidence(root / "release" / job["assignment"]),
                      **settings)


def known_evidence(release_dir: Path) -> set[str]:
    """``<grade_id>.npz`` for every graded cell the exercise registry declares for the released
    notebooks in ``release_dir``: the only files copied out of a kernel's ``evidence/``."""
    import nbformat

    from fusionlab.grading import registry

    names = set()
    for path in Path(release_dir).glob("*.ipynb"):
        for cell in nbformat.read(path, as_version=4).cells:
            grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            if grade_id and registry.graded_cell(grade_id) is not None:
                names.add(f"{grade_id}.npz")
    return names


class SandboxJob:
    """The sandbox of one grading job (one submission), used by the worker::

        with SandboxJob(workdir, memory_limit=..., pids_limit=...) as box:
            box.configure(config)           # before nbgrader's autograde
            api.autograde(...)
            box.finish()                    # kill leftovers, copy evidence/ out, read the limits
            box.report                      # what the limits saw

    ``workdir`` is the submission's ``autograded/<student>/<assignment>/`` folder of its shard,
    the working directory nbgrader gives the kernel; ``scratch`` (a new folder, in the shard so
    that it goes with it) is what the kernel sees there instead.
    """

    def __init__(self, workdir: Path, *, scratch: Path,
                 memory_limit: int = DEFAULT_MEMORY_LIMIT, pids_limit: int = DEFAULT_PIDS_LIMIT,
                 evidence_names: set[str] | None = None):
        self.workdir, self.scratch = Path(workdir).resolve(), Path(scratch).resolve()
        self.evidence_names = evidence_names  # None: every plain file (up to the limits)
        self.memory_limit, self.pids_limit = int(memory_limit), int(pids_limit)
        self.cgroups: Cgroups | None = None
        self.mounts: ScratchMounts | None = None
        self.report: SandboxReport | None = None
        self._saved_env: dict[str, str | None] = {}

    def __enter__(self) -> SandboxJob:
        import json
        import tempfile

        # short path: unix socket paths are limited to ~107 bytes
        self.tmp = Path(tempfile.mkdtemp(prefix=f"agsb-{os.getpid()}-", dir="/tmp"))
        self.ipc_dir = self.tmp / "ipc"
        spec_dir = self.tmp / "spec" / "kernels" / KERNEL_NAME
        runtime = self.tmp / "run"
        for folder in (self.ipc_dir, self.scratch, spec_dir, runtime):
            folder.mkdir(parents=True, exist_ok=True)
        if Cgroups.available():
            self.cgroups = Cgroups(self.tmp.name, self.memory_limit, self.pids_limit)
        limits = f"cgroup {self.cgroups.kind}" if self.cgroups else "rlimit"
        self.report = SandboxReport(self.memory_limit, self.pids_limit, limits)
        if self.cgroups and self.cgroups.cpu_limited:
            self.report.cpu_limit = DEFAULT_CPU_LIMIT
        argv = [sys.executable, "-m", "autograder.sandbox",
                "--workdir", str(self.workdir), "--scratch", str(self.scratch),
                "--ipc-dir", str(self.ipc_dir), "--memory-limit", str(self.memory_limit),
                "--pids-limit", str(self.pids_limit), "--writable", EVIDENCE_DIR]
        self.mounts = ScratchMounts(self.tmp / "fs", {
            TMP_PLACE: TMP_SIZE_LIMIT, WORK_PLACE: WORKDIR_SIZE_LIMIT,
            EVIDENCE_DIR: EVIDENCE_MAX_BYTES}).__enter__()
        if self.mounts.active:
            self.report.files_limit = self.mounts.files_limit
            argv += ["--mounts", str(self.mounts.folder), "--mounts-pid", str(self.mounts.pid)]
        for procs in self.cgroups.procs_files() if self.cgroups else []:
            argv += ["--cgroup-procs", procs]
        font_cache = matplotlib_font_cache()
        if font_cache:
            argv += ["--font-cache", font_cache]
        argv += ["--", sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        (spec_dir / "kernel.json").write_text(json.dumps({
            "argv": argv, "display_name": "Python 3 (autograder sandbox)", "language": "python",
            "metadata": {"debugger": False},
        }, indent=1))
        jupyter_path = [str(self.tmp / "spec")] + [
            p for p in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if p]
        self._setenv("JUPYTER_PATH", os.pathsep.join(jupyter_path))
        self._setenv("JUPYTER_RUNTIME_DIR", str(runtime))
        return self

    def configure(self, config) -> None:
        """nbgrader/jupyter_client settings: the sandbox kernelspec, unix-socket transport."""
        config.Execute.kernel_name = KERNEL_NAME
        config.KernelManager.transport = "ipc"
        config.KernelManager.ip = str(self.ipc_dir / "k")

    def finish(self) -> SandboxReport:
        """After autograde: end leftovers, copy ``evidence/`` out of the scratch folder."""
        if self.cgroups:
            self.report.leftover_processes = self.cgroups.kill_all()
            self.report.oom_kills = self.cgroups.oom_kills()
            self.report.pids_limit_hits = self.cgroups.pids_limit_hits()
        if self.mounts.active:
            self.report.files_limit_hits = self.mounts.full()
            evidence = self.mounts.path(EVIDENCE_DIR)
        else:
            evidence = self.scratch / EVIDENCE_DIR
        copy_plain_files(evidence, self.workdir / EVIDENCE_DIR, names=self.evidence_names)
        self.mounts.close()  # the kernel's /tmp and files are freed now, not after the job
        return self.report

    def __exit__(self, *exc) -> None:
        end_confinement(self.cgroups, self.mounts)
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(self.tmp, ignore_errors=True)
        shutil.rmtree(self.scratch, ignore_errors=True)

    def _setenv(self, key: str, value: str) -> None:
        self._saved_env.setdefault(key, os.environ.get(key))
        os.environ[key] = value


def limit_messages(report: dict) -> list[str]:
    """What the limits did to a job, one sentence each (from ``SandboxReport.as_dict()``)."""
    messages = []
    if report.get("oom_kills"):
        messages.append(f"the kernel ran out of its {format_bytes(report['memory_limit'])} "
                        "memory limit")
    if report.get("pids_limit_hits"):
        messages.append(f"the kernel reached its limit of {report['pids_limit']} processes: "
                        "starting more was refused")
    for place in report.get("files_limit_hits") or ():
        where = PLACE_NAMES.get(place, f"{place}/")
        messages.append(f"the notebook tried to create more than {report['files_limit']:,} "
                        f"files and folders in {where}: creating more failed with 'No space "
                        "left on device'")
    if report.get("leftover_processes"):
        messages.append(f"{report['leftover_processes']} process(es) the kernel left running "
                        "were killed")
    return messages


def copy_plain_files(source: Path, dest: Path, max_bytes: int = EVIDENCE_MAX_BYTES,
                     max_files: int = EVIDENCE_MAX_FILES, names: set[str] | None = None) -> int:
    """Copy the regular files under ``source`` to ``dest`` (replaced), never following a
    symbolic link, up to ``max_files`` files and ``max_bytes`` bytes; the number copied.
    ``names``: only these file names, directly in ``source`` (the known ``<grade_id>.npz``);
    nothing else is listed or read, so 12,000 junk files cost nothing."""
    if dest.is_symlink() or dest.is_file():
        dest.unlink()
    elif dest.exists():
        shutil.rmtree(dest)
    if source.is_symlink() or not source.is_dir():
        return 0
    if names is not None:
        found = [(source, name) for name in sorted(names)]
    else:
        found = []
        for folder, dirs, files in os.walk(source, followlinks=False):
            dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]
            found += [(Path(folder), name) for name in sorted(files)]
    copied, total = 0, 0
    for folder, name in found:
        if copied >= max_files:
            return copied
        path = os.path.join(folder, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
        except OSError:
            continue
        with os.fdopen(fd, "rb") as src:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                continue
            data = src.read(max_bytes - total + 1)
        total += len(data)
        if total > max_bytes:
            return copied
        rel = Path(folder).relative_to(source)
        (dest / rel).mkdir(parents=True, exist_ok=True)
        (dest / rel / name).write_bytes(data)
        copied += 1
    return copied


def matplotlib_font_cache() -> str | None:
    """A prebuilt matplotlib font list, shared read-only with the kernels (building it costs a
    kernel about 1.5 s); None when matplotlib is not installed."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    cache = cache / "fusionlab-autograder" / "matplotlib"
    found = sorted(cache.glob("fontlist-v*.json"))
    if not found:
        import importlib.util
        import subprocess

        if importlib.util.find_spec("matplotlib") is None:
            return None
        cache.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, MPLCONFIGDIR=str(cache), MPLBACKEND="Agg")
        subprocess.run([sys.executable, "-c", "import matplotlib.font_manager"], env=env,
                       capture_output=True, timeout=300)
        found = sorted(cache.glob("fontlist-v*.json"))
    return str(found[-1]) if found else None


# ----------------------------------------------------------------------------- the launcher

def _tasks_of(uid: int) -> int:
    """Processes and threads that ``uid`` runs now (what ``RLIMIT_NPROC`` counts)."""
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            if fields.get("Uid", "").split()[:1] == [str(uid)]:
                count += int(fields.get("Threads", "1"))
    return count


def _set_rlimits(memory_limit: int, pids_limit: int, cgroups: bool) -> None:
    limits = [(resource.RLIMIT_FSIZE, FILE_SIZE_LIMIT), (resource.RLIMIT_CORE, 0)]
    if cgroups:  # the cgroup bounds memory; drop the trusted worker's own (soft) data limit
        limits.append((resource.RLIMIT_DATA, resource.getrlimit(resource.RLIMIT_DATA)[1]))
    else:
        # without cgroups: memory per process; RLIMIT_NPROC counts every task of the user,
        # also outside the sandbox's user namespace, so allow that many more
        limits += [(resource.RLIMIT_DATA, memory_limit),
                   (resource.RLIMIT_NPROC, _tasks_of(os.getuid()) + pids_limit)]
    for which, value in limits:
        soft, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        if value == resource.RLIM_INFINITY:
            resource.setrlimit(which, (value, hard))
            continue
        resource.setrlimit(which, (value, value))


def main(argv: list[str] | None = None) -> None:
    """``python -m autograder.sandbox OPTIONS -- KERNEL COMMAND``: the kernelspec's command."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m autograder.sandbox")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--scratch", required=True)
    parser.add_argument("--ipc-dir", required=True)
    parser.add_argument("--memory-limit", type=int, default=DEFAULT_MEMORY_LIMIT)
    parser.add_argument("--pids-limit", type=int, default=DEFAULT_PIDS_LIMIT)
    parser.add_argument("--cgroup-procs", action="append", default=[])
    parser.add_argument("--font-cache", default=None)
    parser.add_argument("--writable", action="append", default=None,
                        help="a subfolder of the working folder bound read-write (repeatable);"
                             " everything else is a size-limited tmpfs")
    parser.add_argument("--mounts", default=None,
                        help="a folder of ScratchMounts (tmp, work, the writable subfolders)")
    parser.add_argument("--mounts-pid", type=int, default=None,
                        help="the ScratchMounts holder whose namespaces hold those mounts")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no kernel command after --")
    for procs in args.cgroup_procs:  # before anything else: the kernel is born inside
        with open(procs, "w") as f:
            f.write(str(os.getpid()))
    _set_rlimits(args.memory_limit, args.pids_limit, bool(args.cgroup_procs))
    # the kernel's scratch starts as a copy of its working folder (the notebook and any input
    # the grader put there); nothing it writes reaches the real folder
    shutil.copytree(args.workdir, args.scratch, symlinks=True, dirs_exist_ok=True)
    if args.mounts_pid:  # where the file-count-limited tmpfs mounts are (fails closed)
        _enter_namespaces(args.mounts_pid)
    bwrap = bwrap_argv(command, workdir=args.workdir, scratch=args.scratch,
                       ipc_dir=args.ipc_dir, font_cache=args.font_cache, writable=args.writable,
                       mounts=args.mounts if args.mounts_pid else None)
    # bwrap (pid 1 in the sandbox, its environ readable there) gets a minimal environment
    os.execve(shutil.which("bwrap") or "/usr/bin/bwrap", bwrap, dict(LAUNCH_ENV))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--hold"]:
        hold(sys.argv[2])
    else:
        main()


# ----------------------------------------------------------------------------- plain commands

class ConfinedCommand:
    """The sandbox around a plain command (the clean room), not a kernel::

        with ConfinedCommand(workdir, memory_limit=..., pids_limit=...) as box:
            subprocess.run(box.argv(command), ...)
            box.results                    # the folder where the command's writes landed

    The command sees ``workdir`` (a copy of it: nothing it writes reaches the real folder)
    under the same limits, mounts and namespaces as a graded kernel; what it wrote is read from
    ``box.results`` afterwards, as plain files.
    """

    WRITABLE = "out"

    def __init__(self, workdir: Path, *, memory_limit: int = DEFAULT_MEMORY_LIMIT,
                 pids_limit: int = DEFAULT_PIDS_LIMIT):
        self.workdir = Path(workdir).resolve()
        self.memory_limit, self.pids_limit = int(memory_limit), int(pids_limit)
        self.cgroups: Cgroups | None = None
        self.mounts: ScratchMounts | None = None

    def __enter__(self) -> ConfinedCommand:
        import tempfile

        self.tmp = Path(tempfile.mkdtemp(prefix=f"agsb-{os.getpid()}-", dir="/tmp"))
        self.scratch = self.tmp / "scratch"
        (self.tmp / "ipc").mkdir()
        if Cgroups.available():
            self.cgroups = Cgroups(self.tmp.name, self.memory_limit, self.pids_limit)
        self.mounts = ScratchMounts(self.tmp / "fs", {
            TMP_PLACE: TMP_SIZE_LIMIT, WORK_PLACE: WORKDIR_SIZE_LIMIT,
            self.WRITABLE: EVIDENCE_MAX_BYTES}).__enter__()
        # ``results / "out"``: the command's writable folder (the tmpfs, while the box lasts)
        self.results = self.mounts.path("") if self.mounts.active else self.scratch
        return self

    def argv(self, command: list[str]) -> list[str]:
        argv = [sys.executable, "-m", "autograder.sandbox", "--workdir", str(self.workdir),
                "--scratch", str(self.scratch), "--ipc-dir", str(self.tmp / "ipc"),
                "--memory-limit", str(self.memory_limit), "--pids-limit", str(self.pids_limit),
                "--writable", self.WRITABLE]
        for procs in self.cgroups.procs_files() if self.cgroups else []:
            argv += ["--cgroup-procs", procs]
        if self.mounts.active:
            argv += ["--mounts", str(self.mounts.folder), "--mounts-pid", str(self.mounts.pid)]
        return argv + ["--", *command]

    def out_of_memory(self) -> bool:
        return bool(self.cgroups and self.cgroups.oom_kills())

    def files_limit_hit(self) -> str | None:
        """A sentence when the command reached a file-count limit (see ``limit_messages``)."""
        hits = limit_messages({"files_limit": self.mounts.files_limit,
                               "files_limit_hits": self.mounts.full()})
        return hits[0].replace("the notebook", "the clean room") if hits else None

    def __exit__(self, *exc) -> None:
        end_confinement(self.cgroups, self.mounts)
        shutil.rmtree(self.tmp, ignore_errors=True)
