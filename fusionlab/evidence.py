"""Evidence: what a graded cell hands to the grader, as plain arrays.

A graded cell of a notebook does not decide its own verdict. It runs the student's class on
inputs that the grader chose and writes what it observed to ``evidence/<grade_id>.npz``::

    from fusionlab import evidence
    evidence.bidirectional("bidir_equivalence", BidirectionalCrossAttention)

The grader reads the file later, in its own process, with ``np.load(allow_pickle=False)``, and
computes the verdict there (``autograder.verdicts``). The self-checks (``fusionlab.check``)
collect the same evidence in the student's kernel and run the same check functions on it.

An evidence dict maps names to NumPy arrays (text as 0-d string arrays):

- ``status``: ``"ok"``, or why the class could not be built or called;
- ``types``: JSON ``{attribute: type name}`` of the module's direct submodules (a hint only);
- ``params``, ``buffers``, ``shared``: JSON lists of parameter and buffer names, and of
  attribute pairs that hold the same module;
- ``state/<name>``: the module's ``state_dict`` after loading ``weights`` (self-checks) or
  after moving every parameter by a random step (grading; default initial values such as a
  LayerNorm's could hide a mistake); ``init/<name>``: the initial ``state_dict``;
  ``attr/gate``: the initial ``gate`` attribute, registered or not;
- ``out/<case>``: outputs on the inputs of ``bidirectional_inputs``/``gated_inputs``;
- ``sub/<attribute>``: each submodule's output on its own inputs (``txt_to_img(q, kv)``, ...);
- ``grad/<parameter>``: gradients after the loss ``(output * projection).sum()``;
- ``trained/<name>``: the ``state_dict`` after training with ``fit`` on the XOR task;
- ``error/<key>``: why ``<key>`` is missing (the exception it raised).

The grader's inputs come from a seed: the worker writes ``grading_request.json`` next to the
notebook before grading; without it (a notebook run outside grading) the seed is
``DEFAULT_SEED``, and the files are written only while grading (``grading()``). The seed
fixes the inputs, the initial weights and the training data; the grader evaluates the trained
weights on data of its own that the kernel never sees.
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

from .utils import cpu_threads

REQUEST_FILE = "grading_request.json"
EVIDENCE_DIR = "evidence"
DEFAULT_SEED = 0

# Part 1's exercises: the sizes the evidence is collected at
DIM, HEADS = 32, 4
GATED_SIZES = dict(img_dim=32, txt_dim=16, embed_dim=32, num_classes=3)
# (dim, B, N_img, N_txt) of the shape cases; the last one builds a second module at 2 * dim
BIDIR_SHAPE_CASES = ((DIM, 2, 1, 1), (DIM, 3, 5, 2), (DIM, 1, 1, 4), (2 * DIM, 2, 3, 3))
# (num_classes, B) of the gated shape cases; the last one builds a second model
GATED_SHAPE_CASES = ((3, 2), (3, 5), (3, 1), (2, 4))
NAN_PROBES = ("large inputs (x100)", "all-zero inputs", "one sample, one token")
UNEVEN_GATE = 1.5  # gated equivalence also at this gate: at 0 a swapped alpha is invisible
# The accuracy evidence: fit on the XOR task of fusionlab.data with these settings
TRAINING = dict(n_train=1000, epochs=8, lr=3e-3, batch_size=64)


# ----------------------------------------------------------------------------- the request

def read_request(folder: str | os.PathLike = ".") -> dict:
    """The grader's request (``{"seed": int}``) from ``folder``, or the default one."""
    path = Path(folder) / REQUEST_FILE
    try:
        return {"seed": int(json.loads(path.read_text())["seed"])}
    except (OSError, ValueError, KeyError, TypeError):
        return {"seed": DEFAULT_SEED}


def _generator(seed: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 7919 + stream)


