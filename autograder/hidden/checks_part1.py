"""Hidden tests of Part 1 (``source/part1_fusion_strategies``), one function per graded cell.

Each function takes the student's class, returns None when the test passes (printing a short
verdict) and raises ``AssertionError`` with the reason when it fails. The behaviour checks are
``fusionlab.check``'s (one home for the reference formulas), taken from a pristine copy of
``fusionlab`` loaded from its files; before and after running the student's code every test
looks for tampering (``integrity.find_tampering``). Of the notebook's namespace only the class
under test is used.

The accuracy tests train a small classifier on the XOR task of ``fusionlab.data``: neither
modality alone says anything about the label, so a model passes only if it mixes the two. The
threshold and budget are measured by ``python -m autograder.measure_thresholds`` (see
autograder/README.md): the reference passes on 20 of 20 seeds, broken variants fail.
"""

from __future__ import annotations

import contextlib
import importlib.util
import random
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn


def _load_sibling(name: str):
    """A fresh copy of a file next to this one (not the possibly patched imported module)."""
    spec = importlib.util.spec_from_file_location(
        f"_autograder_hidden_{name}_{id(object())}", Path(__file__).with_name(f"{name}.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_integrity = _load_sibling("integrity")

# Accuracy tests: fixed data and seed, fusionlab's training loop. Measured by
# `python -m autograder.measure_thresholds` (autograder/README.md, "Accuracy thresholds").
ACCURACY = dict(
    data_seed=0,  # make_splits(seed=...) of the XOR task
    model_seed=0,  # torch seed the model is built with, and fit's shuffling seed
    n_train=1000,
    n_test=500,
    epochs=8,
    lr=3e-3,
    batch_size=64,
)
BIDIR_ACCURACY_THRESHOLD = 0.90
GATED_ACCURACY_THRESHOLD = 0.90

TAMPERING = ("tampering detected, so this hidden test gives no credit: {}. The hidden tests "
             "need the installed torch and fusionlab: do not reassign their functions, patch "
             "the grader or hook the interpreter.")


def _fail(message: str):
    raise AssertionError(message)


@contextlib.contextmanager
def _trusted_run():
    """Check for tampering, run the block in a clean numeric state, check again.

    The block runs with the default dtype float32, gradients enabled, warnings silenced (any
    stderr zeroes a graded cell) and the global random states of torch, Python and NumPy
    restored afterwards, so that grading does not shift the notebook's later random draws.
    Yields a pristine copy of fusionlab.
    """
    pristine = _integrity.load_pristine_fusionlab()
    problems = _integrity.find_tampering(pristine)
    if problems:
        _fail(TAMPERING.format("; ".join(problems[:5])))
    models = sys.modules.get("fusionlab.models")
    if models is not None:
        # the student's layers are instances of the notebook's (verified) fusionlab classes
        pristine.check.CrossAttentionLayer = models.CrossAttentionLayer
    python_state, numpy_state = random.getstate(), np.random.get_state()
    dtype = torch.get_default_dtype()
    try:
        with warnings.catch_warnings(), torch.enable_grad(), torch.random.fork_rng(devices=[]):
            warnings.simplefilter("ignore")
            torch.set_default_dtype(torch.float32)
            yield pristine
    finally:
        torch.set_default_dtype(dtype)
        random.setstate(python_state)
        np.random.set_state(numpy_state)
    problems = _integrity.find_tampering(pristine)
    if problems:
        _fail(TAMPERING.format("; ".join(problems[:5])))


def _guarded(cls, what: str):
    """``cls`` with calls whose result must be a plain tensor (a Tensor subclass could
    redefine comparisons through ``__torch_function__``)."""
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        _fail(f"{what} must be a class derived from nn.Module, got {cls!r}")

    class Guarded(cls):
        def __call__(self, *args, **kwargs):
            out = super().__call__(*args, **kwargs)
            if isinstance(out, torch.Tensor) and type(out) is not torch.Tensor:
                raise TypeError(f"forward returned a {type(out).__name__}: return a plain "
                                "torch.Tensor")
            return out

    Guarded.__name__, Guarded.__qualname__ = cls.__name__, cls.__qualname__
    Guarded.__module__ = cls.__module__
    return Guarded


def _verdict(results, name: str) -> None:
    for result in results:
        if result.name == name:
            if not result.passed:
                _fail(result.message)
            print(f"passed: {result.message}")
            return
    _fail(f"no check named {name!r} (grader error)")


def _bidir(cls, name: str) -> None:
    with _trusted_run() as pristine:
        results = pristine.check.bidirectional_results(_guarded(cls, "BidirectionalCrossAttention"))
    _verdict(results, name)


def _gated(cls, name: str) -> None:
    with _trusted_run() as pristine:
        results = pristine.check.gated_results(_guarded(cls, "GatedFusionModel"))
    _verdict(results, name)


# ----------------------------------------------------------------------------- bidirectional

def bidir_attributes(cls) -> None:
    """txt_to_img, img_to_txt are CrossAttentionLayer; norm_txt, norm_img are LayerNorm(dim)."""
    _bidir(cls, "attributes")


def bidir_shapes(cls) -> None:
    """(B, N_img, dim), (B, N_txt, dim) -> (B, dim) for several B, N and dim."""
    _bidir(cls, "shapes")


def bidir_equivalence(cls) -> None:
    """Equals norm(x + attn(x, other)) both ways, concatenated, mean-pooled (to 1e-5)."""
    _bidir(cls, "equivalence")


def bidir_gradients(cls) -> None:
    """Gradients reach all four submodules."""
    _bidir(cls, "gradients")


def bidir_no_nan(cls) -> None:
    """Finite outputs, also for large and all-zero inputs."""
    _bidir(cls, "no_nan")


def bidir_accuracy(cls) -> None:
    """A classifier built on the layer reaches the threshold on the XOR task."""
    with _trusted_run() as pristine:
        layer = _guarded(cls, "BidirectionalCrossAttention")
        _require_implemented(pristine.check.bidirectional_results(layer))
        acc = train_accuracy(pristine, lambda classes: BidirectionalClassifier(layer, classes))
    _accuracy_verdict("a classifier on your BidirectionalCrossAttention", acc,
                      BIDIR_ACCURACY_THRESHOLD)


# ----------------------------------------------------------------------------- gated

def gated_gate_init(cls) -> None:
    """gate is an nn.Parameter of shape (1,) at 0 (sigmoid 0.5 +- 1e-6)."""
    _gated(cls, "gate")


def gated_shapes(cls) -> None:
    """(B, img_dim), (B, txt_dim) -> (B, num_classes)."""
    _gated(cls, "shapes")


def gated_equivalence(cls) -> None:
    """classifier(alpha * img_proj(img) + (1 - alpha) * txt_proj(txt)), alpha = sigmoid(gate)."""
    _gated(cls, "equivalence")


def gated_gate_gradient(cls) -> None:
    """The gate receives a gradient."""
    _gated(cls, "gate_gradient")


def gated_accuracy(cls) -> None:
    """The model reaches the threshold on the XOR task."""
    with _trusted_run() as pristine:
        model_cls = _guarded(cls, "GatedFusionModel")
        _require_implemented(pristine.check.gated_results(model_cls))
        acc = train_accuracy(pristine, lambda classes: model_cls(num_classes=classes))
    _accuracy_verdict("your GatedFusionModel", acc, GATED_ACCURACY_THRESHOLD)


# ----------------------------------------------------------------------------- accuracy

class BidirectionalClassifier(nn.Module):
    """The notebook's BidirectionalFusionModel: project each modality to ``embed_dim`` as one
    token, fuse with the student's layer, classify with an MLP."""

    def __init__(self, layer_cls, num_classes, img_dim=32, txt_dim=16, embed_dim=32, num_heads=4):
        super().__init__()
        self.embed_dim = embed_dim
        self.img_proj = nn.Linear(img_dim, embed_dim)
        self.txt_proj = nn.Linear(txt_dim, embed_dim)
        self.bidirectional = layer_cls(embed_dim, num_heads=num_heads)
        self.classifier = nn.Sequential(
            nn.Linear(embed_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, num_classes)
        )

    def forward(self, img_feat, txt_feat):
        img_embed = self.img_proj(img_feat).unsqueeze(1)  # (B, 1, E)
        txt_embed = self.txt_proj(txt_feat).unsqueeze(1)  # (B, 1, E)
        fused = self.bidirectional(img_embed, txt_embed)
        expected = (img_feat.shape[0], self.embed_dim)
        if not isinstance(fused, torch.Tensor) or tuple(fused.shape) != expected:
            shape = tuple(fused.shape) if isinstance(fused, torch.Tensor) else type(fused).__name__
            raise ValueError(f"the layer returned {shape}, expected {expected}")
        return self.classifier(fused)  # (B, num_classes)


def _require_implemented(results) -> None:
    for result in results:
        if result.name == "implemented" and not result.passed:
            _fail(result.message)


def train_accuracy(pristine, make_model, settings: dict | None = None) -> float:
    """Test accuracy on the XOR task after training ``make_model(2)`` with fusionlab's ``fit``.

    The model is built right after ``torch.manual_seed(model_seed)``; the data comes from
    ``make_splits(seed=data_seed, interaction="xor")``. Raises AssertionError when the model
    cannot be built or trained.
    """
    s = {**ACCURACY, **(settings or {})}
    train, test = pristine.data.make_splits(
        seed=s["data_seed"], n_train=s["n_train"], n_test=s["n_test"], interaction="xor"
    )
    torch.manual_seed(s["model_seed"])
    try:
        model = make_model(train.num_classes)
        config = pristine.train.TrainConfig(
            epochs=s["epochs"], lr=s["lr"], batch_size=s["batch_size"], seed=s["model_seed"],
            device="cpu", progress=False, num_threads=1,
        )
        history = pristine.train.fit(model, train, test, config)
    except NotImplementedError:
        _fail("not implemented yet")
    except AssertionError:
        raise
    except Exception as error:  # noqa: BLE001 (the student's code can raise anything)
        _fail(f"training failed: {type(error).__name__}: {error}")
    return history.final_acc


def _accuracy_verdict(what: str, acc: float, threshold: float) -> None:
    settings = f"{ACCURACY['epochs']} epochs on the XOR task of fusionlab.data"
    if not acc >= threshold:  # also catches NaN
        _fail(f"{what} reached test accuracy {acc:.3f} after {settings}, below the required "
              f"{threshold:.2f}. A model that does not combine both modalities stays near 0.5.")
    print(f"passed: {what} reached test accuracy {acc:.3f} (required {threshold:.2f})")
