"""nbgrader preprocessor for the feedback students receive."""

from __future__ import annotations

from nbgrader import utils
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Unicode

HIDDEN_BEGIN = "BEGIN HIDDEN TESTS"


class HideHiddenTestTracebacks(NbGraderPreprocessor):
    """Shorten each error of a hidden test cell to its one-line message.

    A traceback quotes the source lines it passes through: the hidden test lines of the cell and
    the grader's own code. ``ClearHiddenTests`` strips the hidden block from the cell source but
    not from the outputs, so this runs before it. What the student keeps is the verdict, e.g.
    ``AssertionError: gate must be initialised at 0 ...``.
    """

    note = Unicode(
        "(traceback hidden: this is a hidden test)", help="Line that replaces the traceback"
    ).tag(config=True)

    def preprocess_cell(self, cell, resources, cell_index):
        if cell.cell_type != "code" or not utils.is_grade(cell) or HIDDEN_BEGIN not in cell.source:
            return cell, resources
        outputs = []
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                message = f"{output.ename}: {output.evalue}" if output.evalue else output.ename
                output.traceback = [message, self.note]
            elif output.output_type == "stream" and output.name == "stderr":
                # a warning quotes the line that raised it; keep only the fact (stderr scores 0)
                output.text = "(stderr output of a hidden test: hidden)\n"
            outputs.append(output)
        cell.outputs = outputs
        return cell, resources
