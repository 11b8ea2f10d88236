"""nbgrader preprocessor for the feedback students receive."""

from __future__ import annotations

import re

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


# ----------------------------------------------------------------------------- active content

# What a feedback page may show of a submission: text, tables, lists, code, links and images.
SAFE_TAGS = frozenset({
    "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "details", "div", "dl", "dt", "em",
    "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "kbd", "li", "ol", "p", "pre", "s",
    "samp", "small", "span", "strong", "sub", "summary", "sup", "table", "tbody", "td", "tfoot",
    "th", "thead", "tr", "u", "ul",
})
SAFE_ATTRIBUTES = {
    "*": ["class", "id", "title"],
    "a": ["href", "title"],
    "img": ["src", "alt", "title", "width", "height"],
    "td": ["colspan", "rowspan", "align"],
    "th": ["colspan", "rowspan", "align"],
}
SAFE_LINK = re.compile(r"^(https?:|mailto:|#)", re.IGNORECASE)
SAFE_IMAGE = re.compile(r"^(https?:|data:image/(png|jpeg|gif);base64,)", re.IGNORECASE)
# output types rendered as they are: the template escapes them, or they are images
SAFE_OUTPUT_TYPES = ("text/plain", "text/latex", "image/png", "image/jpeg")
REMOVED_NOTE = "(output removed from the feedback: {types})"
# an image's width or height: a number of pixels, nothing else (nbconvert writes the metadata
# into the <img> tag unquoted, so ``100 style=...`` would add an attribute)
DIMENSION = re.compile(r"^\d{1,5}(\.\d{1,3})?$")


