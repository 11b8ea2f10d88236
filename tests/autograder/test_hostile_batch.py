"""No submission can stop, starve or flood the batch, or read the grader's secrets (issue 18).

Two halves:

- a notebook fuzzer through every per-submission step that reads a notebook before grading
  (``autograder.submission``, the locked-cell report, the scan, the feedback's parser), fast,
  with the property: nothing raises, every file gets a verdict (a notebook, or a reason);
- one sandboxed batch of the toy course (tests/grading/toy_course.py, no torch) through real
  nbgrader, with the attacks of the issue, each on top of a known implementation, and
  bystanders whose grades must not move.

Attack -> test: deep JSON, a 3,000-term sum, ``metadata.nbgrader`` a string ->
``test_batch_finishes_with_a_row_per_file``; the grader's environment through /proc/1/environ ->
``test_bwrap_runs_with_a_minimal_environment``; huge stdout and PNG ->
``test_outputs_are_bounded``; 12,000 junk evidence files -> ``test_only_known_evidence_is_copied``
(and its unit test); disk -> ``test_disk_is_bounded``; 200,000 empty files in ``.``, ``/tmp``
and ``evidence/`` -> ``test_the_file_count_is_bounded`` (and its units
``test_scratch_mounts_limit_size_and_files``, ``test_a_kernel_cannot_create_unbounded_files``,
``test_bwrap_binds_the_file_count_limited_mounts``, the clean room's
``test_the_clean_room_cannot_create_unbounded_files``); a pasted graded cell, an unknown graded
cell -> ``test_honest_accidents_cost_nothing``; image attributes, hidden source in the kernel's
history -> ``test_feedback_shows_no_hidden_source_and_no_injected_attribute``; a notebook that
crashes after its TODO cells -> ``test_a_crash_after_the_todo_cells_keeps_their_points``; CPU ->
``test_kernels_get_a_cpu_quota`` and ``test_a_timeout_is_regraded_alone``.
"""

from __future__ import annotations

import copy
import json
import os
import random
import re
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from autograder import report, sandbox, scan, submission
from autograder.authoring.examples import release
from autograder.authoring.examples import submission as build_submission
from autograder.feedback import SanitizeSubmission, _dimension, shortened_cells
from autograder.grade import grade
from autograder.outputs import (
    MAX_IMAGE_BYTES,
    MAX_OUTPUT_BYTES,
    MAX_TOTAL_BYTES,
    BoundOutputs,
    bound_output,
)

sys.path.insert(0, str(Path(__file__).parents[1] / "grading"))
import toy_course  # noqa: E402

CANARY = "canary-7f3a9c41-instructor-secret"
CORRECT, WRONG = toy_course.CORRECT, toy_course.WRONG


def _toy_release(tmp_path):
    source = toy_course.write_source(tmp_path / "source")
    masters, released = release(toy_course.ASSIGNMENT, source)
    return source, masters[toy_course.ASSIGNMENT], released[toy_course.ASSIGNMENT]


# ----------------------------------------------------------------------------- the fuzzer

def _deep(depth: int) -> bytes:
    return b'{"cells": ' + b"[" * depth + b"]" * depth + b', "nbformat": 4}'


def _set_path(nb: dict, path: tuple, value) -> None:
    node = nb
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def fuzz_cases(released: dict, seed: int = 0) -> dict[str, bytes]:
    """name -> file content: deep nesting, wrong types at every key the pipeline reads, huge
    strings, missing fields, seeded random mutations of the released notebook."""
    rng = random.Random(seed)
    base = json.loads(json.dumps(released))
    cases = {"deep_lists": _deep(5000), "deep_objects": b'{"a":' * 5000 + b"1" + b"}" * 5000,
             "deep_64": _deep(70), "empty": b"", "null": b"null", "list": b"[]",
             "binary": bytes(range(256)) * 4, "no_cells": b'{"nbformat": 4}',
             "bad_utf8": b'{"cells": [], "x": "\xff\xfe"}'}
    wrong = [None, "a string", 7, 1.5, True, [], {}, ["x", 1], {"grade_id": 3}]
    paths = [("cells",), ("metadata",), ("nbformat",), ("nbformat_minor",)]
    for index, cell in enumerate(base["cells"]):
        paths += [("cells", index), ("cells", index, "source"), ("cells", index, "cell_type"),
                  ("cells", index, "metadata")]
        if "nbgrader" in cell["metadata"]:
            paths += [("cells", index, "metadata", "nbgrader")]
            paths += [("cells", index, "metadata", "nbgrader", key)
                      for key in ("grade_id", "grade", "solution", "locked", "points")
                      if key in cell["metadata"]["nbgrader"]]
        if cell["cell_type"] == "code":
            paths += [("cells", index, "outputs"), ("cells", index, "execution_count")]
    for path in paths:
        value = rng.choice(wrong)
        nb = copy.deepcopy(base)
        _set_path(nb, path, value)
        cases["wrong_" + "_".join(map(str, path))] = json.dumps(nb).encode()
        nb = copy.deepcopy(base)
        parent = nb
        for key in path[:-1]:
            parent = parent[key]
        del parent[path[-1]]
        cases["missing_" + "_".join(map(str, path))] = json.dumps(nb).encode()
    for index in range(len(base["cells"])):  # huge strings
        nb = copy.deepcopy(base)
        nb["cells"][index]["source"] = "x" * 3_000_000
        cases[f"huge_source_{index}"] = json.dumps(nb).encode()
    nb = copy.deepcopy(base)
    nb["cells"][2]["source"] = "x = " + "+".join(["1"] * 3000)
    cases["sum_3000"] = json.dumps(nb).encode()
    nb = copy.deepcopy(base)
    nb["cells"][2]["source"] = "x = " + "(" * 5000 + ")" * 5000
    cases["parens_5000"] = json.dumps(nb).encode()
    nb = copy.deepcopy(base)
    nb["cells"][2]["source"] = "x = 1\0"
    cases["null_byte"] = json.dumps(nb).encode()
    return cases


