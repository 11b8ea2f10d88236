"""The trusted reference computations of Part 3's verdicts (``autograder.hidden.part3``).

The grader never reads the submodule outputs a kernel reports: it recomputes them here from the
exported weights (``state/<name>``) on the inputs it derives from its own seed, with the
package's trusted layers (``nn.functional.linear``, ``fusionlab.models.CrossAttentionLayer``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from fusionlab import evidence_part3 as C
from fusionlab.check import close
from fusionlab.models import CrossAttentionLayer


class WeightsError(ValueError):
    """The exported weights do not fit the interface."""


def state(ev: dict, prefix: str = "state/") -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: torch.as_tensor(np.asarray(v, dtype=np.float32))
            for k, v in ev.items() if k.startswith(prefix)}


def linear(weights: dict, name: str, x: torch.Tensor, out_features: int) -> torch.Tensor:
    """``name``'s ``nn.Linear`` output on ``x``, from the exported weight and bias."""
    w, b = weights.get(f"{name}.weight"), weights.get(f"{name}.bias")
    if w is None or b is None or tuple(w.shape) != (out_features, x.shape[-1]) \
            or tuple(b.shape) != (out_features,):
        raise WeightsError(f"{name} is not an nn.Linear({x.shape[-1]}, {out_features})")
    return F.linear(x, w, b)


def gmu_facts(ev: dict, seed: int) -> dict:
    x, weights = C.gmu_inputs(seed), state(ev)
    H = C.GMU_SIZES["hidden_dim"]
    facts: dict = {"grader": True}
    with torch.no_grad():
        for name, inp in (("img_proj", x["img"]), ("txt_proj", x["txt"]),
                          ("gate_proj", torch.cat([x["img"], x["txt"]], dim=-1))):
            try:
                facts[f"sub/{name}"] = linear(weights, name, inp, H).numpy()
            except WeightsError:
                pass
    return facts


def block_facts(ev: dict, seed: int) -> dict:
    inp, weights = C.block_inputs(seed), state(ev)
    facts: dict = {"grader": True, "eq/y": inp["y"].numpy()}
    layer = CrossAttentionLayer(C.BLOCK_DIM, C.BLOCK_HEADS)
    attn = {k[len("cross_attn."):]: v for k, v in weights.items() if k.startswith("cross_attn.")}
    try:
        layer.load_state_dict(attn, strict=True)
    except (RuntimeError, KeyError):
        return facts
    layer.eval()
    with torch.no_grad():
        facts["eq/sub"] = layer(inp["y"], inp["x"]).numpy()
        facts["mask/sub"] = layer(inp["y"], inp["x"], inp["mask"]).numpy()
    return facts


def dropout_facts(ev: dict, seed: int) -> dict:
    inp = C.dropout_inputs(seed)
    return {"grader": True, "x": inp["x"].numpy(), "u": inp["u"].numpy(),
            "tok/in": inp["tokens"].numpy(), "tok/u": inp["tok/u"].numpy()}


# ----------------------------------------------------------------------------- accuracy

def _tanh_sigmoid(h: dict):
    return torch.tanh(h["img_proj"]), torch.tanh(h["txt_proj"]), torch.sigmoid(h["gate_proj"])


# The GMU formulas whose trained weights the grader can evaluate: the reference and the known
# mistakes of gmu_equivalence. Each maps the three projections to (h, the image's weight).
GMU_VARIANTS = {
    "reference": lambda h: (lambda v, t, z: (z * v + (1 - z) * t, z))(*_tanh_sigmoid(h)),
    "swapped gate": lambda h: (lambda v, t, z: ((1 - z) * v + z * t, 1 - z))(*_tanh_sigmoid(h)),
    "tanh missing": lambda h: (lambda z: (z * h["img_proj"] + (1 - z) * h["txt_proj"], z))(
        torch.sigmoid(h["gate_proj"])),
}


def gmu_variant(ev: dict, facts: dict) -> str | None:
    """The formula of ``GMU_VARIANTS`` the exported output matches on the grader's own
    submodule outputs, or None."""
    out = ev.get("eq/out")
    subs = {n: facts.get(f"sub/{n}") for n in ("img_proj", "txt_proj", "gate_proj")}
    if out is None or any(v is None for v in subs.values()):
        return None
    h = {n: torch.as_tensor(v) for n, v in subs.items()}
    for name, formula in GMU_VARIANTS.items():
        expected = formula(h)[0].numpy()
        if close(out, expected):
            return name
    return None


def gmu_trained(ev: dict, variant: str, eval_seed: int, samples: int) -> tuple[float, float]:
    """(accuracy, corr(image weight, M)) of ``FusionClassifier(GMU, 2)`` with the exported
    trained weights, on the grader's own switch data; raises WeightsError."""
    from fusionlab.gating import gate_switch_correlation
    from fusionlab.gating_data import SwitchDataset

    weights, H = state(ev, "trained/"), C.GMU_SIZES["hidden_dim"]
    data = SwitchDataset(samples, seed=eval_seed)
    img, txt = data.img_features, data.txt_features
    with torch.no_grad():
        h = {"img_proj": linear(weights, "fusion.img_proj", img, H),
             "txt_proj": linear(weights, "fusion.txt_proj", txt, H),
             "gate_proj": linear(weights, "fusion.gate_proj", torch.cat([img, txt], -1), H)}
        fused, image_weight = GMU_VARIANTS[variant](h)
        logits = linear(weights, "classifier", fused, 2)
    acc = float((logits.argmax(dim=1) == data.labels).float().mean())
    return acc, gate_switch_correlation(image_weight, data.switch)


def dropout_trained(ev: dict, eval_seed: int, samples: int) -> dict:
    """An ``EarlyFusion`` with the exported trained weights on the grader's own redundant data:
    accuracy with every text present, and accuracy and cross-entropy with every text zeroed.
    Raises WeightsError."""
    from fusionlab.gating_data import RedundantDataset
    from fusionlab.models import EarlyFusion

    classes = C.DROPOUT_TRAINING["num_classes"]
    model = EarlyFusion(32, 16, num_classes=classes)
    try:
        model.load_state_dict(state(ev, "trained/"), strict=True)
    except (RuntimeError, KeyError) as error:
        raise WeightsError(f"the trained weights do not fit EarlyFusion(32, 16, "
                           f"num_classes={classes}): {str(error).splitlines()[0]}") from None
    data = RedundantDataset(samples, seed=eval_seed, num_classes=classes)
    labels = data.labels
    model.eval()
    with torch.no_grad():
        full = model(data.img_features, data.txt_features)
        missing = model(data.img_features, torch.zeros_like(data.txt_features))
    return {"complete": float((full.argmax(dim=1) == labels).float().mean()),
            "text_missing": float((missing.argmax(dim=1) == labels).float().mean()),
            "text_missing_loss": float(F.cross_entropy(missing, labels))}
