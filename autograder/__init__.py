"""The course's autograder: nbgrader configuration, hidden-test helpers and a grading command.

    python -m autograder grade part1_fusion_strategies submissions/ --out grading-output
    python -m autograder examples part1_fusion_strategies --out example-submissions
    python -m autograder demo            # build the example submissions and grade them

Modules: ``nbgrader_config`` (course settings), ``course`` (course directories, collecting),
``grade`` (the pipeline), ``worker`` (grades one submission at a time in its own process),
``scan`` (static tamper scan), ``feedback`` (feedback preprocessor), ``examples`` (example
submissions), ``hidden`` (what the hidden test cells call), ``measure_thresholds`` (the
accuracy-threshold measurement), ``notebooks`` (``make notebooks``). See autograder/README.md.
"""