def _through_every_reader(content: bytes, released) -> str:
    """What the pipeline's readers make of ``content``: "" when it is graded, else the reason.
    Raises whatever they raise (the property is that nothing does)."""
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".ipynb") as f:
        f.write(content)
        f.flush()
        nb, problem = submission.read_submission(Path(f.name))
    if nb is None:
        assert problem, "a rejected notebook must say why"
        return problem
    report.locked_cell_changes(nb, released)
    submission.normalize(nb, released)
    scan.scan_notebook(nb, released)
    shortened_cells(nb)
    nbformat.writes(nb)  # what nbgrader and the clean room read back
    return ""


def test_the_fuzzer_finds_no_crash_in_the_readers(tmp_path):
    """Every fuzzed file gets a verdict from the readers: a notebook or a reason; none raises."""
    _, _, released = _toy_release(tmp_path)
    cases = fuzz_cases(json.loads(nbformat.writes(released)))
    assert len(cases) >= 80
    verdicts = {name: _through_every_reader(content, released)
                for name, content in cases.items()}
    assert "nests deeper" in verdicts["deep_lists"]
    assert "nests deeper" in verdicts["deep_objects"]
    assert "nests deeper" in verdicts["deep_64"]
    assert verdicts["sum_3000"] == "" and verdicts["parens_5000"] == ""
    assert verdicts["missing_cells_2_metadata_nbgrader"] == ""  # graded, nbgrader restores it
    assert sum(bool(v) for v in verdicts.values()) >= 20  # many rejected, each with a reason


def test_read_submission_validates_before_anything_reads(tmp_path):
    path = tmp_path / "x.ipynb"
    path.write_bytes(_deep(5000))
    nb, why = submission.read_submission(path)
    assert nb is None and f"deeper than {submission.MAX_DEPTH}" in why
    path.write_text(json.dumps({"cells": [{"cell_type": "code", "source": 5, "metadata": {},
                                           "outputs": []}], "metadata": {}, "nbformat": 4,
                                "nbformat_minor": 5}))
    nb, why = submission.read_submission(path)
    assert nb is None and why.startswith("not a valid notebook") and "source" in why


def test_the_scan_survives_a_deep_expression():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "x = " + "+".join(["1"] * 3000))])
    flags = scan.scan_notebook(nb)
    assert all("could not be scanned" in f for f in flags)


# ----------------------------------------------------------------------------- honest accidents

def _graded_copy(nb, grade_id):
    for index, cell in enumerate(nb.cells):
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            nb.cells.insert(index + 1, copy.deepcopy(cell))
            return nb
    raise AssertionError(grade_id)


def test_normalize_keeps_one_copy_and_ignores_unknown_cells(tmp_path):
    _, _, released = _toy_release(tmp_path)
    nb = _graded_copy(copy.deepcopy(released), "add_visible")
    nb = _graded_copy(nb, "add_solution")
    extra = nbformat.v4.new_code_cell("pass", metadata={"nbgrader": {
        "grade": True, "grade_id": "from_another_notebook", "locked": True, "points": 9,
        "schema_version": 3, "solution": False, "task": False}})
    nb.cells.append(extra)
    nb.cells[1].metadata["nbgrader"] = "a string"
    flags = submission.normalize(nb, released)
    ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells]
    assert ids.count("add_visible") == 1 and ids.count("add_solution") == 1
    assert "from_another_notebook" not in ids
    assert any("copy of cell add_visible" in f for f in flags)
    assert any("does not have" in f for f in flags)
    assert any("not an object" in f for f in flags)
    # the earlier copy of the TODO cell still runs in the clean room, in notebook order
    from autograder.cleanroom import todo_cells

    exercise = type("E", (), {"solution": "add_solution"})
    assert [g for g, _ in todo_cells(nb, [exercise])] == ["add_solution", "add_solution"]


# ----------------------------------------------------------------------------- static scan

