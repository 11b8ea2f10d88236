"""The course's autograder: nbgrader configuration, hidden-test helpers and a grading command.

    python -m autograder grade part1_fusion_strategies submissions/ --out grading-output
    python -m autograder examples part1_fusion_strategies --out example-submissions
    python -m autograder demo            # every assignment's examples, graded
    python -m autograder release --out DIR   # the student-facing copy of the course

Modules: ``nbgrader_config`` (course settings), ``course`` (course directories, shards),
``intake`` (student ids, safe LMS zips, printable text), ``grade`` (the pipeline's steps),
``pool`` and ``worker`` (worker processes, each grading one submission at a time),
``cluster`` (the same jobs on a Dask cluster: ``grade --scheduler``), ``preflight`` (the
solution and the untouched notebook graded before anyone),
``sandbox`` (bubblewrap around every kernel), ``gradebook`` (sqlite in and out), ``report``
(results, reasons, feedback pages, summary), ``verdicts`` and ``hidden`` (the trusted verdicts,
decided outside the student's kernel from the evidence the graded cells export), ``scan``
(static tamper scan, advisory), ``submission`` and ``outputs`` (a submitted notebook read and
bounded), ``cleanroom`` (the TODO cells run alone, sandboxed), ``feedback`` (feedback
preprocessors), ``masters`` (what a master notebook is, for both halves). The maintainers'
tools are in ``authoring`` (``notebooks``, ``rubric``, ``known_answers``, ``thresholds``,
``examples``, ``release``, ``trial``). See autograder/README.md.
"""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SOURCE_ROOT = REPO_ROOT / "source"  # the instructor masters, one folder per assignment


def kernel_env(base: dict | None = None) -> dict[str, str]:
    """What every kernel of the course runs with (the graded ones, the solution runs, nbval):
    this checkout first on ``PYTHONPATH`` so that it imports this ``fusionlab``, one thread
    for the tiny models (fast and deterministic) and a fixed hash seed."""
    env = dict(os.environ if base is None else base)
    path = [str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(path))
    env["FUSIONLAB_NUM_THREADS"] = "1"
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONHASHSEED"] = "0"
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"  # ipykernel's debugger start-up notice
    return env
