"""The evidence toolkit: how a collector runs the student's code and records what it did.

An evidence dict maps names to NumPy arrays (text as 0-d string arrays); it is saved with
``np.savez`` and read back with ``allow_pickle=False``: data, never objects. Conventions:

- ``status``: ``"ok"``, or why the class could not be built (``build_module``);
- ``types``, ``params``, ``bases``, ``shared``: JSON text describing the built module;
- ``init/<name>``: the initial ``state_dict``; ``state/<name>``: after ``perturb`` (grading) or
  after loading known weights (``loaded``: their names; a self-check), see ``module_state``;
- ``out/<case>``: outputs; ``sub/<attribute>``: a submodule's output on its own inputs;
- ``grad/<name>``: gradients of a random projection of the output;
- ``error/<key>``: why ``<key>`` is missing (the exception it raised).

Every helper here catches what the student's code raises and records it: a collector never
raises.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..utils import cpu_threads
from .seeds import Stream, generator

PERTURB_SCALE = 0.2  # default initial values (a LayerNorm's ones and zeros) can hide mistakes


def describe_error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def to_array(value) -> np.ndarray:
    """A plain float32 copy of a tensor's data (ignoring what a Tensor subclass overrides)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"got a {type(value).__name__}, not a tensor")
    with torch._C.DisableTorchFunctionSubclass():
        data = torch.Tensor.detach(value)
        data = torch.Tensor.cpu(data)
        data = torch.Tensor.to(data, torch.float32)
        return np.array(torch.Tensor.numpy(data), dtype=np.float32, copy=True)


def record(ev: dict, key: str, compute):
    """``ev[key] = compute()`` as an array, or ``ev["error/" + key]`` with the reason; returns
    the tensor, or None."""
    try:
        out = compute()
    except NotImplementedError:
        ev[f"error/{key}"] = np.array("NotImplementedError: not implemented yet")
        return None
    except Exception as error:  # noqa: BLE001 (the student's code can raise anything)
        ev[f"error/{key}"] = np.array(describe_error(error))
        return None
    if not isinstance(out, torch.Tensor):
        ev[f"error/{key}"] = np.array(f"returned a {type(out).__name__}, not a tensor")
        return None
    ev[key] = to_array(out)
    return out


def record_pair(ev: dict, key: str, compute, names: tuple[str, str]):
    """Record a call that should return a pair of tensors as ``key/<names[0]>`` and
    ``key/<names[1]>``, or ``error/key``; returns the pair, or None."""
    try:
        out = compute()
    except NotImplementedError:
        ev[f"error/{key}"] = np.array("NotImplementedError: not implemented yet")
        return None
    except Exception as error:  # noqa: BLE001
        ev[f"error/{key}"] = np.array(describe_error(error))
        return None
    if not (isinstance(out, (tuple, list)) and len(out) == 2
            and all(isinstance(t, torch.Tensor) for t in out)):
        ev[f"error/{key}"] = np.array(f"returned a {type(out).__name__}, not a tuple "
                                      f"({names[0]}, {names[1]}) of two tensors")
        return None
    ev[f"{key}/{names[0]}"], ev[f"{key}/{names[1]}"] = to_array(out[0]), to_array(out[1])
    return out


def stored_state(module: nn.Module, prefix: str = "", ancestors=()) -> dict[str, torch.Tensor]:
    """The module's parameters and persistent buffers by ``state_dict`` name, read from where
    ``nn.Module`` stores them: no method of the class (``state_dict``,
    ``_save_to_state_dict``, ``named_parameters``) is called, so none can report other values
    than the module holds. A shared submodule appears under each of its names, as in
    ``state_dict``; a module that contains itself is not followed round."""
    found: dict[str, torch.Tensor] = {}
    if id(module) in ancestors:
        return found
    ancestors = (*ancestors, id(module))
    non_persistent = module.__dict__.get("_non_persistent_buffers_set", set())
    for name, value in module.__dict__.get("_parameters", {}).items():
        if isinstance(value, torch.Tensor):
            found[prefix + name] = value
    for name, value in module.__dict__.get("_buffers", {}).items():
        if isinstance(value, torch.Tensor) and name not in non_persistent:
            found[prefix + name] = value
    for name, child in module.__dict__.get("_modules", {}).items():
        if isinstance(child, nn.Module):
            found.update(stored_state(child, f"{prefix}{name}.", ancestors))
    return found