SCAN_CASES = {
    "subclasses": ("from fusionlab.part2.models import CoAttentionBlock as Base\n"
                   "class CoAttentionBlock(Base):\n    pass", "subclasses"),
    "wraps": ("import torch.nn as nn\nclass MaskedMultiHeadAttention(nn.Module):\n"
              "    def __init__(self):\n        super().__init__()\n"
              "        self.inner = nn.MultiheadAttention(8, 2)", "uses"),
    "calls": ("import torch.nn.functional as F\ndef f(q, k, v):\n"
              "    return F.scaled_dot_product_attention(q, k, v)", "uses"),
    "hook": ("ip = get_ipython()\nip.events.register('post_run_cell', lambda r: None)",
             "IPython hook"),
    "thread": ("import threading\nthreading.Thread(target=print).start()", "starts a thread"),
    "process": ("from multiprocessing import Process\nProcess(target=print).start()",
                "starts a process"),
    "patch": ("import torch\ntorch.nn.Module.state_dict = lambda self: {}", "modifies"),
    "setattr": ("import fusionlab.models as m\nsetattr(m, 'x', 1)", "setattr"),
    "patch_class": ("from fusionlab.models import FusionLayerClassifier\n"
                    "FusionLayerClassifier.forward = print", "FusionLayerClassifier.forward"),
    "patch_own_import": ("import numpy as np\nnp.random.rand = print", "np.random.rand"),
}


@pytest.mark.parametrize("case", sorted(SCAN_CASES))
def test_the_scan_flags_borrowed_implementations_hooks_threads_and_patches(case):
    from fusionlab.grading import registry

    registry.discover()
    source, words = SCAN_CASES[case]
    grade_id = "coattention_solution" if case == "subclasses" else "attention_solution"
    cell = nbformat.v4.new_code_cell(source, metadata={"nbgrader": {"grade_id": grade_id,
                                                                    "solution": True}})
    nb = nbformat.v4.new_notebook(cells=[cell])
    flags = scan.scan_notebook(nb, None, registry.exercises("part2_attention_that_selects"))
    assert any(words in f for f in flags), flags


def test_the_scan_does_not_flag_an_own_implementation():
    from fusionlab.grading import registry

    registry.discover()
    cell = nbformat.v4.new_code_cell(textwrap.dedent("""\
        import torch
        from torch import nn
        class CoAttentionBlock(nn.Module):
            def __init__(self):
                super().__init__()
                self.x = nn.Linear(2, 2)
            def forward(self, a):
                return torch.softmax(self.x(a), dim=-1)
        """), metadata={"nbgrader": {"grade_id": "coattention_solution", "solution": True}})
    nb = nbformat.v4.new_notebook(cells=[cell])
    assert scan.scan_notebook(nb, None, registry.exercises("part2_attention_that_selects")) == []


# ----------------------------------------------------------------------------- bounded outputs

def test_bound_output_cuts_text_images_and_errors():
    stream = nbformat.v4.new_output("stream", name="stdout", text="x" * (40 * 2**20))
    bound_output(stream)
    assert len(stream.text) < MAX_OUTPUT_BYTES + 200 and "cut by the grader" in stream.text
    image = nbformat.v4.new_output("display_data", data={"image/png": "A" * (40 * 2**20)})
    bound_output(image)
    assert "image/png" not in image.data and "image removed" in image.data["text/plain"]
    error = nbformat.v4.new_output("error", ename="E", evalue="v" * 2**22,
                                   traceback=["t" * 2**22] * 10)
    bound_output(error)
    assert len(json.dumps(error)) < 3 * MAX_OUTPUT_BYTES
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("", outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="y" * (MAX_OUTPUT_BYTES - 100))
        for _ in range(80)])])
    BoundOutputs().preprocess(nb, {})
    assert len(nbformat.writes(nb)) < MAX_TOTAL_BYTES + 2**20
    assert MAX_IMAGE_BYTES <= MAX_TOTAL_BYTES


def test_image_attributes_are_numbers_only():
    assert _dimension(300) == 300 and _dimension("300") == 300 and _dimension("12.5") == 12.5
    for bad in ("100 style=position:fixed", '1" onload="x', "-1", None, True, [], "1e9", 10**9):
        assert _dimension(bad) is None
    output = nbformat.v4.new_output("display_data", data={"image/png": "iVBOR"}, metadata={
        "image/png": {"width": "1 style=position:fixed;z-index:99999", "height": 40}})
    cell = nbformat.v4.new_code_cell("", outputs=[output])
    SanitizeSubmission().preprocess_cell(cell, {}, 0)
    assert cell.outputs[0].metadata == {"image/png": {"height": 40}}


# ----------------------------------------------------------------------------- summary, reasons

def test_reasons_are_kept_whole_and_the_summary_wraps_them():
    long_reason = "AssertionError: " + " ".join(f"word{i}" for i in range(120))
    result = report.StudentResult("alice", 0, 5, "graded", tests=[
        report.TestResult("add_hidden", 0, 3, long_reason)])
    text = report.format_summary(report.GradingReport("toy", Path("/out"), [result], 1.0))
    assert all(len(line) <= report.SUMMARY_WIDTH for line in text.splitlines())
    assert "word119" in text and "..." not in text
    cell = nbformat.v4.new_code_cell("", outputs=[nbformat.v4.new_output(
        "error", ename="AssertionError", evalue=long_reason[16:], traceback=[])])
    assert report.cell_reason(cell, 60) == long_reason


