"""Self-checks for the notebooks' TODOs: friendly verdicts instead of tracebacks.

Each TODO in a notebook is followed by a cell such as ::

    from fusionlab import check
    check.bidirectional(BidirectionalCrossAttention)

which prints one line per check and returns ``True`` when all of them pass. The ``*_results``
functions return the same verdicts as ``CheckResult`` objects (the autograder's hidden tests
use them). The checks

- never raise: a stub that still raises ``NotImplementedError`` is "not implemented yet", any
  other exception becomes a message naming it;
- compare the student's module with a reference computation built from the module's *own*
  submodules (``reference_bidirectional``, ``reference_gated``), so any initialisation passes;
- run on the CPU in a few milliseconds and leave the global random state untouched: modules
  are built under ``torch.random.fork_rng`` and inputs come from a local ``torch.Generator``.

Result names, always all present and in this order:

- ``bidirectional_results``: implemented, attributes, shapes, equivalence, gradients, no_nan;
- ``gated_results``: implemented, attributes, gate, shapes, equivalence, gate_gradient.

A check that cannot run because an earlier one failed is reported with ``skipped=True`` and
``passed=False``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .models import CrossAttentionLayer
from .utils import cpu_threads

TOLERANCE = 1e-5  # absolute and relative tolerance of the equivalence checks
_MODULE_SEED = 1234  # seed the modules under test are built with (inside fork_rng)

BIDIRECTIONAL_CHECKS = ("implemented", "attributes", "shapes", "equivalence", "gradients", "no_nan")
GATED_CHECKS = ("implemented", "attributes", "gate", "shapes", "equivalence", "gate_gradient")


@dataclass
class CheckResult:
    """One verdict: ``name`` (see the module docstring), ``passed`` and a message with a hint."""

    name: str
    passed: bool
    message: str
    skipped: bool = False  # not run because a check it depends on failed


class _NotImplemented(Exception):
    """Raised internally when the code under test still raises NotImplementedError."""


# ----------------------------------------------------------------------------- references

def reference_bidirectional(module: nn.Module, img_embed: torch.Tensor, txt_embed: torch.Tensor):
    """What ``BidirectionalCrossAttention.forward`` must compute, with ``module``'s submodules.

    img_embed: (B, N_img, D), txt_embed: (B, N_txt, D) -> (B, D)
    """
    txt_upd = module.norm_txt(txt_embed + module.txt_to_img(txt_embed, img_embed))  # (B, N_txt, D)
    img_upd = module.norm_img(img_embed + module.img_to_txt(img_embed, txt_embed))  # (B, N_img, D)
    return torch.cat([txt_upd, img_upd], dim=1).mean(dim=1)  # (B, D)


def reference_gated(model: nn.Module, img_feat: torch.Tensor, txt_feat: torch.Tensor):
    """What ``GatedFusionModel.forward`` must compute, with ``model``'s own layers.

    img_feat: (B, img_dim), txt_feat: (B, txt_dim) -> (B, num_classes)
    """
    alpha = torch.sigmoid(model.gate)  # (1,)
    z = alpha * model.img_proj(img_feat) + (1 - alpha) * model.txt_proj(txt_feat)  # (B, E)
    return model.classifier(z)


# Common mistakes, recognised so that the verdict can say which one it probably is. Each takes
# the module and the inputs and returns what the mistaken forward would return.
def _bidir_without_residual(m, img, txt):
    txt_upd = m.norm_txt(m.txt_to_img(txt, img))
    img_upd = m.norm_img(m.img_to_txt(img, txt))
    return torch.cat([txt_upd, img_upd], dim=1).mean(dim=1)


def _bidir_without_norm(m, img, txt):
    txt_upd = txt + m.txt_to_img(txt, img)
    img_upd = img + m.img_to_txt(img, txt)
    return torch.cat([txt_upd, img_upd], dim=1).mean(dim=1)


def _bidir_swapped_layers(m, img, txt):
    txt_upd = m.norm_txt(txt + m.img_to_txt(txt, img))
    img_upd = m.norm_img(img + m.txt_to_img(img, txt))
    return torch.cat([txt_upd, img_upd], dim=1).mean(dim=1)


def _bidir_swapped_query_kv(m, img, txt):
    txt_upd = m.norm_txt(txt + m.txt_to_img(img, txt))
    img_upd = m.norm_img(img + m.img_to_txt(txt, img))
    return torch.cat([txt_upd, img_upd], dim=1).mean(dim=1)


def _bidir_swapped_norms(m, img, txt):
    txt_upd = m.norm_img(txt + m.txt_to_img(txt, img))
    img_upd = m.norm_txt(img + m.img_to_txt(img, txt))
    return torch.cat([txt_upd, img_upd], dim=1).mean(dim=1)


def _bidir_mean_of_means(m, img, txt):
    txt_upd = m.norm_txt(txt + m.txt_to_img(txt, img))
    img_upd = m.norm_img(img + m.img_to_txt(img, txt))
    return 0.5 * (txt_upd.mean(dim=1) + img_upd.mean(dim=1))


_BIDIR_MISTAKES = {
    "the residual connection is missing: add the input before the norm, norm(x + attn(x, other))":
        _bidir_without_residual,
    "the LayerNorm is missing: apply norm_txt / norm_img to x + attn(x, other)":
        _bidir_without_norm,
    "the two directions are swapped: txt_to_img takes text queries, img_to_txt image queries":
        _bidir_swapped_layers,
    "queries and keys/values are swapped: a layer is called as layer(query, kv), e.g. "
    "txt_to_img(txt_embed, img_embed)": _bidir_swapped_query_kv,
    "norm_txt and norm_img are swapped: norm_txt normalises the text tokens":
        _bidir_swapped_norms,
    "the pooling averages the two modalities' means: concatenate the tokens with "
    "torch.cat(..., dim=1), then take one mean over all of them": _bidir_mean_of_means,
}


def _gated_swapped_alpha(m, img, txt):
    alpha = torch.sigmoid(m.gate)
    return m.classifier((1 - alpha) * m.img_proj(img) + alpha * m.txt_proj(txt))


def _gated_without_sigmoid(m, img, txt):
    return m.classifier(m.gate * m.img_proj(img) + (1 - m.gate) * m.txt_proj(txt))


def _gated_fixed_half(m, img, txt):
    return m.classifier(0.5 * m.img_proj(img) + 0.5 * m.txt_proj(txt))


_GATED_MISTAKES = {
    "alpha weights the wrong modality: z = alpha * img_proj(img) + (1 - alpha) * txt_proj(txt)":
        _gated_swapped_alpha,
    "the sigmoid is missing: alpha = torch.sigmoid(self.gate)": _gated_without_sigmoid,
    "the output ignores the gate: alpha = torch.sigmoid(self.gate) must weight the two "
    "projections": _gated_fixed_half,
}


# ----------------------------------------------------------------------------- helpers

def _build(factory: Callable[[], nn.Module], what: str) -> nn.Module:
    """Build a module with a fixed seed without touching the caller's random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_MODULE_SEED)
        try:
            module = factory()
        except NotImplementedError as error:
            raise _NotImplemented(f"{what} still raises NotImplementedError") from error
    if not isinstance(module, nn.Module):
        raise TypeError(f"{what} did not give an nn.Module")
    return module


