"""Defences of the hidden tests against a kernel the student has tampered with.

The hidden tests run in the student's kernel, after the student's code. Two things protect them:

- ``load_pristine_fusionlab()`` loads ``fusionlab`` afresh from its files under a private module
  name, so a student who reassigns ``fusionlab.check.reference_gated`` (say) changes a copy the
  tests never use;
- ``find_tampering()`` reports functions reachable from torch, ``fusionlab``, the grader and
  builtins whose code does not come from the installed files (e.g. ``torch.allclose = lambda
  *a, **k: True`` or ``nn.LayerNorm.forward = ...``), torch function/dispatch modes, trace
  hooks and import hooks defined in the notebook. A hidden test that finds any fails with the
  list: tampering earns no credit.

This is a guard against monkeypatching, not a sandbox: code in the same process could in
principle defeat any in-process check, which is why the grading pipeline also scans every
submission's source outside the kernel (``autograder.scan``).
"""

from __future__ import annotations

import builtins
import functools
import importlib.util
import itertools
import math
import os
import random
import sys
import sysconfig
import types
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
FUSIONLAB_DIR = REPO_ROOT / "fusionlab"
AUTOGRADER_DIR = REPO_ROOT / "autograder"
FUSIONLAB_MODULES = ("utils", "models", "data", "train", "check")

_counter = itertools.count()


def _allowed_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths}
    roots |= {str(FUSIONLAB_DIR), str(AUTOGRADER_DIR), os.path.dirname(os.__file__)}
    for module in (torch, builtins):  # torch wherever it is installed
        file = getattr(module, "__file__", None)
        if file:
            roots.add(os.path.dirname(os.path.dirname(os.path.realpath(file))))
    return tuple(sorted(os.path.realpath(r) + os.sep for r in roots))


ALLOWED_ROOTS = _allowed_roots()


@functools.lru_cache(maxsize=None)
def _from_installed_file(filename: str | None) -> bool:
    if not filename:
        return False
    if filename.startswith("<frozen "):  # stdlib modules frozen into the interpreter
        return True
    return os.path.realpath(filename).startswith(ALLOWED_ROOTS) and os.path.exists(filename)


# ----------------------------------------------------------------------------- pristine fusionlab

def load_fresh(path: Path, name: str | None = None) -> types.ModuleType:
    """Execute the Python file ``path`` as a new module that is not registered in sys.modules."""
    name = name or f"_autograder_fresh_{Path(path).stem}_{next(_counter)}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_pristine_fusionlab() -> types.SimpleNamespace:
    """``fusionlab``'s modules executed afresh from ``fusionlab/``, as a namespace with one
    attribute per module (``.check``, ``.train``, ...). Nothing the notebook did to the
    imported ``fusionlab`` reaches these copies."""
    package = f"_autograder_pristine_fusionlab_{next(_counter)}"
    spec = importlib.util.spec_from_file_location(
        package, FUSIONLAB_DIR / "__init__.py", submodule_search_locations=[str(FUSIONLAB_DIR)]
    )
    root = importlib.util.module_from_spec(spec)
    sys.modules[package] = root  # needed while the modules' relative imports run
    try:
        spec.loader.exec_module(root)
        modules = {}
        for name in FUSIONLAB_MODULES:
            sub_spec = importlib.util.spec_from_file_location(
                f"{package}.{name}", FUSIONLAB_DIR / f"{name}.py"
            )
            if f"{package}.{name}" in sys.modules:
                modules[name] = sys.modules[f"{package}.{name}"]
                continue
            module = importlib.util.module_from_spec(sub_spec)
            sys.modules[f"{package}.{name}"] = module
            sub_spec.loader.exec_module(module)
            setattr(root, name, module)
            modules[name] = module
    finally:
        for key in [k for k in sys.modules if k == package or k.startswith(package + ".")]:
            del sys.modules[key]
    return types.SimpleNamespace(package=root, **modules)


# ----------------------------------------------------------------------------- code comparison

def _same_code(a: types.CodeType, b: types.CodeType) -> bool:
    if a.co_code != b.co_code or a.co_names != b.co_names or a.co_varnames != b.co_varnames:
        return False
    if len(a.co_consts) != len(b.co_consts):
        return False
    for x, y in zip(a.co_consts, b.co_consts):
        if isinstance(x, types.CodeType) and isinstance(y, types.CodeType):
            if not _same_code(x, y):
                return False
        elif type(x) is not type(y) or (x != y and not (x != x and y != y)):  # NaN-safe
            return False
    return True


def _functions_of(value):
    """The plain functions behind a class attribute (method, property, static/class method)."""
    if isinstance(value, (staticmethod, classmethod)):
        value = value.__func__
    if isinstance(value, property):
        return [f for f in (value.fget, value.fset, value.fdel) if f is not None]
    if isinstance(value, types.FunctionType):
        return [value]
    return []