# ----------------------------------------------------------------------------- sandbox units

def test_bwrap_runs_with_a_minimal_environment(tmp_path, monkeypatch):
    """The launcher execs bwrap with LAUNCH_ENV only: bwrap is pid 1 in the sandbox and its
    environment is readable there at /proc/1/environ."""
    import subprocess

    if sandbox.missing():
        pytest.fail(f"the sandbox cannot be built here: {sandbox.missing()}")
    scratch = tmp_path / "scratch"
    (tmp_path / "work").mkdir()
    (tmp_path / "ipc").mkdir()
    probe = ("import os; print(open('/proc/1/environ','rb').read().decode(errors='replace')); "
             "print('SELF', sorted(os.environ))")
    env = dict(__import__("os").environ, GRADER_CANARY=CANARY,
               PYTHONPATH=str(Path(__file__).parents[2]))
    done = subprocess.run(
        [sys.executable, "-m", "autograder.sandbox", "--workdir", str(tmp_path / "work"),
         "--scratch", str(scratch), "--ipc-dir", str(tmp_path / "ipc"), "--writable", "out",
         "--", sys.executable, "-c", probe], env=env, capture_output=True, text=True,
        timeout=120)
    assert done.returncode == 0, done.stderr
    assert CANARY not in done.stdout and "GRADER_CANARY" not in done.stdout
    assert "SELF" in done.stdout


def test_bwrap_limits_the_disk(tmp_path):
    argv = sandbox.bwrap_argv(["true"], workdir=str(tmp_path / "w"), scratch=str(tmp_path),
                              ipc_dir=str(tmp_path), writable=["evidence"])
    joined = " ".join(argv)
    assert f"--size {sandbox.TMP_SIZE_LIMIT} --tmpfs /tmp" in joined
    assert f"--size {sandbox.WORKDIR_SIZE_LIMIT} --tmpfs {tmp_path / 'w'}" in joined


def test_bwrap_binds_the_file_count_limited_mounts():
    """With ScratchMounts, /tmp, the working folder and the writable subfolders are its tmpfs
    (bound), not bwrap's own (a size only)."""
    argv = sandbox.bwrap_argv(["true"], workdir="/w", scratch="/", ipc_dir="/i",
                              writable=["evidence"], mounts="/m")
    joined = " ".join(argv)
    assert "--tmpfs" not in argv and "--size" not in argv
    assert "--bind /m/tmp /tmp" in joined and "--bind /m/work /w" in joined
    assert "--bind /m/evidence /w/evidence" in joined
    assert joined.index("--bind /m/work /w") < joined.index("--ro-bind /usr /w/usr")
    assert joined.index("--bind /m/tmp /tmp") < joined.index("--dir /tmp/home")


def _active_mounts(folder, places, **kwargs):
    mounts = sandbox.ScratchMounts(folder, places, **kwargs).__enter__()
    if not mounts.active:
        pytest.fail("the file-count limits cannot be mounted here (no user namespaces?): "
                    "the sandbox falls back to bwrap's tmpfs, a size limit only")
    return mounts


def test_scratch_mounts_limit_size_and_files(tmp_path):
    """The holder mounts one tmpfs per place with the size and the nr_inodes asked for, seen
    by the worker through /proc/<holder>/root, and nowhere on the host; they go with it."""
    mounts = _active_mounts(tmp_path / "fs", {"tmp": 2**20, "evidence": 3 * 2**20},
                            files_limit=123)
    try:
        for name, size in (("tmp", 2**20), ("evidence", 3 * 2**20)):
            fs = os.statvfs(mounts.path(name))
            assert fs.f_files == 123 and fs.f_blocks * fs.f_frsize == size
            assert os.statvfs(tmp_path / "fs" / name).f_files != 123  # the host's folder
        assert mounts.full() == []
    finally:
        mounts.close()
    assert not mounts.active and list((tmp_path / "fs" / "evidence").iterdir()) == []
    broken = sandbox.ScratchMounts(tmp_path / "fs2", {"tmp": 2**20}, files_limit=-1)
    with broken:  # the holder cannot mount: not active, and nothing left running
        assert not broken.active and broken.full() == []