def _call(module: nn.Module, *inputs: torch.Tensor):
    try:
        return module(*inputs)
    except NotImplementedError as error:
        raise _NotImplemented(
            f"{type(module).__name__}.forward still raises NotImplementedError"
        ) from error


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _shape(x) -> str:
    if isinstance(x, torch.Tensor):
        return str(tuple(x.shape))
    return f"a {type(x).__name__}, not a tensor"


def _randn(generator: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=generator) * scale


def _close(a, b) -> bool:
    return (
        isinstance(a, torch.Tensor)
        and a.shape == b.shape
        and bool(torch.allclose(a, b, atol=TOLERANCE, rtol=TOLERANCE))
    )


def _skip(name: str, reason: str) -> CheckResult:
    return CheckResult(name, False, f"not checked: {reason}", skipped=True)


def _diagnose(mistakes: dict, module, out, *inputs) -> str | None:
    for hint, mistaken_forward in mistakes.items():
        try:
            with torch.no_grad():
                if _close(out, mistaken_forward(module, *inputs)):
                    return hint
        except Exception:  # noqa: BLE001, S112 (a variant that does not apply to this module)
            continue
    return None


def _never_raise(names, run, *args) -> list[CheckResult]:
    """Run a checker; an error the checker did not foresee fails the remaining checks."""
    try:
        return run(*args)
    except Exception as error:  # noqa: BLE001 (e.g. a property that raises)
        return [CheckResult(names[0], False, f"the check itself hit {_describe(error)}")] + [
            _skip(name, "the check could not run") for name in names[1:]
        ]