def bidirectional_inputs(seed: int) -> dict[str, torch.Tensor]:
    """The inputs the bidirectional evidence is collected on (the grader recomputes them)."""
    g = _generator(seed, 1)

    def randn(*shape, scale=1.0):
        return torch.randn(*shape, generator=g) * scale

    x = {}
    for i, (d, B, n_img, n_txt) in enumerate(BIDIR_SHAPE_CASES):
        x[f"shape{i}/img"], x[f"shape{i}/txt"] = randn(B, n_img, d), randn(B, n_txt, d)
    x["eq/img"], x["eq/txt"] = randn(4, 3, DIM), randn(4, 2, DIM)  # several tokens each
    # gradients and NaN probes: as many image as text tokens, so that they also run for an
    # output of the wrong shape (e.g. tokens concatenated along the feature axis)
    x["grad/img"], x["grad/txt"] = randn(4, 2, DIM), randn(4, 2, DIM)
    x["grad/projection"] = randn(4, DIM)
    x["nan0/img"], x["nan0/txt"] = randn(2, 2, DIM, scale=100.0), randn(2, 2, DIM, scale=100.0)
    x["nan1/img"], x["nan1/txt"] = torch.zeros(2, 1, DIM), torch.zeros(2, 1, DIM)
    x["nan2/img"], x["nan2/txt"] = randn(1, 1, DIM), randn(1, 1, DIM)
    x["sub/query"], x["sub/kv"] = randn(3, 4, DIM), randn(3, 2, DIM)
    return x


def gated_inputs(seed: int) -> dict[str, torch.Tensor]:
    """The inputs the gated evidence is collected on (the grader recomputes them)."""
    g = _generator(seed, 2)
    img_dim, txt_dim, embed_dim = (GATED_SIZES[k] for k in ("img_dim", "txt_dim", "embed_dim"))
    x = {}
    for i, (_, B) in enumerate(GATED_SHAPE_CASES):
        x[f"shape{i}/img"] = torch.randn(B, img_dim, generator=g)
        x[f"shape{i}/txt"] = torch.randn(B, txt_dim, generator=g)
    x["eq/img"], x["eq/txt"] = torch.randn(6, img_dim, generator=g), torch.randn(6, txt_dim,
                                                                                 generator=g)
    x["grad/projection"] = torch.randn(6, GATED_SIZES["num_classes"], generator=g)
    x["sub/z"] = torch.randn(5, embed_dim, generator=g)
    return x


def projection_for(seed: int, shape) -> torch.Tensor:
    """The random projection of an output of another shape than expected (gradients)."""
    return torch.randn(*shape, generator=_generator(seed, 3))


def xor_training_data(seed: int):
    """The training set of the accuracy evidence (the grader evaluates on other data)."""
    from .data import MultimodalDataset

    return MultimodalDataset(n_samples=TRAINING["n_train"], seed=2 * seed, interaction="xor")


# ----------------------------------------------------------------------------- helpers

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


def record(ev: dict, key: str, compute) -> torch.Tensor | None:
    """``ev[key] = compute()`` as an array, or ``ev["error/" + key]`` with the reason."""
    try:
        out = compute()
        if not isinstance(out, torch.Tensor):
            ev[f"error/{key}"] = np.array(f"returned a {type(out).__name__}, not a tensor")
            return None
        ev[key] = to_array(out)
        return out
    except NotImplementedError:
        ev[f"error/{key}"] = np.array("NotImplementedError: not implemented yet")
    except Exception as error:  # noqa: BLE001 (the student's code can raise anything)
        ev[f"error/{key}"] = np.array(describe_error(error))
    return None


def record_state(ev: dict, prefix: str, module: nn.Module) -> None:
    for name, value in module.state_dict().items():
        if isinstance(value, torch.Tensor):
            ev[f"{prefix}{name}"] = to_array(value)


def _structure(ev: dict, module: nn.Module) -> None:
    ev["types"] = np.array(json.dumps(
        {name: type(child).__name__ for name, child in module.named_children()}))
    ev["params"] = np.array(json.dumps([n for n, _ in module.named_parameters()]))
    ev["buffers"] = np.array(json.dumps([n for n, _ in module.named_buffers()]))
    children = list(module._modules.items())  # named_children() skips a repeated module
    shared = [[a, b] for i, (a, x) in enumerate(children) for b, y in children[i + 1:] if x is y]
    ev["shared"] = np.array(json.dumps(shared))


def _perturb(module: nn.Module, seed: int) -> None:
    """Move every parameter away from its initial value: e.g. two LayerNorms at their default
    weights (ones and zeros) compute the same, which would hide two swapped norms."""
    g = _generator(seed, 4)
    with torch.no_grad():
        for _, param in module.named_parameters():
            param.add_(0.2 * torch.randn(tuple(param.shape), generator=g))


def _load(module: nn.Module, weights: dict[str, np.ndarray]) -> list[str]:
    """Copy ``weights`` into the matching entries of ``module``'s state; the names loaded."""
    state = module.state_dict()
    loaded = []
    with torch.no_grad():
        for name, value in weights.items():
            target = state.get(name)
            if target is None and "." not in name:  # e.g. a gate kept as a plain tensor
                target = getattr(module, name, None)
            if isinstance(target, torch.Tensor) and tuple(target.shape) == value.shape:
                target.copy_(torch.from_numpy(np.asarray(value)))
                loaded.append(name)
    return loaded


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