def test_a_kernel_cannot_create_unbounded_files(tmp_path):
    """A command under the launcher, with ScratchMounts, trying 200,000 empty files in ``.``,
    ``/tmp`` and ``evidence/``: each stops at the limit with ENOSPC, the command goes on, its
    known result file is read back, and the limits report says where."""
    import errno
    import subprocess

    (tmp_path / "work").mkdir()
    (tmp_path / "ipc").mkdir()
    (tmp_path / "work" / "given.txt").write_text("given")
    probe = textwrap.dedent("""
        import os
        open('evidence/add_hidden.npz', 'w').write('evidence')
        for where in ('.', '/tmp', 'evidence'):
            made = 0
            try:
                for i in range(200_000):
                    open(os.path.join(where, f'f{i}'), 'w').close()
                    made += 1
            except OSError as exc:
                print('FILES stopped', where, made, exc.errno)
        print('GIVEN', open('given.txt').read())
        """)
    limit = 2_000
    places = {"tmp": 2**24, "work": 2**24, "evidence": 2**24}
    mounts = _active_mounts(tmp_path / "fs", places, files_limit=limit)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "autograder.sandbox", "--workdir", str(tmp_path / "work"),
             "--scratch", str(tmp_path / "scratch"), "--ipc-dir", str(tmp_path / "ipc"),
             "--writable", "evidence", "--mounts", str(mounts.folder),
             "--mounts-pid", str(mounts.pid), "--", sys.executable, "-c", probe],
            env=dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2])),
            capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        stopped = [line.split() for line in done.stdout.splitlines()
                   if line.startswith("FILES stopped")]
        assert [line[2] for line in stopped] == [".", "/tmp", "evidence"], done.stdout
        for line in stopped:  # FILES stopped WHERE MADE ERRNO
            assert limit - 50 <= int(line[3]) < limit and int(line[4]) == errno.ENOSPC
        assert "GIVEN given" in done.stdout
        assert sorted(mounts.full()) == sorted(places)
        assert (mounts.path("evidence") / "add_hidden.npz").read_text() == "evidence"
        assert not (tmp_path / "work" / "f0").exists()
        assert not (tmp_path / "scratch" / "f0").exists()
    finally:
        mounts.close()
    messages = sandbox.limit_messages({"files_limit": limit, "files_limit_hits": ["evidence"]})
    assert messages == [f"the notebook tried to create more than {limit:,} files and folders "
                        "in evidence/: creating more failed with 'No space left on device'"]


def test_the_clean_room_cannot_create_unbounded_files(tmp_path):
    """The clean room's box: its command's results are read back from the limited out/, and a
    command that fills it is told ENOSPC and the box says where, for the clean room's reason."""
    import subprocess

    (tmp_path / "work" / "out").mkdir(parents=True)
    probe = textwrap.dedent("""
        import os
        open('out/cells.json', 'w').write('{}')
        made = 0
        try:
            for i in range(200_000):
                open(f'out/f{i}', 'w').close()
                made += 1
        except OSError as exc:
            print('FILES stopped', made, exc.errno)
        """)
    with sandbox.ConfinedCommand(tmp_path / "work", memory_limit=2**30) as box:
        if not box.mounts.active:
            pytest.fail("the file-count limits cannot be mounted here (no user namespaces?)")
        done = subprocess.run(box.argv([sys.executable, "-c", probe]), capture_output=True,
                              text=True, timeout=120, cwd=tmp_path / "work",
                              env=dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2])))
        assert done.returncode == 0, done.stderr
        made = int(done.stdout.split()[2])
        assert sandbox.FILES_LIMIT - 50 <= made < sandbox.FILES_LIMIT, done.stdout
        assert (box.results / "out" / "cells.json").read_text() == "{}"
        assert box.files_limit_hit() == (
            f"the clean room tried to create more than {sandbox.FILES_LIMIT:,} files and folders "
            "in out/: creating more failed with 'No space left on device'")
    assert not (tmp_path / "work" / "out" / "f0").exists()


@pytest.mark.parametrize("limited", [True, False], ids=["file-count-limited", "fallback"])
def test_a_job_reads_evidence_back_with_or_without_the_file_count_limit(
        tmp_path, monkeypatch, limited):
    """A SandboxJob's kernelspec joins the holder's mounts and its evidence is read back from
    them; where they cannot be made, the job is as before (evidence/ in the scratch folder, no
    file-count limit in its report)."""
    if not limited:
        monkeypatch.setattr(sandbox.ScratchMounts, "__enter__", lambda self: self)
    workdir = tmp_path / "autograded" / "s" / "toy"
    workdir.mkdir(parents=True)
    with sandbox.SandboxJob(workdir, scratch=tmp_path / "scratch",
                            evidence_names={"add_hidden.npz"}) as box:
        spec = json.loads(next((box.tmp / "spec").rglob("kernel.json")).read_text())
        assert ("--mounts-pid" in spec["argv"]) is limited
        if limited:
            assert box.mounts.active and box.report.files_limit == sandbox.FILES_LIMIT
            written = box.mounts.path(sandbox.EVIDENCE_DIR)
        else:
            assert box.report.files_limit is None
            written = tmp_path / "scratch" / sandbox.EVIDENCE_DIR
            written.mkdir(parents=True)
        (written / "add_hidden.npz").write_bytes(b"evidence")
        (written / "junk.npz").write_bytes(b"junk")
        report = box.finish()
        assert report.files_limit_hits == [] and not box.mounts.active
    assert [p.name for p in (workdir / "evidence").iterdir()] == ["add_hidden.npz"]


