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