def _not_implemented(results: list[CheckResult], names, error: _NotImplemented):
    results.append(CheckResult(
        "implemented", False,
        f"not implemented yet: {error}. Replace the `raise NotImplementedError()` with your code.",
    ))
    results.extend(_skip(name, "not implemented yet") for name in names[1:])
    return results


# ----------------------------------------------------------------------------- bidirectional

def bidirectional_results(cls, dim: int = 32, num_heads: int = 4) -> list[CheckResult]:
    """Check a ``BidirectionalCrossAttention`` class; never raises. See the module docstring."""
    with cpu_threads(1):
        return _never_raise(BIDIRECTIONAL_CHECKS, _bidirectional_results, cls, dim, num_heads)


def _bidirectional_results(cls, dim, num_heads):
    names = BIDIRECTIONAL_CHECKS
    results: list[CheckResult] = []
    gen = torch.Generator().manual_seed(0)
    name = getattr(cls, "__name__", repr(cls))

    # implemented: it can be built and called
    try:
        signature = f"{name}({dim}, num_heads={num_heads})"
        module = _build(lambda: cls(dim, num_heads=num_heads), signature)
        img, txt = _randn(gen, 2, 1, dim), _randn(gen, 2, 1, dim)
        with torch.no_grad():
            _call(module, img, txt)
    except _NotImplemented as error:
        return _not_implemented(results, names, error)
    except Exception as error:  # noqa: BLE001
        results.append(CheckResult("implemented", False, f"{name} raised {_describe(error)}"))
        results.extend(_skip(n, "the module does not run yet") for n in names[1:])
        return results
    results.append(CheckResult("implemented", True, f"{name}({dim}, num_heads={num_heads}) runs"))

    # attributes: the four submodules of the interface
    expected = {
        "txt_to_img": (CrossAttentionLayer, f"CrossAttentionLayer({dim}, num_heads)"),
        "img_to_txt": (CrossAttentionLayer, f"CrossAttentionLayer({dim}, num_heads)"),
        "norm_txt": (nn.LayerNorm, f"nn.LayerNorm({dim})"),
        "norm_img": (nn.LayerNorm, f"nn.LayerNorm({dim})"),
    }
    problems = []
    for attr, (kind, spelled) in expected.items():
        value = getattr(module, attr, None)
        if value is None:
            problems.append(f"missing attribute `{attr}` (expected {spelled})")
        elif not isinstance(value, kind):
            problems.append(f"`{attr}` is a {type(value).__name__}, expected {spelled}")
        elif kind is nn.LayerNorm and tuple(value.normalized_shape) != (dim,):
            problems.append(f"`{attr}` normalises shape {tuple(value.normalized_shape)}, "
                            f"expected ({dim},)")
        elif kind is CrossAttentionLayer and value.dim != dim:
            problems.append(f"`{attr}` has dim {value.dim}, expected {dim}")
    if not problems and module.txt_to_img is module.img_to_txt:
        problems.append("`txt_to_img` and `img_to_txt` are the same layer: create two")
    if not problems and module.norm_txt is module.norm_img:
        problems.append("`norm_txt` and `norm_img` are the same layer: create two")
    attributes_ok = not problems
    results.append(CheckResult(
        "attributes", attributes_ok,
        "; ".join(problems) if problems else
        "txt_to_img, img_to_txt (CrossAttentionLayer), norm_txt, norm_img (LayerNorm) found",
    ))

    # shapes: (B, N_img, dim), (B, N_txt, dim) -> (B, dim), also for another dim
    shape_problem = None
    cases = [(dim, 2, 1, 1), (dim, 3, 5, 2), (dim, 1, 1, 4), (2 * dim, 2, 3, 3)]
    for d, B, n_img, n_txt in cases:
        try:
            m = module if d == dim else _build(lambda d=d: cls(d, num_heads=num_heads), name)
            img, txt = _randn(gen, B, n_img, d), _randn(gen, B, n_txt, d)
            with torch.no_grad():
                out = _call(m, img, txt)
        except Exception as error:  # noqa: BLE001
            shape_problem = (f"for img_embed {(B, n_img, d)} and txt_embed {(B, n_txt, d)} "
                             f"it raised {_describe(error)}")
            break
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (B, d):
            hint = ""
            if out is None:
                hint = ": forward returned None, did you forget `return`?"
            elif isinstance(out, torch.Tensor) and tuple(out.shape) == (B, n_img + n_txt, d):
                hint = ": the tokens are concatenated but not mean-pooled (.mean(dim=1))"
            elif isinstance(out, torch.Tensor) and out.dim() == 2 and out.shape[1] == 2 * d:
                hint = ": concatenate along the token axis (dim=1), then mean-pool"
            shape_problem = (f"expected output shape {(B, d)} for img_embed {(B, n_img, d)} and "
                             f"txt_embed {(B, n_txt, d)}, got {_shape(out)}{hint}")
            break
    shapes_ok = shape_problem is None
    results.append(CheckResult(
        "shapes", shapes_ok, shape_problem or
        f"(B, N_img, {dim}) and (B, N_txt, {dim}) give (B, {dim}) for several B, N and dim",
    ))

    if not attributes_ok:
        results.extend(_skip(n, "fix the attributes first") for n in names[3:])
        return results
    if not shapes_ok:
        results.extend(_skip(n, "fix the output shape first") for n in names[3:])
        return results

    # equivalence with the reference, on several tokens per modality so both attentions matter
    module.eval()
    img, txt = _randn(gen, 4, 3, dim), _randn(gen, 4, 2, dim)
    try:
        with torch.no_grad():
            out = _call(module, img, txt)
            expected_out = reference_bidirectional(module, img, txt)
    except Exception as error:  # noqa: BLE001
        results.append(CheckResult("equivalence", False, f"raised {_describe(error)}"))
    else:
        if _close(out, expected_out):
            results.append(CheckResult(
                "equivalence", True,
                "matches norm(x + attn(x, other)) in both directions, concatenated and mean-pooled",
            ))
        else:
            hint = _diagnose(_BIDIR_MISTAKES, module, out, img, txt)
            diff = (out - expected_out).abs().max().item()
            results.append(CheckResult(
                "equivalence", False,
                f"output differs from the reference by up to {diff:.3g}: " + (
                    f"it looks like {hint}" if hint else
                    "check txt_upd = norm_txt(txt + txt_to_img(txt, img)), "
                    "img_upd = norm_img(img + img_to_txt(img, txt)), "
                    "then torch.cat([txt_upd, img_upd], dim=1).mean(dim=1)"
                ),
            ))

    # gradients reach all four submodules; a random projection of the output is the loss,
    # because the plain sum of a LayerNorm output has zero gradient
    module.train()
    module.zero_grad(set_to_none=True)
    try:
        out = _call(module, img, txt)
        (out * _randn(gen, *out.shape)).sum().backward()
    except Exception as error:  # noqa: BLE001
        results.append(CheckResult("gradients", False, f"backward raised {_describe(error)}"))
    else:
        missing = [
            attr for attr in ("txt_to_img", "img_to_txt", "norm_txt", "norm_img")
            if not any(p.grad is not None and p.grad.abs().sum() > 0
                       for p in getattr(module, attr).parameters())
        ]
        results.append(CheckResult(
            "gradients", not missing,
            f"no gradient reaches {', '.join(missing)}: is its output part of the result?"
            if missing else "gradients reach txt_to_img, img_to_txt, norm_txt and norm_img",
        ))
    module.zero_grad(set_to_none=True)

    # no NaN or inf, also for large and constant inputs
    module.eval()
    bad = None
    for label, img, txt in (
        ("large inputs (x100)",
         _randn(gen, 2, 3, dim, scale=100.0), _randn(gen, 2, 2, dim, scale=100.0)),
        ("all-zero inputs", torch.zeros(2, 1, dim), torch.zeros(2, 1, dim)),
        ("one sample, one token", _randn(gen, 1, 1, dim), _randn(gen, 1, 1, dim)),
    ):
        try:
            with torch.no_grad():
                out = _call(module, img, txt)
        except Exception as error:  # noqa: BLE001
            bad = f"{label} raised {_describe(error)}"
            break
        if not torch.isfinite(out).all():
            bad = f"the output has NaN or inf for {label}"
            break
    results.append(CheckResult("no_nan", bad is None, bad or "finite outputs, also for large "
                                                              "and all-zero inputs"))
    return results