def test_only_known_evidence_is_copied_unit(tmp_path):
    source = tmp_path / "evidence"
    source.mkdir()
    for i in range(12_000):
        (source / f"junk{i}.npz").write_bytes(b"x")
    (source / "add_hidden.npz").write_bytes(b"evidence")
    copied = sandbox.copy_plain_files(source, tmp_path / "dest", names={"add_hidden.npz",
                                                                        "add_visible.npz"})
    assert copied == 1 and sorted(p.name for p in (tmp_path / "dest").iterdir()) == [
        "add_hidden.npz"]


def test_the_worker_runs_under_a_memory_limit():
    import resource

    from autograder.worker import WORKER_MEMORY_LIMIT, limit_own_memory

    before = resource.getrlimit(resource.RLIMIT_DATA)
    try:
        limit_own_memory(WORKER_MEMORY_LIMIT)
        assert resource.getrlimit(resource.RLIMIT_DATA)[0] == WORKER_MEMORY_LIMIT
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, before)


def test_kernels_get_a_cpu_quota(tmp_path):
    """Where cgroups allow it (root with a writable cpu controller, as in CI's container), each
    kernel's group has a CPU quota of DEFAULT_CPU_LIMIT CPUs."""
    if sandbox.Cgroups.available() is None:
        pytest.skip("no writable cgroups here: the re-grade-alone rule covers CPU contention")
    group = sandbox.Cgroups(f"agsb-test-{tmp_path.name[-8:]}", 2**28, 64)
    try:
        if not group.cpu_limited:
            pytest.skip("the cpu controller is not writable here")
        quotas = [d / "cpu.cfs_quota_us" for d in group.dirs] + [d / "cpu.max" for d in group.dirs]
        text = " ".join(p.read_text() for p in quotas if p.exists())
        assert str(int(sandbox.DEFAULT_CPU_LIMIT * 100_000)) in text
    finally:
        group.remove()


# ----------------------------------------------------------------------------- one real batch

HOSTILE = {
    # the batch stoppers of the issue: each must end as its own row
    "deep_json": None,  # written as raw bytes below
    "long_sum": None,  # a later cell x = 1+1+...+1, 3,000 terms (below)
    "meta_string": CORRECT,  # metadata.nbgrader of the visible test made a string
    # the grader's environment
    "environ": CORRECT + textwrap.dedent("""
        for pid in ('1', 'self'):
            try:
                print(pid, open(f'/proc/{pid}/environ', 'rb').read().decode(errors='replace'))
            except OSError as exc:
                print(pid, 'refused', exc)
        """),
    # floods
    "flood": CORRECT + textwrap.dedent("""
        import base64
        from IPython.display import display, Image
        print('x' * (40 * 2**20))
        display({'image/png': base64.b64encode(b'\\x89PNG' + b'0' * (30 * 2**20)).decode()},
                raw=True)
        """),
    "junk_evidence": CORRECT + textwrap.dedent("""
        import os
        os.makedirs('evidence', exist_ok=True)
        for i in range(12000):
            open(f'evidence/junk{i}.npz', 'w').close()
        """),
    "disk_hog": CORRECT + textwrap.dedent("""
        import os
        written = 0
        for where in ('.', '/tmp'):
            try:
                with open(os.path.join(where, 'big'), 'wb') as f:
                    for _ in range(2048):
                        f.write(b'0' * 2**20); written += 2**20
            except OSError as exc:
                print('DISK stopped', where, written // 2**20, type(exc).__name__)
            try:
                os.remove(os.path.join(where, 'big'))
            except OSError:
                pass
            written = 0
        """),
    "file_flood": CORRECT + textwrap.dedent("""
        import os
        for where in ('.', '/tmp', 'evidence'):
            made = 0
            try:
                os.makedirs(where, exist_ok=True)
                for i in range(200_000):
                    open(os.path.join(where, f'f{i}'), 'w').close()
                    made += 1
            except OSError as exc:
                print('FILES stopped', where, made, exc.errno)
        """),
    # the history holds no hidden source; the image attributes are numbers
    "history": CORRECT + textwrap.dedent("""
        import IPython
        ip = IPython.get_ipython()
        seen = []
        ip.events.register('pre_run_cell', lambda info: seen.append(info.raw_cell))
        """),
    "history_print": None,  # a later cell prints In, _ih and the history manager (below)
    "img_attr": CORRECT + textwrap.dedent("""
        from IPython.display import display
        display({'image/png': 'iVBORw0KGgo='}, raw=True, metadata={'image/png': {
            'width': '1 style=position:fixed;top:0;left:0;z-index:99999', 'height': 1}})
        """),
    # a crash in a later, non-graded cell: the TODO cell's points still stand
    "late_crash": None,
    # honest accidents
    "pasted_twice": CORRECT,
    "pasted_test": CORRECT,
    "extra_graded": CORRECT,
    "bystander": WRONG,
    "victim": CORRECT,
}
EXPECTED = {"deep_json": 0.0, "long_sum": 5.0, "meta_string": 5.0, "environ": 5.0,
            "flood": 5.0, "junk_evidence": 5.0, "disk_hog": 5.0, "file_flood": 5.0,
            "history": 5.0,
            "history_print": 5.0, "img_attr": 5.0, "late_crash": 5.0, "pasted_twice": 5.0,
            "pasted_test": 5.0, "extra_graded": 5.0, "bystander": 2.0, "victim": 5.0}
