"""Evidence of Part 3's exercises: what the GMU, the tanh-gated block and modality dropout do,
recorded as plain arrays on inputs drawn from a seed (``fusionlab.evidence``'s design).

A graded cell of the Part 3 notebook writes it for the grader::

    from fusionlab import evidence_part3
    evidence_part3.gmu("gmu_equivalence", GatedMultimodalUnit)

and the self-checks (``fusionlab.check_part3``) collect the same evidence in the student's kernel.
The seed is the grader's request (``grading_request.json``, ``fusionlab.evidence.read_request``)
in a graded cell and ``SEED`` in a self-check; the grader recomputes every input from it
(``gmu_inputs``, ``block_inputs``, ``dropout_inputs``). Every parameter is moved off its initial
value before the outputs that the equivalence checks read, and the module's ``state_dict`` is
exported (``state/<name>``) so that the grader recomputes the submodules' outputs itself.
"""

from __future__ import annotations

import contextlib
import json

import numpy as np
import torch
from torch import nn

from .evidence import build_module, export, to_array
from .utils import cpu_threads

SEED = 20240601
GMU_SIZES = dict(img_dim=32, txt_dim=16, hidden_dim=32)
BLOCK_DIM, BLOCK_HEADS = 32, 4
OPEN_ALPHA = 0.7  # the block's equivalence is also checked with the gate open
DROPOUT_RATES = (0.0, 0.3, 1.0)
RATE_SAMPLES = 20000  # the dropout rate's statistics: |mean - p| < 4 standard errors
# The accuracy evidence: short training runs (about a second each) with the grader's settings;
# the grader evaluates the exported weights on data of its own (autograder/hidden/part3.py)
GMU_TRAINING = dict(n_train=1000, epochs=8, lr=3e-3, batch_size=64)
DROPOUT_TRAINING = dict(n_train=2000, epochs=8, lr=3e-3, batch_size=64, p_txt=0.5,
                        num_classes=4)

def _gen(stream: int, seed: int = SEED) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 7919 + 100 + stream)


def gmu_inputs(seed: int) -> dict[str, torch.Tensor]:
    g = _gen(1, seed)
    x = {"img": torch.randn(6, 32, generator=g), "txt": torch.randn(6, 16, generator=g)}
    for B in (1, 5):
        x[f"img{B}"], x[f"txt{B}"] = torch.randn(B, 32, generator=g), torch.randn(B, 16,
                                                                                 generator=g)
    return x


def block_inputs(seed: int) -> dict[str, torch.Tensor]:
    g = _gen(2, seed)
    y, x = torch.randn(3, 4, BLOCK_DIM, generator=g), torch.randn(3, 5, BLOCK_DIM, generator=g)
    mask = torch.zeros(3, 5, dtype=torch.bool)
    mask[:, 3:] = True
    return {"y": y, "x": x, "mask": mask, "projection": torch.randn(3, 4, BLOCK_DIM, generator=g)}


def dropout_inputs(seed: int) -> dict[str, torch.Tensor]:
    """The inputs and, for each generator seed, the draws ``u`` the rule asks for."""
    x = torch.randn(64, 8, generator=_gen(3, seed)) + 3.0  # no entry is 0 by chance
    tokens = torch.randn(10, 3, 4, generator=_gen(5, seed)) + 3.0
    return {"x": x, "u": torch.rand(64, generator=_gen(4, seed)), "tokens": tokens,
            "tok/u": torch.rand(10, generator=_gen(6, seed))}

def switch_training_data(seed: int):
    """The GMU accuracy cell's training set: the switch task (the grader evaluates elsewhere)."""
    from .gating_data import SwitchDataset

    return SwitchDataset(GMU_TRAINING["n_train"], seed=2 * seed)


def redundant_training_data(seed: int):
    """The modality-dropout accuracy cell's training set: the redundant task."""
    from .gating_data import RedundantDataset

    return RedundantDataset(DROPOUT_TRAINING["n_train"], seed=2 * seed,
                            num_classes=DROPOUT_TRAINING["num_classes"])


class TextDropout(nn.Module):
    """``model`` whose text input goes through ``fn`` (a ``modality_dropout``) while training."""

    def __init__(self, model: nn.Module, fn, p_txt: float):
        super().__init__()
        self.model, self.fn, self.p_txt = model, fn, p_txt

    def forward(self, img_feat, txt_feat):
        if self.training:
            txt_feat, _ = self.fn(txt_feat, self.p_txt)
        return self.model(img_feat, txt_feat)


