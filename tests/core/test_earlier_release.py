"""The import paths of the earlier release still work, for one release (``fusionlab.earlier``).

Students' copies of earlier notebooks (``work/``, Colab) import Part 2's and Part 3's modules
from their old places, call ``check_part2.<exercise>`` in their self-check cells and
``evidence.<exercise>`` in their graded cells.
"""

from __future__ import annotations

import importlib

import pytest

from autograder.authoring import trial
from fusionlab import check, earlier
from fusionlab.grading import registry


@pytest.mark.parametrize("old", sorted(earlier.MOVED))
def test_a_moved_module_is_the_module_that_replaced_it(old):
    module = importlib.import_module(old)
    assert module is importlib.import_module(earlier.MOVED[old])
    assert getattr(importlib.import_module("fusionlab"), old.rsplit(".", 1)[1]) is module


def test_a_classes_identity_is_kept_through_the_old_path():
    from fusionlab.scenes import SortOfClevr as old  # noqa: F401 (the path under test)

    from fusionlab.part2.scenes import SortOfClevr

    assert old is SortOfClevr


@pytest.mark.parametrize("old, exercise", [
    ("fusionlab.check_part2", "attention"),
    ("fusionlab.check_part3", "gmu"),
    ("fusionlab.check_part3", "tanh_gated_block"),  # the earlier name of tanh_gated
])
def test_an_earlier_self_check_prints_what_check_prints(old, exercise, capsys):
    name = check.ALIASES.get(exercise, exercise)
    target = trial.namespace(registry.exercise(name))[registry.exercise(name).target]
    getattr(importlib.import_module(old), exercise)(target)
    before = capsys.readouterr().out
    getattr(check, name)(target)
    assert before == capsys.readouterr().out and "passed" in before


@pytest.mark.parametrize("old", earlier.RETIRED)
def test_an_earlier_graded_cell_prints_a_note_and_records_nothing(old, capsys, tmp_path,
                                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(old)
    assert module.attention("attn_accuracy", object, train=True) is None
    module.export("gmu_accuracy", None, object)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and all("outside this notebook" in line for line in out)
    assert list(tmp_path.iterdir()) == []


def test_nothing_else_is_answered_by_the_old_paths():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("fusionlab.no_such_module")
