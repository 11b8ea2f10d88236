"""Results over seeds: how well one model trained with several seeds does on its test set,
overall and per class, as the mean and the spread over the seeds.

    histories, models = fit_seeds(EarlyFusion, train, test, seeds=[0, 1, 2], return_models=True)
    early = summarize(models, histories, test)
    early.mean, early.std              # overall test accuracy after the last epoch
    early.class_mean, early.class_std  # (C,) accuracy within each true class
    print(format_table({"early": early}, "Original data"))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from .data import per_seed
from .train import per_class_accuracy


@dataclass(frozen=True)
class SeedResults:
    """Test accuracies of one model, one row per seed."""

    accuracy: torch.Tensor  # (S,) after the last epoch
    per_class: torch.Tensor  # (S, C) within each true class

    @property
    def seeds(self) -> int:
        return self.accuracy.shape[0]

    @property
    def mean(self) -> float:
        return self.accuracy.mean().item()

    @property
    def std(self) -> float:
        """Standard deviation over the seeds; 0 for a single seed."""
        return self.accuracy.std().item() if self.seeds > 1 else 0.0

    @property
    def class_mean(self) -> torch.Tensor:  # (C,)
        return self.per_class.mean(dim=0)

    @property
    def class_std(self) -> torch.Tensor:  # (C,), zeros for a single seed
        if self.seeds == 1:
            return torch.zeros_like(self.per_class[0])
        return self.per_class.std(dim=0)


def summarize(models: Sequence[torch.nn.Module], histories: Sequence, test) -> SeedResults:
    """The results of ``models`` (one per seed, trained) and their ``histories``, as
    ``fit_seeds(..., return_models=True)`` returns them. ``test`` is one dataset for every seed
    or a list with one per seed."""
    if len(models) != len(histories) or not models:
        raise ValueError(
            f"expected one history per model, got {len(models)} models and "
            f"{len(histories)} histories"
        )
    tests = per_seed(test, len(models), "test")
    return SeedResults(
        accuracy=torch.tensor([history.final_acc for history in histories]),
        per_class=torch.tensor([per_class_accuracy(m, t) for m, t in zip(models, tests)]),
    )


def format_table(results: Mapping[str, SeedResults], title: str) -> str:
    """A text table: one row per model, the overall and per-class accuracy as mean ± std."""
    first = next(iter(results.values()))
    num_classes, seeds = first.per_class.shape[1], first.seeds
    header = f"{'model':<16}{'overall':>15}" + "".join(
        f"{'class ' + str(c):>15}" for c in range(num_classes)
    )
    lines = [f"{title}: test accuracy, mean ± std over {seeds} seed(s)", header, "-" * len(header)]
    for name, result in results.items():
        cells = [f"{result.mean:.3f} ± {result.std:.3f}"] + [
            f"{m:.3f} ± {s:.3f}" for m, s in zip(result.class_mean, result.class_std)
        ]
        lines.append(f"{name:<16}" + "".join(f"{cell:>15}" for cell in cells))
    return "\n".join(lines)