def _train(ev: dict, make_model, data, settings: dict, seed: int, exported=None) -> None:
    """Train ``make_model()`` with ``fit`` and export ``trained/<name>`` of ``exported(model)``
    (the model itself by default), or ``error/trained`` with the reason."""
    from .train import TrainConfig, fit

    try:
        torch.manual_seed(seed)
        model = make_model()
        config = TrainConfig(epochs=settings["epochs"], lr=settings["lr"],
                             batch_size=settings["batch_size"], seed=seed, device="cpu",
                             progress=False, num_threads=1)
        fit(model, data, None, config)
        target = exported(model) if exported is not None else model
        for name, tensor in target.state_dict().items():
            if isinstance(tensor, torch.Tensor):
                ev[f"trained/{name}"] = to_array(tensor)
    except NotImplementedError:
        ev["error/trained"] = np.array("NotImplementedError: not implemented yet")
    except Exception as error:  # noqa: BLE001 (the student's code can raise anything)
        ev["error/trained"] = np.array(f"training failed: {type(error).__name__}: {error}")


def _record(ev: dict, key: str, compute):
    """``ev[key] = compute()`` as an array, or ``ev["error/" + key]`` with the reason."""
    try:
        out = compute()
    except NotImplementedError:
        ev[f"error/{key}"] = np.array("NotImplementedError: not implemented yet")
        return None
    except Exception as error:  # noqa: BLE001 (the student's code can raise anything)
        ev[f"error/{key}"] = np.array(f"{type(error).__name__}: {error}")
        return None
    if isinstance(out, torch.Tensor):
        ev[key] = to_array(out)
    return out


