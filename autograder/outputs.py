"""The notebook's run in the kernel, bounded: what it prints or displays, and what it is told.

nbgrader's ``LimitOutput`` counts lines only, and display data is not limited at all: one
40 MB stdout line and one 40 MB PNG made a 91 MiB feedback page and autograded notebook, and
held the trusted worker's memory. ``BoundedExecute`` (nbgrader's ``Execute``, registered in
``autograder.nbgrader_config``) bounds every output as it arrives from the kernel:

- ``MAX_OUTPUT_BYTES`` of text per output (a stream, an HTML or plain-text result, an error's
  message and traceback), cut with a note;
- ``MAX_IMAGE_BYTES`` per image (its base64 text): a larger one is replaced by a note;
- ``MAX_TOTAL_BYTES`` for the whole notebook, after the run (``BoundOutputs``): outputs past it
  are replaced by one note per cell.

``BoundOutputs`` also applies the per-output bounds again (outputs replaced through
``update_display_data`` and anything else that did not pass through ``BoundedExecute``).

``BoundedExecute`` also never sends a hidden test's source to the kernel: the cell runs
without its ``BEGIN HIDDEN TESTS`` block (the grader decides those points in its clean room),
and gets its source back afterwards. The kernel's input history (``In``, ``_ih``, the history
manager, IPython's events, ``linecache``) therefore never holds hidden source that a later cell
could print into the feedback.
"""

from __future__ import annotations

import json
import re

from nbgrader.preprocessors import Execute, NbGraderPreprocessor

MAX_OUTPUT_BYTES = 256 * 2**10  # text of one output
MAX_IMAGE_BYTES = 2 * 2**20  # one image, as the notebook stores it (base64)
MAX_TOTAL_BYTES = 8 * 2**20  # every output of the notebook together
TEXT_NOTE = "\n... output cut by the grader: more than {limit} of text ...\n"
IMAGE_NOTE = "(image removed by the grader: {size}, more than {limit})"
TOTAL_NOTE = "(outputs removed by the grader: the notebook's outputs passed {limit} in total)"
HIDDEN_BLOCK = re.compile(r"^[ \t]*#+[ \t]*BEGIN HIDDEN TESTS.*?^[ \t]*#+[ \t]*END HIDDEN TESTS"
                          r"[^\n]*\n?", re.MULTILINE | re.DOTALL)
HIDDEN_STANDIN = "# (hidden test: run by the grader, not in this notebook)\n"
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/svg+xml")


def _mib(n: int) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n // 2**10} KiB"


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _cut(text: str, limit: int) -> str:
    raw = text.encode("utf-8", errors="replace")
    if len(raw) <= limit:
        return text
    return raw[:limit].decode("utf-8", errors="ignore") + TEXT_NOTE.format(limit=_mib(limit))


def size_of(output) -> int:
    """Bytes an output takes in the notebook (its JSON)."""
    try:
        return len(json.dumps(output))
    except (TypeError, ValueError):
        return len(str(output))


def bound_output(output) -> None:
    """Bound one output in place (see the module doc)."""
    kind = output.get("output_type")
    if kind == "stream":
        output["text"] = _cut(_text(output.get("text", "")), MAX_OUTPUT_BYTES)
    elif kind == "error":
        output["ename"] = _cut(str(output.get("ename", "")), 200)
        output["evalue"] = _cut(str(output.get("evalue", "")), MAX_OUTPUT_BYTES)
        lines, budget = [], MAX_OUTPUT_BYTES
        for line in output.get("traceback", []) or []:
            line = _cut(str(line), budget)
            budget -= len(line.encode("utf-8", errors="replace"))
            lines.append(line)
            if budget <= 0:
                break
        output["traceback"] = lines
    elif kind in ("display_data", "execute_result"):
        data = output.get("data", {})
        for mime in list(data):
            value = _text(data[mime]) if not isinstance(data[mime], dict) else data[mime]
            if mime in IMAGE_TYPES:
                size = len(value) if isinstance(value, str) else size_of(value)
                if size > MAX_IMAGE_BYTES:
                    del data[mime]
                    data["text/plain"] = IMAGE_NOTE.format(size=_mib(size),
                                                           limit=_mib(MAX_IMAGE_BYTES))
            elif isinstance(value, str):
                data[mime] = _cut(value, MAX_OUTPUT_BYTES)
            elif size_of(value) > MAX_OUTPUT_BYTES:  # JSON data (widgets, application/json)
                del data[mime]
                data.setdefault("text/plain", "(output removed by the grader: too large)")


def _note(text: str):
    from nbformat.v4 import new_output

    return new_output("stream", name="stdout", text=text + "\n")


class _Budget:
    """The notebook's total output bytes so far."""

    def __init__(self):
        self.used = 0

    def admit(self, outs: list, output) -> bool:
        """Count ``output``; False when it passes the notebook's total (a note takes its
        place, once per cell)."""
        size = size_of(output)
        if self.used + size <= MAX_TOTAL_BYTES:
            self.used += size
            return True
        note = TOTAL_NOTE.format(limit=_mib(MAX_TOTAL_BYTES))
        if not any(o.get("text", "").strip() == note for o in outs):
            outs.append(_note(note))
        return False


def quick_size(output) -> int:
    """About the bytes of an output's text and data, without serialising it (this runs on
    every message from the kernel)."""
    total = 0
    for key in ("text", "evalue"):
        value = output.get(key)
        total += len(value) if isinstance(value, str) else 0
    for value in (output.get("data") or {}).values():
        total += len(value) if isinstance(value, str) else MAX_OUTPUT_BYTES + 1
    for line in output.get("traceback") or ():
        total += len(line) if isinstance(line, str) else 0
    return total


class BoundedExecute(Execute):
    """nbgrader's ``Execute`` with each output bounded as it arrives, and no hidden source sent
    to the kernel. (The notebook's total is bounded after the run, by ``BoundOutputs``: a live
    plot cleared and redrawn a hundred times is counted once.)"""

    def preprocess_cell(self, cell, resources, index):
        source = cell.get("source", "")
        hidden = cell.get("cell_type") == "code" and HIDDEN_BLOCK.search(source)
        if hidden:
            cell.source = HIDDEN_BLOCK.sub(HIDDEN_STANDIN, source)
        try:
            return super().preprocess_cell(cell, resources, index)
        finally:
            cell.source = source

    def output(self, outs, msg, display_id, cell_index):
        out = super().output(outs, msg, display_id, cell_index)
        if out is not None and quick_size(out) > min(MAX_OUTPUT_BYTES, MAX_IMAGE_BYTES):
            bound_output(out)
        return out


class BoundOutputs(NbGraderPreprocessor):
    """After the run: every output within the bounds of ``BoundedExecute``."""

    def preprocess(self, nb, resources):
        budget = _Budget()
        for cell in nb.cells:
            if cell.get("cell_type") != "code":
                continue
            kept = []
            for output in cell.get("outputs", []):
                bound_output(output)
                if budget.admit(kept, output):
                    kept.append(output)
            cell.outputs = kept
        return nb, resources