# ----------------------------------------------------------------------------- gated

def gated_results(
    cls, img_dim: int = 32, txt_dim: int = 16, embed_dim: int = 32, num_classes: int = 3
) -> list[CheckResult]:
    """Check a ``GatedFusionModel`` class; never raises. See the module docstring."""
    with cpu_threads(1):
        return _never_raise(
            GATED_CHECKS, _gated_results, cls, img_dim, txt_dim, embed_dim, num_classes
        )


def _gated_results(cls, img_dim, txt_dim, embed_dim, num_classes):
    names = GATED_CHECKS
    results: list[CheckResult] = []
    gen = torch.Generator().manual_seed(0)
    name = getattr(cls, "__name__", repr(cls))
    signature = f"{name}(img_dim={img_dim}, txt_dim={txt_dim}, embed_dim={embed_dim}, " \
                f"num_classes={num_classes})"

    def build(classes=num_classes):
        return _build(lambda: cls(img_dim=img_dim, txt_dim=txt_dim, embed_dim=embed_dim,
                                  num_classes=classes), signature)

    # implemented
    try:
        model = build()
        with torch.no_grad():
            _call(model, _randn(gen, 2, img_dim), _randn(gen, 2, txt_dim))
    except _NotImplemented as error:
        return _not_implemented(results, names, error)
    except Exception as error:  # noqa: BLE001
        results.append(CheckResult("implemented", False, f"{name} raised {_describe(error)}"))
        results.extend(_skip(n, "the model does not run yet") for n in names[1:])
        return results
    results.append(CheckResult("implemented", True, f"{signature} runs"))

    # attributes
    problems = []
    for attr, in_dim in (("img_proj", img_dim), ("txt_proj", txt_dim)):
        layer = getattr(model, attr, None)
        spelled = f"nn.Linear({in_dim}, {embed_dim})"
        if layer is None:
            problems.append(f"missing attribute `{attr}` (expected {spelled})")
        elif not isinstance(layer, nn.Linear):
            problems.append(f"`{attr}` is a {type(layer).__name__}, expected {spelled}")
        elif (layer.in_features, layer.out_features) != (in_dim, embed_dim):
            problems.append(f"`{attr}` is nn.Linear({layer.in_features}, {layer.out_features}), "
                            f"expected {spelled}")
    if getattr(model, "gate", None) is None:
        problems.append("missing attribute `gate` (expected nn.Parameter(torch.zeros(1)))")
    classifier = getattr(model, "classifier", None)
    if classifier is None:
        problems.append(f"missing attribute `classifier` (expected an MLP {embed_dim} -> "
                        f"{embed_dim} -> ReLU -> {num_classes})")
    elif not isinstance(classifier, nn.Module):
        problems.append(f"`classifier` is a {type(classifier).__name__}, expected an nn.Module")
    attributes_ok = not problems
    results.append(CheckResult(
        "attributes", attributes_ok,
        "; ".join(problems) if problems else "img_proj, txt_proj, gate and classifier found",
    ))

    # gate: an nn.Parameter of shape (1,) at 0, so that sigmoid(gate) = 0.5
    gate = getattr(model, "gate", None)
    gate_ok = False
    if gate is None:
        message = "missing attribute `gate`: add self.gate = nn.Parameter(torch.zeros(1))"
    elif not isinstance(gate, nn.Parameter):
        message = (f"`gate` is a {type(gate).__name__}, not an nn.Parameter, so the optimizer "
                   "never updates it: use self.gate = nn.Parameter(torch.zeros(1))")
    elif tuple(gate.shape) != (1,):
        message = f"`gate` has shape {tuple(gate.shape)}, expected (1,): use torch.zeros(1)"
    elif not any(p is gate for p in model.parameters()):
        message = "`gate` is not registered in model.parameters(): assign it as self.gate"
    elif not gate.requires_grad:
        message = "`gate` has requires_grad=False, so it never learns"
    else:
        alpha = torch.sigmoid(gate.detach()).item()
        gate_ok = abs(alpha - 0.5) <= 1e-6
        message = (
            f"gate starts at 0.0, sigmoid(gate) = {alpha:.3f}: an equal mix of both modalities"
            if gate_ok else
            f"gate starts at {gate.item():.3f}, so sigmoid(gate) = {alpha:.3f}, expected 0.500: "
            "initialise it with torch.zeros(1) so that both modalities start with weight 0.5"
        )
    results.append(CheckResult("gate", gate_ok, message))

    # shapes: (B, img_dim), (B, txt_dim) -> (B, num_classes), also for another num_classes
    shape_problem = None
    for classes, B in ((num_classes, 2), (num_classes, 5), (num_classes, 1), (2, 4)):
        try:
            m = model if classes == num_classes else build(classes)
            img, txt = _randn(gen, B, img_dim), _randn(gen, B, txt_dim)
            with torch.no_grad():
                out = _call(m, img, txt)
        except Exception as error:  # noqa: BLE001
            shape_problem = (f"with num_classes={classes}, for img_feat {(B, img_dim)} and "
                             f"txt_feat {(B, txt_dim)} it raised {_describe(error)}")
            break
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (B, classes):
            hint = ": forward returned None, did you forget `return`?" if out is None else ""
            shape_problem = (f"with num_classes={classes}, expected output shape {(B, classes)} "
                             f"for img_feat {(B, img_dim)} and txt_feat {(B, txt_dim)}, got "
                             f"{_shape(out)}{hint}")
            break
    shapes_ok = shape_problem is None
    results.append(CheckResult(
        "shapes", shapes_ok,
        shape_problem or f"(B, {img_dim}) and (B, {txt_dim}) give (B, num_classes) logits",
    ))

    can_compare = attributes_ok and isinstance(gate, torch.Tensor) and tuple(gate.shape) == (1,)
    if not can_compare:
        results.extend(_skip(n, "fix the attributes and the gate first") for n in names[4:])
        return results
    if not shapes_ok:
        results.extend(_skip(n, "fix the output shape first") for n in names[4:])
        return results

    # equivalence, at the initial gate and at an uneven one (at 0 the two weights are equal,
    # which would hide a swapped alpha)
    equivalence = CheckResult("equivalence", True, "matches classifier(alpha * img_proj(img) + "
                                                   "(1 - alpha) * txt_proj(txt))")
    img, txt = _randn(gen, 6, img_dim), _randn(gen, 6, txt_dim)
    probe = copy.deepcopy(model).eval()
    for value in (None, 1.5):
        try:
            with torch.no_grad():
                if value is not None:
                    probe.gate.fill_(value)
                out = _call(probe, img, txt)
                expected_out = reference_gated(probe, img, txt)
        except Exception as error:  # noqa: BLE001
            equivalence = CheckResult("equivalence", False, f"raised {_describe(error)}")
            break
        if not _close(out, expected_out):
            at = "the initial gate" if value is None else f"gate = {value}"
            hint = _diagnose(_GATED_MISTAKES, probe, out, img, txt)
            diff = (out - expected_out).abs().max().item() if isinstance(out, torch.Tensor) else 0
            equivalence = CheckResult(
                "equivalence", False,
                f"at {at} the output differs from the reference by up to {diff:.3g}: " + (
                    f"it looks like {hint}" if hint else
                    "check alpha = torch.sigmoid(self.gate), z = alpha * img_proj(img) + "
                    "(1 - alpha) * txt_proj(txt), return classifier(z)"
                ),
            )
            break
    results.append(equivalence)

    # the gate receives a gradient
    probe = copy.deepcopy(model).train()
    probe.zero_grad(set_to_none=True)
    try:
        out = _call(probe, img, txt)
        (out * _randn(gen, *out.shape)).sum().backward()
    except Exception as error:  # noqa: BLE001
        results.append(CheckResult("gate_gradient", False, f"backward raised {_describe(error)}"))
    else:
        grad = getattr(probe.gate, "grad", None)
        ok = grad is not None and bool(torch.isfinite(grad).all()) and grad.abs().sum() > 0
        results.append(CheckResult(
            "gate_gradient", ok,
            f"the gate receives a gradient ({grad.item():+.3g} on a random loss)" if ok else
            "the gate receives no gradient: make it an nn.Parameter and use "
            "torch.sigmoid(self.gate) in forward",
        ))
    return results


# ----------------------------------------------------------------------------- printing

def _report(title: str, results: list[CheckResult]) -> bool:
    print(f"Checking {title}")
    for result in results:
        mark = "✅" if result.passed else ("➖" if result.skipped else "❌")
        print(f"  {mark} {result.name}: {result.message}")
    failed = [r for r in results if not r.passed]
    if not failed:
        print(f"All {len(results)} checks passed.")
    elif results[0].name == "implemented" and not results[0].passed:
        print("Not implemented yet: fill in the TODO above, then run this cell again.")
    else:
        print(f"{len(failed)} of {len(results)} checks did not pass: start with the first ❌.")
    return not failed


def bidirectional(cls) -> bool:
    """Print a verdict for a ``BidirectionalCrossAttention`` class; ``True`` when all pass."""
    return _report(getattr(cls, "__name__", repr(cls)), bidirectional_results(cls))


def gated(cls) -> bool:
    """Print a verdict for a ``GatedFusionModel`` class; ``True`` when all pass."""
    return _report(getattr(cls, "__name__", repr(cls)), gated_results(cls))
