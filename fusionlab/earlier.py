"""The import paths of the earlier release, kept for one release.

Students' copies of the notebooks (``work/``, Colab) import modules that have moved since, and
call functions that graded cells no longer need. This module is their one home: importing
``fusionlab`` installs ``EarlierPaths``, which answers each old path with the module that
replaced it (the same module object, so classes and ``isinstance`` agree).

- ``MOVED``: each part's topic code now lives in its package (``fusionlab.part2.scenes``, ...),
  and the self-checks of every part in ``fusionlab.check``;
- ``RETIRED``: the modules whose functions recorded evidence in the student's kernel. The
  grader now runs the TODO cells itself, outside the notebook (``fusionlab.grading.cleanroom``),
  so each of their functions only prints ``NOTE``.

Remove both tables in the next release (``tests/core/test_earlier_release.py`` says what they keep).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types

MOVED = {
    "fusionlab.scenes": "fusionlab.part2.scenes",
    "fusionlab.scene_models": "fusionlab.part2.models",
    "fusionlab.scene_experiments": "fusionlab.part2.experiments",
    "fusionlab.gating": "fusionlab.part3.models",
    "fusionlab.gating_data": "fusionlab.part3.data",
    "fusionlab.check_part2": "fusionlab.check",
    "fusionlab.check_part3": "fusionlab.check",
}
RETIRED = ("fusionlab.evidence", "fusionlab.evidence_part2", "fusionlab.evidence_part3")

NOTE = ("{name}: nothing is recorded here any more: the grader runs your TODO cells again, on "
        "their own, outside this notebook, with inputs of its own. Use the self-check above "
        "(fusionlab.check) to see how your code does.")


def _retired_module(name: str) -> types.ModuleType:
    """A module whose every public attribute is a function that prints ``NOTE``."""
    module = types.ModuleType(name, f"Retired: {NOTE.format(name=name)}")

    def __getattr__(attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)

        def note(*args, **kwargs) -> None:
            print(NOTE.format(name=f"{name}.{attr}"))

        return note

    module.__getattr__ = __getattr__
    return module


class EarlierPaths(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old module paths of ``MOVED`` and ``RETIRED``, and nothing else."""

    def find_spec(self, fullname, path, target=None):
        if fullname in MOVED or fullname in RETIRED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        if spec.name in MOVED:
            return importlib.import_module(MOVED[spec.name])
        return _retired_module(spec.name)

    def exec_module(self, module) -> None:
        pass  # the module is complete: the moved one has run, the retired one needs nothing


def install() -> None:
    if not any(isinstance(finder, EarlierPaths) for finder in sys.meta_path):
        sys.meta_path.append(EarlierPaths())
