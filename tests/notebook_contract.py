"""What every master's notebook test reads: cells by id, and the order of its sections."""

from __future__ import annotations


def by_id(nb) -> dict:
    return {cell.get("id"): cell for cell in nb.cells}


def assert_sections_in_order(nb, sections: tuple[str, ...]) -> None:
    """The ``## `` headings that start with ``sections`` come in that order, and the notebook
    ends with the last of them (the reflection)."""
    headings = [c.source.splitlines()[0] for c in nb.cells if c.cell_type == "markdown"
                and c.source.startswith("## ")]
    found = [next(h for h in headings if h.startswith(s)) for s in sections]
    assert [headings.index(h) for h in found] == sorted(headings.index(h) for h in found)
    assert nb.cells[-1].source.startswith(sections[-1])
