"""The claim tests and the notebooks quote each other word for word: every sentence a claim test
of Parts 1 and 3 quotes (in its docstring, between quotes) is in that part's master, text or
figure title. (Parts 2 and 4 follow the same convention; their quotes are not parsed here.)"""

import ast
import re
from pathlib import Path

import nbformat
import pytest

from autograder.masters import find_masters

TESTS = Path(__file__).parents[1]
# a quote opens after a space or "(" (not the apostrophe of "figure's") and closes before one
PARTS = {"part1_fusion_strategies": ("part1/test_claims.py", r"(?<!\w)'(.+?)'(?=[\s.,:;)]|$)"),
         "part3_who_gets_to_speak": ("part3/test_claims.py", r'(?<!\w)"(.+?)"(?=[\s.,:;)]|$)')}
NOT_THE_NOTEBOOKS = ("cross-attention excels on class 2",)  # quoted as the original's claim


def words(text: str) -> str:
    """The text as read: single spaces, no Markdown emphasis, LaTeX as plain words."""
    text = text.replace("*", "").replace("$", "").replace("\\gamma", "gamma")
    return " ".join(text.replace("\\beta", "beta").split())


def quotes(test_file: str, pattern: str) -> list[tuple[str, str]]:
    """(test name, quoted piece) for every quote of every test docstring; "[...]" and "..."
    split a quote into pieces."""
    tree = ast.parse((TESTS / test_file).read_text())
    out = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            doc = words(ast.get_docstring(node) or "")
            for quote in re.findall(pattern, doc, re.S):
                for piece in re.split(r"\[\.\.\.\]|\.\.\.", quote):
                    if len(piece.strip(" .,:")) > 3:
                        out.append((node.name, piece.strip(" .,:")))
    return out


@pytest.mark.parametrize("stem", list(PARTS))
def test_every_quote_of_a_claim_test_is_in_the_notebook(stem):
    master = next(m for m in find_masters() if m.stem == stem)
    cells = nbformat.read(str(master), as_version=4).cells
    text = words("\n".join(c.source for c in cells))
    found = quotes(*PARTS[stem])
    assert len(found) >= 10, found  # the pattern still finds the quotes
    missing = [(name, q) for name, q in found if q not in text and q not in NOT_THE_NOTEBOOKS]
    assert not missing, missing