def record_state(ev: dict, prefix: str, module: nn.Module) -> None:
    """``prefix + name`` for every entry of the module's state (``stored_state``)."""
    for name, value in stored_state(module).items():
        ev[f"{prefix}{name}"] = to_array(value)


def stored_attribute(module: nn.Module, name: str):
    """``module.name`` as stored (a parameter, a buffer or a plain attribute), without running
    a property or ``__getattr__`` of the class; None when there is none."""
    for table in (module._parameters, module._buffers, module._modules, module.__dict__):
        if name in table:
            return table[name]
    return None


# The modules whose classes a collector names by identity (torch's and the package's own).
_KNOWN_MODULES = ("torch.nn", "fusionlab.models", "fusionlab.part2.models",
                  "fusionlab.part3.models", "fusionlab.part4.models")
_KNOWN_CLASSES: dict[type, str] = {}


def remember_known_classes() -> None:
    """Note every ``nn.Module`` class of torch and of the package under its name, by identity.
    The clean room calls this before any submitted code runs: a submission can rename a
    class (``CrossAttentionLayer.__name__ = "Module"``) but cannot make another object of it,
    so a borrowed layer is still named for what it is."""
    import importlib

    for module_name in _KNOWN_MODULES:
        for name, obj in vars(importlib.import_module(module_name)).items():
            if isinstance(obj, type) and issubclass(obj, nn.Module):
                _KNOWN_CLASSES.setdefault(obj, name)


def class_name(cls: type) -> str:
    """The name of ``cls``: as noted by ``remember_known_classes`` for torch's and the
    package's classes, its own ``__name__`` otherwise."""
    if not _KNOWN_CLASSES:
        remember_known_classes()
    try:
        return _KNOWN_CLASSES.get(cls) or str(cls.__name__)
    except TypeError:  # a metaclass whose instances cannot be hashed
        return str(getattr(cls, "__name__", "?"))


def record_structure(ev: dict, module: nn.Module) -> None:
    """What the module is made of: its direct submodules' types, parameter and buffer names,
    its classes, and the attributes that hold the same module."""
    ev["types"] = np.array(json.dumps(
        {name: class_name(type(child)) for name, child in module.named_children()}))
    ev["params"] = np.array(json.dumps([n for n, _ in module.named_parameters()]))
    ev["buffers"] = np.array(json.dumps([n for n, _ in module.named_buffers()]))
    ev["bases"] = np.array(json.dumps([class_name(c) for c in type(module).__mro__]))
    ev["modules"] = np.array(json.dumps(sorted({class_name(type(m)) for m in module.modules()})))
    children = list(module._modules.items())  # named_children() skips a repeated module
    shared = [[a, b] for i, (a, x) in enumerate(children) for b, y in children[i + 1:] if x is y]
    ev["shared"] = np.array(json.dumps(shared))


def perturb(module: nn.Module, seed: int, exercise: str, skip: tuple[str, ...] = ()) -> None:
    """Move every parameter (but ``skip``) off its initial value by a random step: two
    LayerNorms at their default weights compute the same, which would hide two swapped norms."""
    g = generator(seed, exercise, Stream.PERTURB)
    with torch.no_grad():
        for name, param in module.named_parameters():
            step = PERTURB_SCALE * torch.randn(tuple(param.shape), generator=g)
            if name not in skip:
                param.add_(step)


def module_state(ev: dict, module: nn.Module, weights, seed: int, exercise: str,
                 fixed: dict | None = None) -> None:
    """``init/`` (the state as built), then the known ``weights`` (a self-check: ``loaded``
    names those taken) or, when grading, a seeded step off every initial value followed by the
    ``fixed`` values (e.g. a gate opened to a set value), then ``state/`` and the structure."""
    record_state(ev, "init/", module)
    if weights is not None:
        ev["loaded"] = np.array(json.dumps(load_weights(module, weights)))
    else:
        perturb(module, seed, exercise, skip=tuple(fixed or ()))
        load_weights(module, fixed or {})
    record_state(ev, "state/", module)
    record_structure(ev, module)


