"""What the hidden test cells of the notebooks call::

    from autograder.hidden import part1 as _grader
    _grader.bidir_equivalence(BidirectionalCrossAttention)

Every access to ``autograder.hidden.part1`` executes ``checks_part1.py`` afresh from its file:
the suite is never stored in this package or in sys.modules, and this package refuses to have
it reassigned. A student who imported the grader earlier and patched its functions patched a
copy that the hidden tests no longer use. See ``integrity`` for the other defences.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
import types
from pathlib import Path

_SUITES = {"part1": "checks_part1.py"}
_counter = itertools.count()


def _load_suite(name: str) -> types.ModuleType:
    path = Path(__file__).with_name(_SUITES[name])
    unique = f"_autograder_hidden_{name}_{next(_counter)}"
    spec = importlib.util.spec_from_file_location(unique, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _HiddenPackage(types.ModuleType):
    """This package's module type: the suites are loaded on every access and read-only."""

    def __getattribute__(self, name):
        if name in _SUITES:
            return _load_suite(name)
        return super().__getattribute__(name)

    def __setattr__(self, name, value):
        if name in _SUITES or name == "__class__":
            raise AttributeError(f"{__name__}.{name} is read-only")
        super().__setattr__(name, value)

    def __delattr__(self, name):
        if name in _SUITES or name == "__class__":
            raise AttributeError(f"{__name__}.{name} is read-only")
        super().__delattr__(name)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(_SUITES))


sys.modules[__name__].__class__ = _HiddenPackage
