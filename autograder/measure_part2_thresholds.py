"""Measure Part 2's accuracy verdict (``attn_accuracy``): the reference over 20 seeds against
ablations.

    python -m autograder.measure_part2_thresholds [--seeds 20]

Each run goes the grading path: the evidence of the accuracy cell
(``fusionlab.evidence_part2.collect_attention(..., train=True)``: ``SceneCrossAttention`` on
the attention variant, trained with seed s on "what shape is X") and the trusted verdict
(``autograder.hidden.part2``), which evaluates the exported trained weights on questions of its
own (``eval_seed`` 1000 + s, fewer objects and more padding than in training, junk in the
padding). For an ablation that the
grader cannot identify (uniform attention) the verdict fails with that reason; the table also
gives the accuracy its trained model reaches on the same questions, to show how far below the
threshold it would be. A threshold is sound when every reference run passes and every ablation
fails. The table it prints is copied into autograder/README.md.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from fusionlab import evidence_part2 as E
from fusionlab.models import check_attention_inputs
from fusionlab.scene_models import SceneCrossAttention
from fusionlab.train import accuracy

from .examples import attention_src
from .hidden import part2
from .hidden import reference_part2 as R

VARIANTS = {
    "reference": attention_src(),
    "no padding mask": attention_src(use_mask="False"),
    "mask inverted (True = keep)": attention_src(pad="~key_padding_mask[:, None, None, :]"),
    "no 1/sqrt(d) scaling": attention_src(scores="q @ k.transpose(-2, -1)"),
    "uniform attention (mean of the values)": attention_src(
        scores="torch.zeros(B, H, N_q, N_kv)"),
}


def _cls(source: str):
    namespace = {"torch": torch, "nn": nn, "F": F,
                 "check_attention_inputs": check_attention_inputs}
    exec(source, namespace)  # noqa: S102 (our own variant sources)
    return namespace["MaskedMultiHeadAttention"]


def run(cls, seed: int):
    """(verdict, direct accuracy, seconds) of the accuracy cell with grading seed ``seed``."""
    start = time.perf_counter()
    ev = E.collect_attention(cls, seed, train=True)
    seconds = time.perf_counter() - start
    request = {"seed": seed, "eval_seed": 1000 + seed}
    verdict = part2.verdict("attn_accuracy", ev, request)
    t = E.TRAINING
    model = SceneCrossAttention(embed_dim=t["embed_dim"], num_heads=t["num_heads"],
                                attention=cls)
    model.load_state_dict({k[len("trained/"):]: torch.as_tensor(v) for k, v in ev.items()
                           if k.startswith("trained/")})
    direct = accuracy(model.eval(), R.eval_data(request["eval_seed"]))
    return verdict, direct, seconds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--only", nargs="*", help="variant names (default: all)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    print(f"training: {E.TRAINING}; evaluation: the 'what shape is X' questions of "
          f"{R.EVAL_SCENES} scenes of the grader's seed, {R.EVAL_OBJECTS} objects in "
          f"{R.EVAL_SLOTS} slots, junk in the padding; threshold {R.ACCURACY_THRESHOLD}")
    print(f"| variant | min | median | max | passes ({args.seeds} seeds) | training s (median) |")
    print("|---|---|---|---|---|---|")
    for name, source in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        cls = _cls(source)
        runs = [run(cls, seed) for seed in range(args.seeds)]
        accs = [acc for _, acc, _ in runs]
        passed = sum(v.passed for v, _, _ in runs)
        print(f"| {name} | {min(accs):.3f} | {statistics.median(accs):.3f} | {max(accs):.3f} | "
              f"{passed}/{len(runs)} | {statistics.median(s for _, _, s in runs):.1f} |",
              flush=True)
        failed = {v.message for v, _, _ in runs if not v.passed}
        if name == "reference" and failed:
            print("  reference failures:", sorted(failed)[:3], flush=True)
    print(f"({time.perf_counter() - start:.0f} s, one thread; accuracies: the trained model "
          "with the variant's own attention on the grader's questions)")


if __name__ == "__main__":
    main()