def guarded_module_state(ev: dict, module: nn.Module, weights, seed: int, exercise: str,
                         fixed: dict | None = None, first=None) -> None:
    """``module_state``, with what it raises (e.g. a property of the class) recorded as
    ``error/state``. ``first()``, when given, runs before it under the same guard: what an
    exercise records of the module as it was built."""
    try:
        if first is not None:
            first()
        module_state(ev, module, weights, seed, exercise, fixed)
    except Exception as error:  # noqa: BLE001 (the student's code can raise anything)
        ev["error/state"] = np.array(describe_error(error))


def other_size(ev: dict, key: str, seed: int, cls, *args, **kwargs):
    """A second module for a shape case at other sizes: ``cls(*args, **kwargs)`` after
    ``torch.manual_seed(seed + 1)``, in eval mode; None, with ``error/<key>`` saying what the
    call raised, when it cannot be built."""
    torch.manual_seed(seed + 1)
    try:
        return cls(*args, **kwargs).eval()
    except Exception as error:  # noqa: BLE001
        ev[f"error/{key}"] = np.array(f"{call_text(cls, *args, **kwargs)} raised "
                                      f"{describe_error(error)}")
        return None


def load_weights(module: nn.Module, weights: dict[str, np.ndarray]) -> list[str]:
    """Copy ``weights`` into the matching entries of ``module``'s state (``stored_state``);
    the names loaded."""
    state = stored_state(module)
    loaded = []
    with torch.no_grad():
        for name, value in weights.items():
            value = np.asarray(value)
            target = state.get(name)
            if target is None and "." not in name:  # e.g. a gate kept as a plain tensor
                target = getattr(module, name, None)
            if isinstance(target, torch.Tensor) and tuple(target.shape) == value.shape:
                target.copy_(torch.from_numpy(np.asarray(value)))
                loaded.append(name)
    return loaded


def gradients(ev: dict, module: nn.Module, loss_of, prefix: str = "grad/") -> None:
    """``prefix + name``: every parameter's gradient of ``loss_of()`` (zeros for none), or
    ``error/<prefix>`` (``error/grad``) saying whether the forward pass or the backward pass
    raised."""
    error_key = "error/" + prefix.rstrip("/")
    module.zero_grad(set_to_none=True)
    try:
        loss = loss_of()
    except Exception as error:  # noqa: BLE001 (the student's code can raise anything)
        ev[error_key] = np.array(f"the forward pass raised {describe_error(error)}")
        return
    if isinstance(loss, torch.Tensor) and not loss.requires_grad:
        ev[error_key] = np.array("the output is detached from the graph: no gradient reaches "
                                 "any parameter (a .detach() or torch.no_grad() in forward?)")
        return
    try:
        loss.backward()
    except Exception as error:  # noqa: BLE001
        ev[error_key] = np.array(f"the backward pass raised {describe_error(error)}")
        return
    for name, param in module.named_parameters():
        grad = param.grad
        ev[f"{prefix}{name}"] = to_array(grad) if grad is not None else np.zeros(
            tuple(param.shape), dtype=np.float32)
    module.zero_grad(set_to_none=True)


def projection_loss(out, projection: torch.Tensor, seed: int, exercise: str) -> torch.Tensor:
    """``(out * projection).sum()``: a loss that gives every output entry its own weight; an
    output of another shape gets a projection of its own shape."""
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"the output is a {type(out).__name__}, not a tensor")
    if tuple(out.shape) != tuple(projection.shape):
        projection = torch.randn(*out.shape, generator=generator(seed, exercise,
                                                                   Stream.PROJECTION))
    return (out * projection).sum()


def projected_gradients(ev: dict, module: nn.Module, forward, projection: torch.Tensor, seed: int,
                        exercise: str) -> None:
    """``gradients`` of ``projection_loss(forward(), projection)``, the module in train mode."""
    module.train()
    gradients(ev, module, lambda: projection_loss(forward(), projection, seed, exercise))


def bad_input(ev: dict, call, key: str = "bad_input") -> None:
    """Whether ``call()`` raises a ValueError, in words (``"ValueError: ..."`` or what else)."""
    try:
        call()
        ev[key] = np.array("no error")
    except ValueError as error:
        ev[key] = np.array(f"ValueError: {error}")
    except Exception as error:  # noqa: BLE001
        ev[key] = np.array(describe_error(error))


