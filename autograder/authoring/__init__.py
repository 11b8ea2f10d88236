"""The authoring tools: what course maintainers run to build the course, never the grading run.

- ``notebooks``: the student and solution notebooks from each master (``make notebooks``), with
  ``rubric`` stamping each graded cell's points from the exercise registry;
- ``known_answers``: the self-checks' stored facts, from the trusted references;
- ``thresholds``: the accuracy cells' thresholds, measured over grading seeds;
- ``examples``: demo submissions built from the masters (``make demo``);
- ``release``: the student-facing copy of the course;
- ``trial``: one TODO cell tried as the self-check and the grader do, for the tests and tools.

The grading pipeline is the rest of ``autograder`` (``grade``, ``worker``, ``pool``, ``cluster``,
``sandbox``, ``cleanroom``, ``verdicts``, ``report``, ...); ``autograder.masters`` is what both
read of a master notebook; the trusted references live in ``autograder/hidden/``.
"""
