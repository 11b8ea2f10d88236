"""nbgrader configuration of the course, in one place.

Two ways to use it:

- from Python (the grading pipeline, the notebook generator)::

      from autograder.nbgrader_config import nbgrader_config
      config = nbgrader_config(root="/tmp/course")     # a traitlets Config
      # or: configure(c, root=...) on an existing Config

- as a plain nbgrader config file, e.g.
  ``nbgrader generate_assignment part1_fusion_strategies --config autograder/nbgrader_config.py``
  (nbgrader then defines ``get_config`` and this file fills it in).

The file imports nothing from the repository at module level, so that it also works when it is
copied into a course directory as ``nbgrader_config.py``.
"""

from __future__ import annotations

COURSE_ID = "fusion-from-first-principles"

# Assignments of the course: the folder names under source/ (one notebook each, same name).
ASSIGNMENTS = ("part1_fusion_strategies", "part2_attention_that_selects",
               "part3_who_gets_to_speak", "part4_align_before_fuse")

# Per-cell wall clock limit while autograding (nbgrader's Execute.timeout). The slowest graded
# cell (an accuracy check) takes a few seconds on a 2-core CPU and the notebook shortens its
# demonstration training under NBGRADER_EXECUTION, so a minute is generous and still stops a
# hanging cell. The grading command can lower or raise it (--cell-timeout).
CELL_TIMEOUT_S = 60

# Harmless stderr that must not zero a graded cell: nbgrader gives 0 to any test cell with
# stderr output. Python warnings ("UserWarning: ..."), tqdm's IProgress notice and text
# progress bars, matplotlib's first-run font cache message. Errors are never stream output,
# so this cannot hide a failing test.
IGNORED_STDERR = (
    r"\w*Warning:"
    r"|IProgress not found"
    r"|\d+%\|"
    r"|Matplotlib is building the font cache"
)

# Stub nbgrader writes in place of each solution block of a code cell.
CODE_STUB = "# YOUR CODE HERE\nraise NotImplementedError()"
TEXT_STUB = "YOUR ANSWER HERE"


def configure(c, *, root=None, cell_timeout: int | None = None):
    """Fill the traitlets config ``c`` with the course settings; return ``c``.

    ``root`` is the nbgrader course directory (source/, release/, submitted/, ...; default:
    nbgrader's, the working directory). ``cell_timeout`` overrides ``CELL_TIMEOUT_S``.
    """
    c.CourseDirectory.course_id = COURSE_ID
    if root is not None:
        c.CourseDirectory.root = str(root)

    # generate_assignment: stubs, and hidden tests stripped from the release (nbgrader default).
    c.ClearSolutions.code_stub = {"python": CODE_STUB}
    c.ClearSolutions.text_stub = TEXT_STUB
    c.ClearSolutions.enforce_metadata = True
    c.ClearHiddenTests.enforce_metadata = True

    # autograde: restore locked cells (nbgrader always does) and re-add deleted graded cells.
    c.OverwriteCells.add_missing_cells = True
    c.Execute.timeout = int(cell_timeout if cell_timeout is not None else CELL_TIMEOUT_S)
    c.Execute.interrupt_on_timeout = True
    c.Execute.execute_retries = 0  # a kernel that dies is the submission's doing: don't rerun
    c.IgnorePattern.pattern = IGNORED_STDERR
    c.IgnorePattern.enabled = True
    c.LimitOutput.max_lines = 1000
    c.LimitOutput.max_traceback = 100
    # nbgrader's autograde steps, with its Execute replaced by one that bounds the bytes of
    # every output as it arrives and never sends a hidden test's source to the kernel, and
    # the same bounds once more after the run (autograder/outputs.py)
    c.Autograde.autograde_preprocessors = [
        "autograder.outputs.BoundedExecute",
        "nbgrader.preprocessors.IgnorePattern",
        "nbconvert.preprocessors.ClearMetadataPreprocessor",
        "nbgrader.preprocessors.LimitOutput",
        "autograder.outputs.BoundOutputs",
        "nbgrader.preprocessors.SaveAutoGrades",
        "nbgrader.preprocessors.AssignLatePenalties",
        "nbgrader.preprocessors.CheckCellMetadata",
    ]

    # generate_feedback: grades and styles (nbgrader's defaults), then replace the tracebacks of
    # failed hidden tests by their one-line message (a traceback quotes the hidden source), then
    # strip the hidden test blocks. Without the last two the feedback leaks the hidden tests.
    # SanitizeSubmission removes the submission's active content (scripts, event handlers,
    # javascript: links, iframes, SVG, widgets) before nbconvert renders the page;
    # AnnotateFeedback names each test and labels the shortened grading run's outputs.
    c.GenerateFeedback.preprocessors = [
        "nbgrader.preprocessors.GetGrades",
        "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
        "autograder.feedback.SanitizeSubmission",
        "autograder.feedback.HideHiddenTestTracebacks",
        "autograder.feedback.AnnotateFeedback",
        "nbgrader.preprocessors.ClearHiddenTests",
    ]
    # the page: nbgrader's feedback template with a header that loads nothing from the network
    # (no MathJax: formulas stay TeX) and forbids scripts, and a table of contents naming tests
    # (nbgrader's API forces the template name "feedback"; a template file given by its path
    # is looked up first, and its `extends 'index.html.j2'` finds nbgrader's feedback page)
    c.HTMLExporter.template_file = _feedback_template()

    # zip_collect: LMS archives (or plain <student_id>.ipynb files) -> submitted/<id>/<assignment>/
    c.ZipCollectApp.collector_plugin = "autograder.course.SubmissionCollector"
    c.ZipCollectApp.strict = False
    return c


def _feedback_template() -> str:
    """The course's feedback page template, ``templates/feedback_page.html.j2`` next to this
    file."""
    import os

    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates",
                        "feedback_page.html.j2")


def nbgrader_config(root=None, cell_timeout: int | None = None):
    """A fresh traitlets ``Config`` with the course settings (see ``configure``)."""
    from traitlets.config import Config

    return configure(Config(), root=root, cell_timeout=cell_timeout)


if "get_config" in globals():  # loaded by nbgrader/traitlets as a config file
    configure(get_config())  # noqa: F821 (defined by the traitlets config loader)
