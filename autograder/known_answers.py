"""Write the self-checks' known answers from the trusted reference formulas.

    python -m autograder.known_answers        # rewrites fusionlab/known_answers/part1.npz

The self-checks (``fusionlab.check``) load known weights into the student's module, run it on
known inputs (seed ``fusionlab.check.KNOWN_SEED``) and compare with the outputs stored here:
the reference's, and each known mistake's (for the hints). So the package needs no
implementation of a TODO. ``tests/test_check.py`` proves that the stored vectors equal a
fresh computation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fusionlab import check
from fusionlab import evidence as E
from fusionlab.models import CrossAttentionLayer

from .hidden import part1

PATH = Path(check.__file__).with_name("known_answers") / check.KNOWN_ANSWERS


def known_weights() -> dict[str, dict[str, np.ndarray]]:
    """Weights of each exercise's interface, drawn from KNOWN_SEED; the LayerNorms' and the
    gate's values are not their defaults, so that swapped norms and a swapped alpha show."""
    g = torch.Generator().manual_seed(check.KNOWN_SEED)
    torch.manual_seed(check.KNOWN_SEED)
    bidir = {}
    for attr in ("txt_to_img", "img_to_txt"):
        for key, value in CrossAttentionLayer(E.DIM, E.HEADS).state_dict().items():
            bidir[f"{attr}.{key}"] = value.numpy()
    for attr in ("norm_txt", "norm_img"):
        bidir[f"{attr}.weight"] = (1 + 0.3 * torch.randn(E.DIM, generator=g)).numpy()
        bidir[f"{attr}.bias"] = (0.3 * torch.randn(E.DIM, generator=g)).numpy()
    s = E.GATED_SIZES
    e, c = s["embed_dim"], s["num_classes"]
    gated = {"gate": np.array([0.7], dtype=np.float32)}
    for name, shape in (("img_proj", (e, s["img_dim"])), ("txt_proj", (e, s["txt_dim"])),
                        ("classifier.0", (e, e)), ("classifier.2", (c, e))):
        gated[f"{name}.weight"] = (0.3 * torch.randn(*shape, generator=g)).numpy()
        gated[f"{name}.bias"] = (0.3 * torch.randn(shape[0], generator=g)).numpy()
    return {"bidir": bidir, "gated": gated}


def compute() -> dict[str, np.ndarray]:
    """The known answers: ``<exercise>/weights/...``, ``<exercise>/expected/<key>`` and
    ``<exercise>/mistake/<name>/<key>``."""
    answers = {}
    for exercise, weights in known_weights().items():
        ev = {f"state/{k}": v for k, v in weights.items()}
        if exercise == "gated":
            ev["attr/gate"] = weights["gate"]
        facts = (part1.bidirectional_facts if exercise == "bidir" else part1.gated_facts)(
            ev, check.KNOWN_SEED)
        assert "unavailable" not in facts, facts.get("unavailable")
        answers.update({f"{exercise}/weights/{k}": v for k, v in weights.items()})
        answers.update({f"{exercise}/expected/{k}": v for k, v in facts["expected"].items()})
        for mistake, outputs in facts["mistakes"].items():
            answers.update({f"{exercise}/mistake/{mistake}/{k}": v for k, v in outputs.items()})
    return {k: np.asarray(v, dtype=np.float32) for k, v in answers.items()}


def main() -> None:
    answers = compute()
    E.save(answers, PATH)
    print(f"wrote {len(answers)} arrays to {PATH}")


if __name__ == "__main__":
    main()
