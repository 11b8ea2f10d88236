"""Measure the accuracy tests of Part 1: the reference over 20 seeds against broken variants.

    python -m autograder.measure_thresholds [--seeds 20]

For each seed s the XOR data comes from ``make_splits(seed=s)`` and the model is built after
``torch.manual_seed(s)`` (the grader itself uses seed 0 for both); everything else is the
grader's setting (``checks_part1.ACCURACY``). A threshold is sound when every reference run is
above it and every broken run below it. The table it prints is copied into
autograder/README.md.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from .examples import _bidir, _gated
from .hidden import integrity

BIDIR_BROKEN = {
    "text tokens only (no attention)": _bidir(result="self.norm_txt(txt_embed).mean(dim=1)"),
    "image tokens only": _bidir(result="img_upd.mean(dim=1)",
                                img_upd="self.norm_img(img_embed)"),
    "output detached from the graph": _bidir(result="torch.cat([txt_upd, img_upd], dim=1)"
                                                    ".mean(dim=1).detach()"),
    "constant output": _bidir(result="torch.zeros_like(txt_upd).mean(dim=1)"),
}
GATED_BROKEN = {
    "linear head (nn.Linear classifier)": _gated(classifier="nn.Linear(embed_dim, num_classes)"),
    "image only (alpha stuck at 1, no gradient)": _gated(gate="torch.full((1,), 40.0)"),
    "text only (alpha stuck at 0, no gradient)": _gated(gate="torch.full((1,), -40.0)"),
}


def _classes(source: str):
    from fusionlab.models import CrossAttentionLayer

    namespace = {"torch": torch, "nn": nn, "F": F, "CrossAttentionLayer": CrossAttentionLayer}
    exec(source, namespace)  # noqa: S102 (our own variant sources)
    return namespace


def measure(seeds: int = 20) -> list[tuple[str, str, list[float]]]:
    from .hidden import part1

    pristine = integrity.load_pristine_fusionlab()
    rows = []
    cases = [("bidirectional", "reference", _bidir())]
    cases += [("bidirectional", name, src) for name, src in BIDIR_BROKEN.items()]
    cases += [("gated", "reference", _gated())]
    cases += [("gated", name, src) for name, src in GATED_BROKEN.items()]
    for model, name, source in cases:
        namespace = _classes(source)
        accs = []
        for seed in range(seeds):
            settings = {"data_seed": seed, "model_seed": seed}
            if model == "bidirectional":
                layer = namespace["BidirectionalCrossAttention"]
                make = lambda classes, layer=layer: part1.BidirectionalClassifier(layer, classes)  # noqa: E731
            else:
                cls = namespace["GatedFusionModel"]
                make = lambda classes, cls=cls: cls(num_classes=classes)  # noqa: E731
            accs.append(part1.train_accuracy(pristine, make, settings))
        rows.append((model, name, accs))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args(argv)
    from .hidden import part1

    start = time.perf_counter()
    rows = measure(args.seeds)
    print(f"settings: {part1.ACCURACY}; thresholds: bidirectional "
          f"{part1.BIDIR_ACCURACY_THRESHOLD}, gated {part1.GATED_ACCURACY_THRESHOLD}")
    print(f"| model | variant | min | median | max | passes ({args.seeds} seeds) |")
    print("|---|---|---|---|---|---|")
    for model, name, accs in rows:
        threshold = (part1.BIDIR_ACCURACY_THRESHOLD if model == "bidirectional"
                     else part1.GATED_ACCURACY_THRESHOLD)
        passes = sum(a >= threshold for a in accs)
        print(f"| {model} | {name} | {min(accs):.3f} | {statistics.median(accs):.3f} | "
              f"{max(accs):.3f} | {passes}/{len(accs)} |")
    print(f"({time.perf_counter() - start:.0f} s, one thread per training run)")


if __name__ == "__main__":
    main()