def build_module(ev: dict, seed: int, cls, *args, **kwargs):
    """``cls(*args, **kwargs)`` after ``torch.manual_seed(seed)``, or None with ``ev["status"]``
    saying why (not implemented yet, an error, not an ``nn.Module``)."""
    signature = call_text(cls, *args, **kwargs)
    torch.manual_seed(seed)
    try:
        module = cls(*args, **kwargs)
    except NotImplementedError:
        ev["status"] = np.array(f"not implemented: {signature} still raises NotImplementedError")
        return None
    except Exception as error:  # noqa: BLE001
        ev["status"] = np.array(f"error: {signature} raised {describe_error(error)}")
        return None
    if not isinstance(module, nn.Module):
        ev["status"] = np.array(f"error: {signature} did not give an nn.Module")
        return None
    ev["status"] = np.array("ok")
    return module


def target_name(obj) -> str:
    return getattr(obj, "__name__", repr(obj))


def call_text(target, *args, **kwargs) -> str:
    """The call of ``target`` in words, as a student would write it: ``Name(32, num_heads=4)``."""
    words = [str(a) for a in args] + [f"{k}={v}" for k, v in kwargs.items()]
    return f"{target_name(target)}(" + ", ".join(words) + ")"


@contextlib.contextmanager
def isolated(seed: int):
    """One thread, float32, gradients on, warnings off; the caller's random states restored."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    dtype = torch.get_default_dtype()
    try:
        with cpu_threads(1), warnings.catch_warnings(), torch.enable_grad(), \
                torch.random.fork_rng(devices=[]):
            warnings.simplefilter("ignore")
            torch.set_default_dtype(torch.float32)
            torch.manual_seed(seed)
            yield
    finally:
        torch.set_default_dtype(dtype)
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def fit_quietly(model: nn.Module, data, settings: dict, seed: int) -> nn.Module:
    """Train ``model`` on ``data`` with ``fusionlab.train.fit`` and ``settings`` (epochs, lr,
    batch_size), on the CPU, one thread, without a progress bar."""
    from ..train import TrainConfig, fit

    config = TrainConfig(epochs=settings["epochs"], lr=settings["lr"],
                         batch_size=settings["batch_size"], seed=seed, device="cpu",
                         progress=False, num_threads=1)
    fit(model, data, None, config)
    return model.eval()


def record_training(ev: dict, train) -> None:
    """``train()`` returns ``{name: tensor}`` (predictions on the grader's inputs, ...), recorded
    as ``trained/<name>``; or ``error/trained`` with the reason."""
    try:
        outputs = train()
        for name, value in outputs.items():
            ev[f"trained/{name}"] = to_array(value)
    except NotImplementedError:
        ev["error/trained"] = np.array("NotImplementedError: not implemented yet")
    except Exception as error:  # noqa: BLE001
        ev["error/trained"] = np.array(f"training failed: {describe_error(error)}")


# ----------------------------------------------------------------------------- files

def save(ev: dict, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.savez(f, **ev)
    return path


def load(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """An evidence file as a dict; data only (``allow_pickle=False``)."""
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


# ----------------------------------------------------------------------------- function exercises

def function_status(fn) -> dict:
    """A function exercise's evidence, begun: its status, ``ok`` or not a function."""
    return {"status": np.array("ok" if callable(fn) else
                               f"error: {target_name(fn)} is not a function")}


def function_collector(make_inputs):
    """The collector of a function exercise from its body ``body(ev, fn, x)``: the status
    (``ok``, or not a function), then the body on ``x = make_inputs(seed)``, isolated and
    without gradients (each call in the body is recorded, so the collector never raises)."""
    def decorate(body):
        def collect(fn, seed: int, weights=None) -> dict:
            ev = function_status(fn)
            if callable(fn):
                x = make_inputs(seed)
                with isolated(seed), torch.no_grad():
                    body(ev, fn, x)
            return ev
        # the collector is the body's, to the registry too (which reads its module's package)
        collect.__name__ = collect.__qualname__ = body.__name__
        collect.__module__, collect.__doc__ = body.__module__, body.__doc__
        return collect
    return decorate