def _dimension(value) -> int | float | None:
    """``value`` as a width or height in pixels (a JSON number or a numeric string), None when it
    is anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) and 0 < value < 100_000:
        return value
    if isinstance(value, str) and DIMENSION.match(value.strip()):
        number = float(value)
        return int(number) if number == int(number) else number
    return None


def _safe_attribute(tag: str, name: str, value: str) -> bool:
    if name not in SAFE_ATTRIBUTES.get(tag, []) + SAFE_ATTRIBUTES["*"]:
        return False
    compact = re.sub(r"[\s\x00-\x1f]+", "", value)  # "java\nscript:" is javascript:
    if tag == "a" and name == "href":
        return bool(SAFE_LINK.match(compact))
    if tag == "img" and name == "src":
        return bool(SAFE_IMAGE.match(compact))
    if name in ("width", "height", "colspan", "rowspan"):
        return bool(DIMENSION.match(value))
    return True


def clean_html(text: str) -> str:
    """``text`` (HTML) with only ``SAFE_TAGS`` and their ``SAFE_ATTRIBUTES`` kept: no script,
    style, iframe, object, form or SVG element, no event handler, no ``javascript:`` or
    ``data:`` link. Other tags are shown as text, comments are dropped."""
    import bleach

    return bleach.clean(str(text), tags=SAFE_TAGS, attributes=_safe_attribute,
                        protocols=["http", "https", "mailto", "data"], strip=False,
                        strip_comments=True)


def markdown_to_safe_html(source: str, attachments: dict | None = None) -> str:
    """A markdown cell rendered as nbconvert renders it (math left as TeX), then cleaned, as
    one HTML block that a second markdown pass leaves as it is (no blank line inside)."""
    from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath

    renderer = IPythonRenderer(escape=False, attachments=attachments or {},
                               exclude_anchor_links=True)
    rendered = clean_html(MarkdownWithMath(renderer=renderer).render(source))
    # a blank line would end the HTML block; an empty comment keeps <pre> lines as they were
    body = re.sub(r"\n[ \t]*(?=\n)", "\n<!-- -->", rendered.strip())
    return f'<div class="submitted-markdown">\n{body}\n</div>'


class SanitizeSubmission(NbGraderPreprocessor):
    """Remove active content of the submission from the feedback, before nbconvert renders it.

    The feedback page shows the student's notebook. Whatever the student wrote or displayed
    must not run in the browser of whoever opens the page (the student, a TA, the instructor):

    - markdown and raw cells are rendered to HTML here and cleaned (``clean_html``);
    - outputs keep text, TeX (escaped by the template) and PNG/JPEG images; HTML and markdown
      outputs are cleaned; JavaScript, SVG, widget views and any other type are removed, and
      the output metadata that asks for an iframe (``isolated``) is dropped;
    - attachments other than PNG/JPEG/GIF images and the notebook's widget state are dropped.
    """

    def preprocess(self, nb, resources):
        nb.metadata.pop("widgets", None)
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell, resources, cell_index):
        attachments = cell.get("attachments")
        if attachments:
            for name in list(attachments):
                bundle = attachments[name]
                for mime in list(bundle):
                    if mime not in ("image/png", "image/jpeg", "image/gif"):
                        del bundle[mime]
                if not bundle:
                    del attachments[name]
        if cell.cell_type in ("markdown", "raw"):
            source = cell.source if cell.cell_type == "markdown" else f"```\n{cell.source}\n```"
            cell.source = markdown_to_safe_html(source, cell.get("attachments"))
            cell.pop("attachments", None)  # embedded by the rendering above
            if cell.cell_type == "raw":
                cell.cell_type = "markdown"
        elif cell.cell_type == "code":
            for output in cell.get("outputs", []):
                self._clean_output(output)
        return cell, resources

    @staticmethod
    def _clean_output(output) -> None:
        if output.output_type not in ("display_data", "execute_result"):
            return  # stream and error text is escaped by the template
        data, removed = output.get("data", {}), []
        for mime in list(data):
            if mime in SAFE_OUTPUT_TYPES:
                continue
            if mime == "text/html":
                data[mime] = clean_html(data[mime])
            elif mime == "text/markdown":
                data["text/html"] = markdown_to_safe_html(data.pop(mime))
            else:
                removed.append(mime)
                del data[mime]
        metadata = output.get("metadata", {})
        metadata = metadata if isinstance(metadata, dict) else {}
        output["metadata"] = {
            mime: {k: _dimension(v) for k, v in value.items()
                   if k in ("width", "height") and _dimension(v) is not None}
            for mime, value in metadata.items()
            if mime in ("image/png", "image/jpeg") and isinstance(value, dict)}
        if removed and not data:
            data["text/plain"] = REMOVED_NOTE.format(types=", ".join(removed))


# ----------------------------------------------------------------------------- what each test is

TEST_TITLE = re.compile(
    r"^#\s*(?:(?:hidden|visible)\s+test\b\s*(?:\(\s*[\d.]+\s*points?\s*\))?\s*:?)?\s*(.*?)"
    r"\s*(?:\(\s*[\d.]+\s*points?\s*\))?\s*$", re.IGNORECASE)
SHORTENED_NOTE = (
    '<div class="shortened-run"><strong>Shortened grading run.</strong> The output of the next '
    "cell comes from the grading run, where <code>NBGRADER_EXECUTION</code> is set and the "
    "notebook trains its demonstrations with fewer seeds and epochs (<code>GRADING = True</code>)"
    ". It is not what the notebook shows when you run it, and no points depend on it.</div>"
)
SHORTENED_FLAG = "GRADING"


def cell_title(source: str) -> str:
    """What a test cell checks, from its first comment line: ``# Hidden test: the gate
    receives a gradient (3 points)`` -> ``the gate receives a gradient``."""
    for line in source.splitlines():
        if line.strip().startswith("#") and "BEGIN HIDDEN TESTS" not in line:
            match = TEST_TITLE.match(line.strip())
            return match.group(1) if match else ""
        if line.strip():
            return ""
    return ""


def _statements(source: str) -> list[tuple[set[str], set[str]]]:
    """(names read, names bound) of each top-level statement of a code cell; empty when it is
    not valid Python."""
    import ast

    from .scan import _python_source

    try:
        tree = ast.parse(_python_source(source))
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        return []  # not Python, or too deeply nested for Python's parser
    statements = []
    for statement in tree.body:
        read, bound = set(), set()
        for node in ast.walk(statement):
            if isinstance(node, ast.Name):
                (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                bound.add(node.name)
        statements.append((read, bound))
    return statements


def shortened_cells(nb) -> list[int]:
    """Code cells whose results depend on the shortened grading run: they read ``GRADING``
    (the notebook's flag for ``NBGRADER_EXECUTION``) or a name computed from it, directly or
    through other such names. The cell that sets ``GRADING`` is not one of them (the names
    it computes from ``GRADING`` count, though)."""
    tainted = {SHORTENED_FLAG}
    cells = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        reads, sets_flag = False, False
        for read, bound in _statements(cell.source):
            sets_flag |= SHORTENED_FLAG in bound
            if read & tainted:
                reads = True
                tainted |= bound - {SHORTENED_FLAG}
        if reads and not sets_flag:
            cells.append(index)
    return cells


class AnnotateFeedback(NbGraderPreprocessor):
    """Say what the feedback shows: each test cell gets ``metadata.feedback`` with the title of
    what it checks and its verdict (the first line of its error), which the course's feedback
    template shows in the table of contents; the outputs of the shortened grading run get a
    note saying so."""

    def preprocess(self, nb, resources):
        nb, resources = super().preprocess(nb, resources)
        for index in reversed(shortened_cells(nb)):
            if nb.cells[index].get("outputs"):
                from nbformat.v4 import new_markdown_cell

                note = new_markdown_cell(SHORTENED_NOTE)
                note.metadata["feedback"] = {"note": "shortened"}
                note.pop("id", None)
                nb.cells.insert(index, note)
        return nb, resources

    def preprocess_cell(self, cell, resources, cell_index):
        if cell.cell_type == "code" and utils.is_grade(cell):
            verdict = ""
            for output in cell.get("outputs", []):
                if output.output_type == "error":
                    verdict = f"{output.ename}: {output.evalue}" if output.evalue else output.ename
                    break
            from .intake import printable

            first_line = verdict.splitlines()[0] if verdict else ""
            cell.metadata["feedback"] = {"title": cell_title(cell.source),
                                         "verdict": printable(first_line)}
        return cell, resources