def _perturb(module: nn.Module, seed: int, skip: tuple[str, ...] = ()) -> None:
    g = _gen(9, seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name not in skip:
                param.add_(0.2 * torch.randn(tuple(param.shape), generator=g))


def _state(ev: dict, module: nn.Module) -> None:
    for name, tensor in module.state_dict().items():
        if isinstance(tensor, torch.Tensor):
            ev[f"state/{name}"] = to_array(tensor)


def _types(module: nn.Module) -> dict:
    return {name: type(child).__name__ for name, child in module.named_children()}


@contextlib.contextmanager
def _isolated(seed: int):
    """One thread, gradients on, the caller's torch random state restored."""
    with cpu_threads(1), torch.enable_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield



# ----------------------------------------------------------------------------- collectors

def collect_gmu(cls, seed: int = SEED, train: bool = False) -> dict:
    """Evidence on a ``GatedMultimodalUnit`` class; ``train`` adds ``trained/``: the state of
    ``FusionClassifier(cls(), 2)`` trained on the switch task (``GMU_TRAINING``)."""
    ev: dict = {}
    x = gmu_inputs(seed)
    with _isolated(seed):
        module = build_module(ev, lambda: cls(**GMU_SIZES), f"{getattr(cls, '__name__', cls)}"
                        f"(img_dim=32, txt_dim=16, hidden_dim=32)", seed)
        if module is None:
            return ev
        ev["types"] = np.array(json.dumps(_types(module)))
        _record(ev, "out", lambda: module(x["img"], x["txt"]))
        for B in (1, 5):
            _record(ev, f"shape{B}", lambda B=B: module(x[f"img{B}"], x[f"txt{B}"]))
        _perturb(module, seed)
        _state(ev, module)
        _record(ev, "eq/out", lambda: module(x["img"], x["txt"]))
        gate = getattr(module, "last_gate", None)
        if isinstance(gate, torch.Tensor):
            ev["eq/last_gate"] = to_array(gate)
            ev["last_gate_requires_grad"] = np.array(bool(gate.requires_grad))
        for name, inp in (("img_proj", x["img"]), ("txt_proj", x["txt"]),
                          ("gate_proj", torch.cat([x["img"], x["txt"]], dim=-1))):
            layer = getattr(module, name, None)
            if isinstance(layer, nn.Module):
                _record(ev, f"sub/{name}", lambda layer=layer, inp=inp: layer(inp))
        try:
            module(torch.randn(3, 16), torch.randn(3, 16))
            ev["bad_input"] = np.array("no error")
        except ValueError as error:
            ev["bad_input"] = np.array(f"ValueError: {error}")
        except Exception as error:  # noqa: BLE001
            ev["bad_input"] = np.array(f"{type(error).__name__}: {error}")
        if train:
            from .gating import FusionClassifier

            _train(ev, lambda: FusionClassifier(cls(**GMU_SIZES), 2),
                   switch_training_data(seed), GMU_TRAINING, seed)
    return ev

def collect_block(cls, seed: int = SEED) -> dict:
    ev: dict = {}
    inp = block_inputs(seed)
    y, x, mask = inp["y"], inp["x"], inp["mask"]
    with _isolated(seed):
        module = build_module(ev, lambda: cls(BLOCK_DIM, BLOCK_HEADS),
                        f"{getattr(cls, '__name__', cls)}(32, 4)", seed)
        if module is None:
            return ev
        ev["types"] = np.array(json.dumps(_types(module)))
        alpha = getattr(module, "alpha", None)
        ev["alpha_is_parameter"] = np.array(isinstance(alpha, nn.Parameter))
        if isinstance(alpha, torch.Tensor):
            ev["init/alpha"] = to_array(alpha)
        out = _record(ev, "out", lambda: module(y.clone(), x))
        ev["eq/y"] = to_array(y)
        if isinstance(out, torch.Tensor) and out.shape == y.shape:
            try:
                module.zero_grad(set_to_none=True)
                (out * inp["projection"]).sum().backward()
                if isinstance(alpha, torch.Tensor) and alpha.grad is not None:
                    ev["grad/alpha"] = to_array(alpha.grad)
            except Exception as error:  # noqa: BLE001
                ev["error/grad"] = np.array(f"backward raised {type(error).__name__}: {error}")
        attn = getattr(module, "cross_attn", None)
        if isinstance(alpha, torch.Tensor) and isinstance(attn, nn.Module):
            with torch.no_grad():
                alpha.fill_(OPEN_ALPHA)
            _perturb(module, seed, skip=("alpha",))
            _state(ev, module)
            _record(ev, "eq/out", lambda: module(y, x))
            _record(ev, "eq/sub", lambda: attn(y, x))
            _record(ev, "mask/out", lambda: module(y, x, key_padding_mask=mask))
            _record(ev, "mask/sub", lambda: attn(y, x, mask))
    return ev

def collect_dropout(fn, seed: int = SEED, train: bool = False) -> dict:
    """Evidence on a ``modality_dropout`` function; ``train`` adds ``trained/``: the state of an
    ``EarlyFusion`` trained on the redundant task with ``fn`` dropping the text with probability
    ``DROPOUT_TRAINING["p_txt"]``."""
    ev: dict = {"status": np.array("ok")}
    inp = dropout_inputs(seed)
    x = inp["x"].clone()
    with _isolated(seed):
        ev["x"], ev["u"] = to_array(x), to_array(inp["u"])
        result = _record(ev, "out", lambda: fn(x.clone(), 0.3, _gen(4, seed)))
        if not (isinstance(result, tuple) and len(result) == 2
                and all(isinstance(t, torch.Tensor) for t in result)):
            if "error/out" not in ev:
                ev["returns"] = np.array(f"returned {type(result).__name__}")
            return ev
        ev["returns"] = np.array("ok")
        for p in DROPOUT_RATES:
            try:
                out = fn(x, p, _gen(4, seed))
                ev[f"x{p}"], ev[f"dropped{p}"] = to_array(out[0]), to_array(out[1])
                ev[f"dtype{p}"] = np.array(str(out[1].dtype))
            except Exception as error:  # noqa: BLE001
                ev[f"error/x{p}"] = np.array(f"{type(error).__name__}: {error}")
        ev["x_after"] = to_array(x)  # in-place changes of the input show here
        _record(ev, "rate", lambda: fn(torch.ones(RATE_SAMPLES, 2), 0.3, None)[1].float())
        out = _record(ev, "tok", lambda: fn(inp["tokens"].clone(), 0.5, _gen(6, seed))[0])
        if out is not None:
            ev["tok/in"], ev["tok/u"] = to_array(inp["tokens"]), to_array(inp["tok/u"])
        try:
            fn(x, 1.5, None)
            ev["bad_p"] = np.array("no error")
        except ValueError as error:
            ev["bad_p"] = np.array(f"ValueError: {error}")
        except Exception as error:  # noqa: BLE001
            ev["bad_p"] = np.array(f"{type(error).__name__}: {error}")
        if train:
            from .models import EarlyFusion

            settings = DROPOUT_TRAINING
            _train(ev, lambda: TextDropout(EarlyFusion(32, 16, num_classes=settings["num_classes"]),
                                           fn, settings["p_txt"]),
                   redundant_training_data(seed), settings, seed, exported=lambda m: m.model)
    return ev


# ----------------------------------------------------------------------------- graded cells

def gmu(grade_id: str, cls, train: bool = False) -> None:
    """Write the evidence of graded cell ``grade_id`` on a ``GatedMultimodalUnit``
    (``train``: also a classifier on it trained on the switch task)."""
    export(grade_id, collect_gmu, cls, train=train)


def tanh_gated_block(grade_id: str, cls) -> None:
    """Write the evidence of graded cell ``grade_id`` on a ``TanhGatedCrossAttention``."""
    export(grade_id, collect_block, cls)


def modality_dropout(grade_id: str, fn, train: bool = False) -> None:
    """Write the evidence of graded cell ``grade_id`` on a ``modality_dropout`` function
    (``train``: also an early-fusion model trained with it on the redundant task)."""
    export(grade_id, collect_dropout, fn, train=train)