PRINT_HISTORY = ("print('IN', In)\nprint('IH', _ih)\nip = get_ipython()\n"
                 "print('HM', list(ip.history_manager.get_range(raw=True)))\n"
                 "import linecache\nprint('LC', [''.join(v[2]) for v in linecache.cache.values()"
                 " if isinstance(v, tuple) and len(v) > 2])")


def _append_cell(nb, source):
    nb.cells.append(nbformat.v4.new_code_cell(source))
    return nb


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    import os

    if sandbox.missing():
        pytest.fail(f"the sandbox cannot be built on this machine: {sandbox.missing()}")
    source = toy_course.write_source(tmp_path_factory.mktemp("hb-source"))
    masters, released = release(toy_course.ASSIGNMENT, source)
    master, student = masters[toy_course.ASSIGNMENT], released[toy_course.ASSIGNMENT]
    folder = tmp_path_factory.mktemp("hb-subs")
    for name, code in HOSTILE.items():
        if name == "deep_json":
            (folder / f"{name}.ipynb").write_bytes(_deep(5000))
            continue
        nb = build_submission(master, student, replace={"add_solution": code or CORRECT},
                              solved=False)
        if name == "meta_string":
            for cell in nb.cells:
                if cell.metadata.get("nbgrader", {}).get("grade_id") == "add_visible":
                    cell.metadata["nbgrader"] = "a string"
        elif name == "long_sum":
            _append_cell(nb, "x = " + "+".join(["1"] * 3000))
        elif name == "history":
            _append_cell(nb, "print('SEEN', seen)")
        elif name == "history_print":
            _append_cell(nb, PRINT_HISTORY)
        elif name == "late_crash":
            _append_cell(nb, "import os\nos._exit(1)")
        elif name == "pasted_twice":
            _graded_copy(nb, "add_solution")
        elif name == "pasted_test":
            _graded_copy(nb, "add_visible")
        elif name == "extra_graded":
            nb.cells.append(nbformat.v4.new_code_cell("assert True", metadata={"nbgrader": {
                "grade": True, "grade_id": "my_extra_test", "locked": True, "points": 4,
                "schema_version": 3, "solution": False, "task": False}}))
        nbformat.write(nb, folder / f"{name}.ipynb")
    out = tmp_path_factory.mktemp("hb-out")
    os.environ["GRADER_CANARY"] = CANARY
    try:
        result = grade(toy_course.ASSIGNMENT, folder, out, source_root=source, workers=2,
                       cell_timeout=20, submission_timeout=180, memory_limit=2 * 2**30,
                       echo=lambda *a: None)
    finally:
        os.environ.pop("GRADER_CANARY", None)
    return {"report": result, "out": out}


def _autograded_text(batch, student) -> str:
    path = batch["out"] / "course" / "autograded" / student / "toy" / "toy.ipynb"
    return path.read_text() if path.exists() else ""


def _outputs_text(batch, student) -> str:
    """Every output of the student's autograded notebook, as text. A cell's stream outputs are
    joined as Jupyter shows them: the kernel may flush one ``print`` in two pieces."""
    path = batch["out"] / "course" / "autograded" / student / "toy" / "toy.ipynb"
    nb = nbformat.read(path, as_version=4)
    return "\n".join("".join(o.get("text", "") if o.get("output_type") == "stream"
                             else "\n" + json.dumps(o) + "\n" for o in cell.get("outputs", []))
                     for cell in nb.cells)


def _feedback(batch, student) -> str:
    return (batch["out"] / "feedback" / student / "toy.html").read_text()


def test_batch_finishes_with_a_row_per_file(batch):
    result = batch["report"]
    scores = {s.student: s.score for s in result.students}
    assert scores == EXPECTED
    assert (batch["out"] / "grades.csv").read_text().count("\n") == len(EXPECTED) + 1
    by = result.by_student()
    assert "nests deeper" in by["deep_json"].reason
    assert any("could not be scanned" in f for f in by["long_sum"].flags)
    assert any("not an object" in f for f in by["meta_string"].flags)


def test_bwrap_environment_is_not_readable_from_the_kernel(batch):
    text = _outputs_text(batch, "environ") + _feedback(batch, "environ")
    assert "1 " in text and CANARY not in text and "GRADER_CANARY" not in text


def test_outputs_are_bounded(batch):
    size = len(_autograded_text(batch, "flood"))
    assert size < MAX_TOTAL_BYTES + 2**20, size
    assert (batch["out"] / "feedback" / "flood" / "toy.html").stat().st_size < \
        MAX_TOTAL_BYTES + 2**20
    assert "image removed by the grader" in _autograded_text(batch, "flood")


def test_only_known_evidence_is_copied(batch):
    by = batch["report"].by_student()
    assert by["junk_evidence"].score == 5.0
    assert by["junk_evidence"].seconds < 3 * max(by["victim"].seconds, 10)


