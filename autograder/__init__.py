"""The course's autograder: nbgrader configuration, hidden-test helpers and a grading command.

    python -m autograder grade part1_fusion_strategies submissions/ --out grading-output
    python -m autograder examples part1_fusion_strategies --out example-submissions
    python -m autograder demo            # build the example submissions and grade them

Modules: ``nbgrader_config`` (course settings), ``course`` (course directories, collecting),
``grade`` (the pipeline), ``worker`` (grades one submission at a time in its own process),
``scan`` (static tamper scan), ``feedback`` (feedback preprocessor), ``examples`` (example
submissions), ``verdicts`` and ``hidden`` (the trusted verdicts, decided outside the
student's kernel from the evidence the graded cells export), ``measure_thresholds`` (the
accuracy-threshold measurement), ``notebooks`` (``make notebooks``). See autograder/README.md.
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SOURCE_ROOT = REPO_ROOT / "source"  # the instructor masters, one folder per assignment