def build_module(ev: dict, factory, signature: str, seed: int):
    """``factory()`` after ``torch.manual_seed(seed)``, or None with ``ev["status"]`` saying why
    (not implemented yet, an error, not an ``nn.Module``)."""
    torch.manual_seed(seed)
    try:
        module = factory()
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


def _gradients(ev: dict, module: nn.Module, out, projection, seed: int) -> None:
    module.zero_grad(set_to_none=True)
    try:
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"the output is a {type(out).__name__}, not a tensor")
        if tuple(out.shape) != tuple(projection.shape):
            projection = projection_for(seed, tuple(out.shape))
        (out * projection).sum().backward()
    except Exception as error:  # noqa: BLE001
        ev["error/grad"] = np.array(f"backward raised {describe_error(error)}")
        return
    for name, param in module.named_parameters():
        grad = param.grad
        ev[f"grad/{name}"] = to_array(grad) if grad is not None else np.zeros(
            tuple(param.shape), dtype=np.float32)
    module.zero_grad(set_to_none=True)


# ----------------------------------------------------------------------------- collection

def collect_bidirectional(cls, seed: int = DEFAULT_SEED, weights=None, train=False) -> dict:
    """Evidence on a ``BidirectionalCrossAttention`` class; never raises.

    ``weights`` (name -> array), when given, are loaded into the module before the outputs
    are recorded (the self-checks load known weights); ``train`` adds ``trained/``.
    """
    ev: dict[str, np.ndarray] = {}
    name = getattr(cls, "__name__", repr(cls))
    x = bidirectional_inputs(seed)
    with isolated(seed):
        module = build_module(ev, lambda: cls(DIM, num_heads=HEADS), f"{name}({DIM}, "
                        f"num_heads={HEADS})", seed)
        if module is None:
            return ev
        try:
            record_state(ev, "init/", module)
            if weights is not None:
                ev["loaded"] = np.array(json.dumps(_load(module, weights)))
            else:
                _perturb(module, seed)
            record_state(ev, "state/", module)
            _structure(ev, module)
        except Exception as error:  # noqa: BLE001 (e.g. a property that raises)
            ev["error/state"] = np.array(describe_error(error))
        module.eval()
        with torch.no_grad():
            for i, (d, *_) in enumerate(BIDIR_SHAPE_CASES):
                if d == DIM:
                    m = module
                else:
                    torch.manual_seed(seed + 1)
                    try:
                        m = cls(d, num_heads=HEADS)
                    except Exception as error:  # noqa: BLE001
                        ev[f"error/out/shape{i}"] = np.array(
                            f"{name}({d}, num_heads={HEADS}) raised {describe_error(error)}")
                        continue
                    m.eval()
                record(ev, f"out/shape{i}", lambda m=m, i=i: m(x[f"shape{i}/img"],
                                                                  x[f"shape{i}/txt"]))
            record(ev, "out/eq", lambda: module(x["eq/img"], x["eq/txt"]))
            for i in range(len(NAN_PROBES)):
                record(ev, f"out/nan{i}", lambda i=i: module(x[f"nan{i}/img"], x[f"nan{i}/txt"]))
            for attr in ("txt_to_img", "img_to_txt"):
                record(ev, f"sub/{attr}",
                        lambda attr=attr: getattr(module, attr)(x["sub/query"], x["sub/kv"]))
            for attr in ("norm_txt", "norm_img"):
                record(ev, f"sub/{attr}", lambda attr=attr: getattr(module, attr)(x["sub/query"]))
        module.train()
        try:
            out = module(x["grad/img"], x["grad/txt"])
        except Exception as error:  # noqa: BLE001
            ev["error/grad"] = np.array(f"forward raised {describe_error(error)}")
        else:
            _gradients(ev, module, out, x["grad/projection"], seed)
        if train:
            from .models import FusionLayerClassifier

            _train(ev, lambda: FusionLayerClassifier(cls, num_classes=2), seed)
    return ev


