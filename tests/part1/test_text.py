"""The Part 1 master's text: its source credited, its counts true, the code it shows public."""

import re

import nbformat
import pytest

from autograder import REPO_ROOT
from autograder.masters import find_masters
from fusionlab import show_source

PART1 = next(m for m in find_masters() if m.stem == "part1_fusion_strategies")


@pytest.fixture(scope="module")
def cells():
    return {c.get("id"): c for c in nbformat.read(str(PART1), as_version=4).cells}


def markdown(cells) -> str:
    return "\n".join(c.source for c in cells.values() if c.cell_type == "markdown")


def test_the_source_is_credited_and_the_original_notebook_explained(cells):
    title = cells["title"].source
    assert "Multimodal Fusion Strategies from First Principles" in title and "Vizuara" in title
    assert '"the original notebook"' in title  # defines the phrase before any other use
    ids = list(cells)
    uses = [i for i in ids if "original notebook" in cells[i].source and i != "title"]
    assert uses and all(ids.index(i) > ids.index("title") for i in uses)
    readme = (REPO_ROOT / "README.md").read_text()
    assert "Multimodal Fusion Strategies from First" in readme and "Vizuara" in readme


def test_the_text_counts_the_six_fusion_models_it_trains(cells):
    factories = re.findall(r'^    "([\w -]+)":', cells["train-original"].source, re.M)
    fusion = [name for name in factories if "only" not in name]
    assert len(fusion) == 6
    text = markdown(cells)
    assert not re.search(r"\bfive (fusion )?(models|architectures)", text, re.I), "count of five"
    assert "six fusion models" in cells["title"].source
    assert "six fusion architectures" in cells["why"].source
    assert "six fusion models" in cells["results"].source


def test_every_shown_source_is_public_code(cells):
    shown = [m for c in cells.values() if c.cell_type == "code"
             for m in re.findall(r"show_source\(([\w.]+)\)", c.source)]
    assert "fusionlab.train.fit" in shown and "fusionlab.data.draw_original" in shown
    for name in shown:
        assert not any(part.startswith("_") for part in name.split(".")), name


def test_show_source_refuses_private_code():
    from fusionlab import data

    def _private():
        pass

    with pytest.raises(ValueError, match="private"):
        show_source(_private)
    show_source(data.draw_xor)  # public: shown (printed outside IPython)


def test_the_notebook_summarises_with_fusionlab_results(cells):
    assert "def summarize" not in "\n".join(c.source for c in cells.values())
    assert "from fusionlab.results import format_table, summarize" in cells["training-setup"].source


@pytest.mark.parametrize("stem", ["part1_fusion_strategies", "part3_who_gets_to_speak",
                                  "part4_align_before_fuse"])
def test_the_top_gives_the_expected_time_and_where_to_get_help(stem):
    """Issue 20: each part says, before its first code cell, how long it takes and where to get
    help (the repository's issues). (Parts 1, 3 and 4: Part 2's text is another change's.)"""
    master = next(m for m in find_masters() if m.stem == stem)
    cells = nbformat.read(str(master), as_version=4).cells
    first_code = next(i for i, c in enumerate(cells) if c.cell_type == "code")
    top = "\n".join(c.source for c in cells[:first_code] if c.cell_type == "markdown")
    assert re.search(r"Estimated time: \d+ minutes", top), stem
    assert "https://github.com/fusionlab-course/fusionlab/issues" in top, stem