def test_disk_is_bounded(batch):
    text = _outputs_text(batch, "disk_hog")
    lines = [line.split() for line in text.splitlines() if line.startswith("DISK stopped")]
    assert [line[2] for line in lines] == [".", "/tmp"], text
    for line in lines:  # DISK stopped WHERE MIB ERROR
        assert int(line[3]) <= max(sandbox.TMP_SIZE_LIMIT, sandbox.WORKDIR_SIZE_LIMIT) // 2**20


def test_the_file_count_is_bounded(batch):
    """200,000 empty files tried in ``.``, ``/tmp`` and ``evidence/``: each place stops at
    FILES_LIMIT, the row says so, and the points (the clean room's) stand."""
    text = _outputs_text(batch, "file_flood")
    lines = [line.split() for line in text.splitlines() if line.startswith("FILES stopped")]
    assert [line[2] for line in lines] == [".", "/tmp", "evidence"], text
    for line in lines:  # FILES stopped WHERE MADE ERRNO
        assert int(line[3]) < sandbox.FILES_LIMIT and line[4] == "28"
    row = batch["report"].by_student()["file_flood"]
    assert row.score == 5.0
    for where in ("its working folder", "/tmp", "evidence/"):
        assert any(f"more than {sandbox.FILES_LIMIT:,} files and folders in {where}" in flag
                   for flag in row.flags), row.flags
    assert not batch["report"].by_student()["victim"].flags


def test_honest_accidents_cost_nothing(batch):
    by = batch["report"].by_student()
    for name in ("pasted_twice", "pasted_test"):
        assert by[name].score == 5.0 and by[name].status == "graded"
        assert any("same grade_id" in f for f in by[name].flags), by[name].flags
    assert by["extra_graded"].score == 5.0
    assert any("does not have" in f for f in by["extra_graded"].flags)
    assert not any("deleted" in f for f in by["extra_graded"].flags)


def test_feedback_shows_no_hidden_source_and_no_injected_attribute(batch):
    for student in ("history", "history_print"):
        text = _outputs_text(batch, student) + _feedback(batch, student)
        assert "IN " in text or "SEEN" in text
        for line in ("add(-1, 1) == 0", "add(2.5, 2.5) == 5"):
            assert line not in text, student
    page = _feedback(batch, "img_attr")
    images = re.findall(r"<img[^>]*>", page)
    assert images
    assert all("style" not in tag for tag in images), images


def test_a_crash_after_the_todo_cells_keeps_their_points(batch):
    late = batch["report"].by_student()["late_crash"]
    assert late.score == 5.0 and late.status == "graded"
    assert any("notebook's own run failed" in f for f in late.flags)
    assert "5 / 5" in _feedback(batch, "late_crash")


def test_results_json_keeps_every_row_and_flag(batch):
    data = json.loads((batch["out"] / "results.json").read_text())
    assert sorted(s["student"] for s in data["students"]) == sorted(EXPECTED)


def test_a_timeout_is_regraded_alone(tmp_path):
    """A submission that runs past a time limit while graded beside others is graded again
    alone before the timeout stands (it keeps its reason, and says it was re-graded)."""
    source = toy_course.write_source(tmp_path / "source")
    folder = tmp_path / "subs"
    toy_course.write_submissions(folder, source, names=("correct", "hang"))
    result = grade(toy_course.ASSIGNMENT, folder, tmp_path / "out", source_root=source,
                   workers=2, cell_timeout=3, submission_timeout=60, echo=lambda *a: None)
    by = result.by_student()
    assert by["correct"].score == toy_course.MAX_SCORE
    assert any("graded again alone" in f for f in by["hang"].flags)
    assert not any("graded again alone" in f for f in by["correct"].flags)


def test_a_step_that_raises_costs_only_its_own_submission(tmp_path, monkeypatch):
    """Whatever a per-submission step raises (here the scan, for one submission) becomes that
    submission's row with the reason; the batch goes on."""
    import autograder.grade as pipeline

    source = toy_course.write_source(tmp_path / "source")
    folder = tmp_path / "subs"
    toy_course.write_submissions(folder, source, names=("correct", "wrong"))
    scan_notebook = pipeline.scan.scan_notebook

    def scan_that_raises(nb, *args):
        if any("int(a)" in cell.source for cell in nb.cells):
            raise RecursionError("maximum recursion depth exceeded")
        return scan_notebook(nb, *args)

    monkeypatch.setattr(pipeline.scan, "scan_notebook", scan_that_raises)
    result = grade(toy_course.ASSIGNMENT, folder, tmp_path / "out", source_root=source,
                   workers=1, cell_timeout=20, submission_timeout=60, use_sandbox=False,
                   echo=lambda *a: None)
    by = result.by_student()
    assert by["correct"].score == toy_course.MAX_SCORE
    assert by["wrong"].status == "not graded" and "RecursionError" in by["wrong"].reason
    assert (tmp_path / "out" / "feedback" / "wrong" / "toy.html").exists()
    assert "wrong" in (tmp_path / "out" / "grades.csv").read_text()