def collect_gated(cls, seed: int = DEFAULT_SEED, weights=None, train=False) -> dict:
    """Evidence on a ``GatedFusionModel`` class; never raises (see ``collect_bidirectional``)."""
    ev: dict[str, np.ndarray] = {}
    name = getattr(cls, "__name__", repr(cls))
    sizes = dict(GATED_SIZES)
    x = gated_inputs(seed)
    signature = f"{name}(" + ", ".join(f"{k}={v}" for k, v in sizes.items()) + ")"
    with isolated(seed):
        model = build_module(ev, lambda: cls(**sizes), signature, seed)
        if model is None:
            return ev
        try:
            record_state(ev, "init/", model)
            gate = getattr(model, "gate", None)
            if isinstance(gate, torch.Tensor):  # its initial value, registered or not
                ev["attr/gate"] = to_array(gate)
                ev["attr/gate_type"] = np.array(type(gate).__name__)
            if weights is not None:
                ev["loaded"] = np.array(json.dumps(_load(model, weights)))
            else:
                _perturb(model, seed)
            record_state(ev, "state/", model)
            _structure(ev, model)
        except Exception as error:  # noqa: BLE001
            ev["error/state"] = np.array(describe_error(error))
        model.eval()
        with torch.no_grad():
            for i, (classes, _) in enumerate(GATED_SHAPE_CASES):
                if classes == sizes["num_classes"]:
                    m = model
                else:
                    torch.manual_seed(seed + 1)
                    try:
                        m = cls(**{**sizes, "num_classes": classes})
                    except Exception as error:  # noqa: BLE001
                        ev[f"error/out/shape{i}"] = np.array(
                            f"{name}(num_classes={classes}) raised {describe_error(error)}")
                        continue
                    m.eval()
                record(ev, f"out/shape{i}", lambda m=m, i=i: m(x[f"shape{i}/img"],
                                                                  x[f"shape{i}/txt"]))
            record(ev, "out/eq", lambda: model(x["eq/img"], x["eq/txt"]))
            record(ev, "sub/classifier", lambda: model.classifier(x["sub/z"]))
            record(ev, "sub/img_proj", lambda: model.img_proj(x["eq/img"]))
            record(ev, "sub/txt_proj", lambda: model.txt_proj(x["eq/txt"]))
            gate = getattr(model, "gate", None)
            if isinstance(gate, torch.Tensor) and tuple(gate.shape) == (1,):
                saved = gate.detach().clone()
                try:
                    gate.fill_(UNEVEN_GATE)
                    record(ev, "out/eq_uneven_gate", lambda: model(x["eq/img"], x["eq/txt"]))
                finally:
                    gate.copy_(saved)
            else:
                ev["error/out/eq_uneven_gate"] = np.array("no gate of shape (1,) to set")
        model.train()
        try:
            out = model(x["eq/img"], x["eq/txt"])
        except Exception as error:  # noqa: BLE001
            ev["error/grad"] = np.array(f"forward raised {describe_error(error)}")
        else:
            _gradients(ev, model, out, x["grad/projection"], seed)
        if train:
            _train(ev, lambda: cls(**{**sizes, "num_classes": 2}), seed)
    return ev


def _train(ev: dict, make_model, seed: int) -> None:
    from .train import TrainConfig, fit

    try:
        torch.manual_seed(seed)
        model = make_model()
        config = TrainConfig(epochs=TRAINING["epochs"], lr=TRAINING["lr"],
                             batch_size=TRAINING["batch_size"], seed=seed, device="cpu",
                             progress=False, num_threads=1)
        fit(model, xor_training_data(seed), None, config)
        record_state(ev, "trained/", model)
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


def grading() -> bool:
    """Whether the grader asked for evidence: its request file is next to the notebook (a run
    of nbgrader or nbval without the grading command writes nothing)."""
    return Path(REQUEST_FILE).exists()


def export(grade_id: str, collect, obj, **kwargs) -> None:
    """What every graded cell does: ``collect(obj, seed, **kwargs)`` on the grader's seed, then,
    while grading, save the evidence as ``evidence/<grade_id>.npz``. Every part's cells call it."""
    ev = collect(obj, read_request()["seed"], **kwargs)
    status = str(ev.get("status", "ok"))
    if grading():
        save(ev, Path(EVIDENCE_DIR) / f"{grade_id}.npz")
        print(f"{grade_id}: evidence recorded ({status}); the grader decides the verdict")
    else:  # outside grading: nothing is written next to the student's notebook
        print(f"{grade_id}: evidence collected ({status}); the grader decides the verdict")


def bidirectional(grade_id: str, cls, train: bool = False) -> None:
    """Write the evidence of graded cell ``grade_id`` on a ``BidirectionalCrossAttention``."""
    export(grade_id, collect_bidirectional, cls, train=train)


def gated(grade_id: str, cls, train: bool = False) -> None:
    """Write the evidence of graded cell ``grade_id`` on a ``GatedFusionModel``."""
    export(grade_id, collect_gated, cls, train=train)