def _module_file(module) -> str | None:
    file = getattr(module, "__file__", None) if isinstance(module, types.ModuleType) else None
    return os.path.realpath(file) if file else None


def _compare_module(live: types.ModuleType, fresh: types.ModuleType, label: str) -> list[str]:
    """Differences between a loaded fusionlab module and a fresh copy of its file."""
    problems = []
    live_file = getattr(live, "__file__", None)
    expected_file = getattr(fresh, "__file__", None)
    if not live_file or os.path.realpath(live_file) != os.path.realpath(expected_file):
        return [f"{label} is not the module of {expected_file} (sys.modules was changed)"]
    live_vars = vars(live)
    for name, value in vars(fresh).items():
        if name.startswith("__"):
            continue
        if isinstance(value, types.FunctionType) and value.__module__ == fresh.__name__:
            current = live_vars.get(name)
            if not isinstance(current, types.FunctionType) or not _same_code(
                current.__code__, value.__code__
            ):
                problems.append(f"{label}.{name} was replaced")
        elif isinstance(value, type) and value.__module__ == fresh.__name__:
            current = live_vars.get(name)
            if not isinstance(current, type) or current.__qualname__ != value.__qualname__:
                problems.append(f"{label}.{name} was replaced")
                continue
            problems += _compare_class(current, value, f"{label}.{name}")
        elif isinstance(value, types.ModuleType):
            current = live_vars.get(name)
            if current is not value and _module_file(current) != _module_file(value):
                problems.append(f"{label}.{name} was replaced")
    return problems


def _compare_class(live: type, fresh: type, label: str) -> list[str]:
    problems = []
    live_dict, fresh_dict = vars(live), vars(fresh)
    for name in set(live_dict) | set(fresh_dict):
        if name in ("__dict__", "__weakref__", "__doc__", "__module__", "__annotations__"):
            continue
        fresh_fns = _functions_of(fresh_dict.get(name))
        live_fns = _functions_of(live_dict.get(name))
        if not fresh_fns and not live_fns:
            continue
        if len(fresh_fns) != len(live_fns) or not all(
            _same_code(a.__code__, b.__code__) for a, b in zip(live_fns, fresh_fns)
        ):
            problems.append(f"{label}.{name} was replaced")
    if [b.__qualname__ for b in live.__bases__] != [b.__qualname__ for b in fresh.__bases__]:
        problems.append(f"the base classes of {label} were changed")
    return problems


# ----------------------------------------------------------------------------- torch, builtins

def _defining_file(value) -> tuple[bool, str]:
    """(known, file) for a callable: is it defined in an installed file, and which file."""
    if isinstance(value, types.FunctionType):
        return True, value.__code__.co_filename
    if isinstance(value, types.MethodType):
        return _defining_file(value.__func__)
    if isinstance(value, (staticmethod, classmethod)):
        return _defining_file(value.__func__)
    if isinstance(value, property):
        for fn in (value.fget, value.fset, value.fdel):
            if fn is not None and not _from_installed_file(_defining_file(fn)[1]):
                return _defining_file(fn)
        return False, ""
    return False, ""


def _installed_callable(value) -> bool:
    """Whether a callable comes from installed code: a Python function from an installed file,
    or an object whose type is defined in an installed or built-in module (e.g. a C tracer)."""
    known, filename = _defining_file(value)
    if known:
        return _from_installed_file(filename)
    module_name = getattr(type(value), "__module__", "") or ""
    if module_name in sys.builtin_module_names or module_name == "builtins":
        return True
    return _from_installed_file(getattr(sys.modules.get(module_name), "__file__", None))


def _check_namespace(namespace: dict, label: str, problems: list[str]) -> None:
    for name, value in list(namespace.items()):
        if isinstance(value, (type, types.ModuleType)):
            continue  # classes and modules are walked on their own
        if isinstance(value, functools.partial):
            value = value.func
        known, filename = _defining_file(value)
        if known and not _from_installed_file(filename):
            problems.append(f"{label}.{name} was replaced (its code comes from {filename})")
        elif isinstance(value, types.BuiltinFunctionType):
            # torch.cat = torch.stack: a public name bound to another public function
            other = getattr(value, "__name__", name)
            if other != name and not name.startswith("_") and namespace.get(other) is value:
                problems.append(f"{label}.{name} was replaced by {label}.{other}")
        elif not known and callable(value) and not _installed_callable(value):
            problems.append(f"{label}.{name} was replaced by a {type(value).__qualname__} "
                            "defined in the notebook")


def _torch_namespaces():
    """(label, namespace dict) of everything the tests and fusionlab reach in torch."""
    import torch.nn.functional as F
    from torch import nn

    spaces = [
        ("torch", vars(torch)),
        ("torch.nn.functional", vars(F)),
        ("torch.nn.init", vars(nn.init)),
        ("torch.autograd", vars(torch.autograd)),
        ("torch.random", vars(torch.random)),
        ("torch.optim", vars(torch.optim)),
        ("builtins", vars(builtins)),
        ("math", vars(math)),
        ("random", vars(random)),
    ]
    classes = [torch.Tensor, nn.Parameter, torch.Generator, torch.optim.Optimizer,
               torch.optim.Adam]
    classes += [value for value in vars(nn).values()
                if isinstance(value, type) and issubclass(value, nn.Module)]
    for cls in classes:
        for klass in cls.__mro__:
            if klass is object or not klass.__module__.startswith("torch"):
                continue
            spaces.append((f"{klass.__module__}.{klass.__qualname__}", vars(klass)))
    seen, unique = set(), []
    for label, space in spaces:
        if id(space) not in seen:
            seen.add(id(space))
            unique.append((label, space))
    return unique


def _check_modules(problems: list[str]) -> None:
    """The modules themselves: sys.modules entries must be the installed files."""
    for name in ("torch", "torch.nn", "torch.nn.functional", "torch.nn.modules.module",
                 "torch.optim", "builtins", "math", "random", "numpy", "tqdm", "tqdm.auto"):
        module = sys.modules.get(name)
        if module is None:
            continue
        if not isinstance(module, types.ModuleType):
            problems.append(f"sys.modules[{name!r}] is not a module")
            continue
        file = getattr(module, "__file__", None)
        if file is not None and not _from_installed_file(file):
            problems.append(f"sys.modules[{name!r}] comes from {file}")
    for name in ("nn", "optim", "autograd", "random"):
        value = getattr(torch, name, None)
        if not isinstance(value, types.ModuleType) or not _from_installed_file(
            getattr(value, "__file__", None)
        ):
            problems.append(f"torch.{name} was replaced")


def _check_hooks(problems: list[str]) -> None:
    if torch._C._len_torch_function_stack() > 0:
        problems.append("a torch function mode (TorchFunctionMode) is active")
    if torch._C._len_torch_dispatch_stack() > 0:
        problems.append("a torch dispatch mode (TorchDispatchMode) is active")
    for label, hook in (("sys.settrace", sys.gettrace()), ("sys.setprofile", sys.getprofile())):
        if hook is not None and not _installed_callable(hook):
            problems.append(f"a {label} hook defined in the notebook is installed")
    for finder in sys.meta_path:
        cls = finder if isinstance(finder, type) else type(finder)
        if cls.__module__ in ("_frozen_importlib", "_frozen_importlib_external", "zipimport"):
            continue
        file = getattr(sys.modules.get(cls.__module__), "__file__", None)
        if not _from_installed_file(file):
            problems.append(f"an import hook ({cls.__qualname__}) was added to sys.meta_path")


def _check_builtins() -> list[str]:
    """The builtins module, checked with attribute access only, since the checks below call
    builtins (``isinstance``, ``len``, ...) and could not trust them otherwise."""
    problems = []
    for name, value in builtins.__dict__.items():
        cls = value.__class__
        if cls is types.BuiltinFunctionType:
            if value.__name__ != name and name not in ("open",):
                problems.append(f"builtins.{name} was replaced by builtins.{value.__name__}")
        elif cls is types.FunctionType or cls is types.MethodType:
            code = (value.__func__ if cls is types.MethodType else value).__code__
            try:
                installed = _from_installed_file(code.co_filename)
            except Exception:  # noqa: BLE001 (a replaced builtin broke the path functions)
                installed = False
            if not installed:
                problems.append(f"builtins.{name} was replaced (its code comes from "
                                f"{code.co_filename})")
    return problems


def find_tampering(pristine: types.SimpleNamespace | None = None) -> list[str]:
    """Everything that shows the kernel's torch, fusionlab, builtins or import system was
    modified by the notebook; empty when nothing was."""
    problems = _check_builtins()
    if problems:
        return problems  # the other checks rely on builtins
    try:
        return _find_tampering(pristine)
    except Exception as error:  # noqa: BLE001 (a tampered object can make any check raise)
        return [f"the tamper check could not run ({type(error).__name__}: {error})"]


def _find_tampering(pristine) -> list[str]:
    problems: list[str] = []
    _check_modules(problems)
    _check_hooks(problems)
    for label, space in _torch_namespaces():
        _check_namespace(space, label, problems)
    pristine = pristine or load_pristine_fusionlab()
    for name in ("__init__", *FUSIONLAB_MODULES):
        key = "fusionlab" if name == "__init__" else f"fusionlab.{name}"
        live = sys.modules.get(key)
        if live is None:
            continue
        fresh = pristine.package if name == "__init__" else getattr(pristine, name)
        problems += _compare_module(live, fresh, key)
    for key, module in list(sys.modules.items()):
        if key == "autograder" or key.startswith("autograder."):
            file = getattr(module, "__file__", None)
            if not file or not os.path.realpath(file).startswith(str(AUTOGRADER_DIR) + os.sep):
                problems.append(f"sys.modules[{key!r}] is not the grader's file")
    return list(dict.fromkeys(problems))
