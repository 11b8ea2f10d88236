"""Part 4's figures. Every function draws a new figure and returns the ``matplotlib`` Figure
(``plt.show()`` in a notebook, ``fig.savefig`` in a script); the colours are the course's
(``fusionlab.plots``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import MaxNLocator

from ..plots import COLORS
from .data import IMAGE_SIDE, NUM_CLASSES

CLASS_COLORS = plt.get_cmap("tab10").colors  # one colour per digit


def _band(ax, x, runs, color, label, marker="o"):
    """Mean over the runs (rows) as a line, min to max as a band."""
    runs = np.asarray(runs, dtype=float)
    ax.plot(x, runs.mean(axis=0), marker=marker, color=color, label=label)
    if len(runs) > 1:
        ax.fill_between(x, runs.min(axis=0), runs.max(axis=0), color=color, alpha=0.2)


def plot_digits(data, count: int = 12, columns: int = 6):
    """The first ``count`` images of ``data`` with their captions."""
    rows = -(-count // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.9 * rows))
    for i, ax in enumerate(np.ravel(axes)):
        ax.axis("off")
        if i >= min(count, len(data)):
            continue
        ax.imshow(data.images[i].reshape(IMAGE_SIDE, IMAGE_SIDE).numpy(), cmap="gray_r", vmin=0,
                  vmax=1,
                  aspect="equal")
        words = data.captions[i].split()
        half = (len(words) + 1) // 2
        ax.set_title(" ".join(words[:half]) + "\n" + " ".join(words[half:]), fontsize=9)
    fig.suptitle("Real images (8x8 scans) with their synthetic captions", fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.96), h_pad=1.5)
    return fig


def plot_training(histories: Mapping[str, Sequence]):
    """Training loss (left) and exp(logit_scale) (right) per epoch, one line per name: the mean
    over its runs (``ContrastiveHistory`` each) and a min-max band. The two losses are on
    different scales, so each has its own axis on the left panel."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    twin = None
    for i, (name, runs) in enumerate(histories.items()):
        epochs = np.arange(1, len(runs[0].loss) + 1)
        ax = left if i == 0 else (twin := twin or left.twinx())
        _band(ax, epochs, [h.loss for h in runs], COLORS[i], name, marker=None)
        ax.set_ylabel(f"{name} loss", color=COLORS[i])
        _band(right, epochs, [h.scale for h in runs], COLORS[i], name, marker=None)
    left.set_xlabel("epoch")
    left.set_title("Training loss (mean over seeds, band: min to max)")
    right.set_xlabel("epoch")
    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    right.set_ylabel("exp(logit_scale) = 1 / temperature")
    right.set_title("The learned scale")
    right.legend()
    fig.tight_layout()
    return fig


def plot_similarity(sim: torch.Tensor, labels: torch.Tensor, title: str = ""):
    """A similarity matrix (images as rows, captions as columns), the pairs sorted by digit so
    that the digits show as blocks; the pairs themselves are on the diagonal."""
    order = torch.argsort(labels, stable=True)
    sim, labels = sim[order][:, order].numpy(), labels[order].tolist()
    fig, ax = plt.subplots(figsize=(7.2, 5.8))
    shown = ax.imshow(sim, cmap="viridis", vmin=-1, vmax=1)
    fig.colorbar(shown, ax=ax, label="cosine similarity")
    edges = [i for i in range(1, len(labels)) if labels[i] != labels[i - 1]]
    for e in edges:
        ax.axhline(e - 0.5, color="white", linewidth=0.6)
        ax.axvline(e - 0.5, color="white", linewidth=0.6)
    starts = [0] + edges
    centres = [(a + b - 1) / 2 for a, b in zip(starts, edges + [len(labels)])]
    ax.set_xticks(centres, [str(labels[s]) for s in starts])
    ax.set_yticks(centres, [str(labels[s]) for s in starts])
    ax.set_xlabel("captions (by digit)")
    ax.set_ylabel("images (by digit)")
    ax.set_title(title or "Similarity of test images and captions", fontsize=10)
    fig.tight_layout()
    return fig


def plot_negatives(results: Mapping[str, Mapping[int, Mapping[str, Sequence[float]]]],
                   metrics: Sequence[str] = ("recall@5", "zero-shot")):
    """Each metric (a panel) against the number of negatives per pair, one line per loss: the
    mean over seeds and a min-max band. ``results``: ``{loss: {group_size: {metric: [...]}}}``
    (``fusionlab.part4.experiments.negatives_sweep``)."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4.2))
    axes = np.atleast_1d(axes)
    for ax, metric in zip(axes, metrics):
        for i, (name, sweep) in enumerate(results.items()):
            groups = sorted(sweep)
            runs = np.array([sweep[g][metric] for g in groups]).T  # (seeds, groups)
            _band(ax, [g - 1 for g in groups], runs, COLORS[i], name)
        ax.set_xscale("log", base=2)
        ticks = sorted({g - 1 for sweep in results.values() for g in sweep})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set_xlabel("negatives per pair (group size - 1)")
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} against the number of negatives")
        ax.legend()
    fig.tight_layout()
    return fig


def plot_zero_shot(single: Mapping[str, Sequence[float]], ensemble: Sequence[float],
                   probe: Sequence[float]):
    """Accuracy on held-out images: each single prompt, their ensemble (zero-shot), and the
    linear probe (labelled); bars are means over seeds, ticks the min and max."""
    names = list(single) + ["ensemble of all", "linear probe"]
    runs = [np.asarray(v, dtype=float) for v in single.values()] + [
        np.asarray(ensemble, dtype=float), np.asarray(probe, dtype=float)]
    means = np.array([r.mean() for r in runs])
    low, high = means - np.array([r.min() for r in runs]), np.array([r.max() for r in runs]) - means
    colors = [COLORS[0]] * len(single) + [COLORS[1], COLORS[2]]
    fig, ax = plt.subplots(figsize=(12, 4.6))
    ax.bar(range(len(names)), means, color=colors, yerr=[low, high], capsize=3)
    ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=9)
    lowest = min(r.min() for r in runs)
    ax.set_ylim(max(0.0, lowest - 0.08), 1.0)
    ax.set_ylabel("accuracy on held-out images")
    ax.set_title("Zero-shot with one prompt, with the ensemble of all ten, and the supervised "
                 f"linear probe (chance: {1 / NUM_CLASSES:.1f}, off the axis)")
    fig.tight_layout()
    return fig


def pca_2d(*clouds: torch.Tensor) -> list[torch.Tensor]:
    """The clouds projected together on the first two principal components of their union."""
    joint = torch.cat(clouds)
    centred = joint - joint.mean(0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    projected = centred @ v[:2].T
    return list(projected.split([len(c) for c in clouds]))


def plot_embeddings(panels: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
                    labels: torch.Tensor):
    """One panel per name: the normalised image embeddings (dots) and caption embeddings
    (crosses) of the same pairs, projected together on two principal components, coloured by
    digit; a black segment joins the two centres (the modality gap)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 5.4))
    axes = np.atleast_1d(axes)
    for ax, (name, (image_emb, text_emb)) in zip(axes, panels.items()):
        image_2d, text_2d = (p.numpy() for p in pca_2d(image_emb, text_emb))
        for c in range(NUM_CLASSES):
            rows = (labels == c).numpy()
            ax.scatter(image_2d[rows, 0], image_2d[rows, 1], s=10, alpha=0.5,
                       color=CLASS_COLORS[c], marker="o")
            ax.scatter(text_2d[rows, 0], text_2d[rows, 1], s=22, alpha=0.6,
                       color=CLASS_COLORS[c], marker="x")
        centres = np.stack([image_2d.mean(0), text_2d.mean(0)])
        ax.plot(centres[:, 0], centres[:, 1], color="black", marker="D", linewidth=2)
        gap = (image_emb.mean(0) - text_emb.mean(0)).norm().item()
        ax.set_title(f"{name}: gap between the centres {gap:.2f}")
        ax.set_xlabel("principal component 1")
        ax.set_ylabel("principal component 2")
    handles = [plt.Line2D([], [], color="gray", marker="o", linestyle="", label="images"),
               plt.Line2D([], [], color="gray", marker="x", linestyle="", label="captions"),
               plt.Line2D([], [], color="black", marker="D", label="the two centres")]
    handles += [plt.Line2D([], [], color=CLASS_COLORS[c], marker="s", linestyle="",
                           label=str(c)) for c in range(NUM_CLASSES)]
    axes[-1].legend(handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5),
                    fontsize=9)
    fig.tight_layout()
    return fig


ZERO_LOSS = 1e-17  # where a loss of exactly 0 is drawn on the log axis


def plot_loss_against_scale(curves: Mapping[str, Sequence[float]], scales: Sequence[float],
                            start: float = 1 / 0.07, clamp: float = 100.0):
    """The loss of fixed embeddings against the scale ``exp(logit_scale)``, log axes, one curve
    per name, with CLIP's starting scale and its clamp drawn; a dot marks each curve's lowest
    loss (the first, where it reaches 0). A loss of exactly 0 is drawn at ``ZERO_LOSS``."""
    fig, ax = plt.subplots(figsize=(8, 4.6))
    for i, (name, losses) in enumerate(curves.items()):
        shown = np.maximum(np.asarray(losses, dtype=float), ZERO_LOSS)
        ax.plot(scales, shown, color=COLORS[i], label=name)
        best = int(np.argmin(losses))
        ax.plot(scales[best], shown[best], "o", color=COLORS[i])
    ax.axvline(start, color="gray", linestyle=":", linewidth=1, label=f"CLIP's start, {start:.1f}")
    ax.axvline(clamp, color="gray", linestyle="--", linewidth=1, label=f"the clamp, {clamp:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("scale exp(logit_scale) = 1 / temperature")
    ax.set_ylabel(f"loss of the batch (0 drawn at {ZERO_LOSS:g})")
    ax.set_title("The loss of fixed embeddings against the scale (dots: the lowest loss)")
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig


def plot_align_before_fuse(results: Mapping[tuple[str, int], Sequence[float]]):
    """Matching accuracy against the number of labelled pairs, from aligned encoders and from
    scratch (``fusionlab.part4.experiments.align_before_fuse``): mean over seeds, min-max band."""
    fig, ax = plt.subplots(figsize=(7, 4.4))
    labelled = sorted({n for _, n in results})
    for i, start in enumerate(("aligned", "scratch")):
        runs = np.array([results[(start, n)] for n in labelled]).T  # (seeds, sizes)
        label = "aligned encoders, frozen (contrastive first)" if start == "aligned" else \
            "new encoders, trained with it (from scratch)"
        _band(ax, labelled, runs, COLORS[i], label)
    ax.axhline(0.5, color="gray", linestyle="--", linewidth=1, label="chance")
    ax.set_xscale("log")
    ax.set_xticks(labelled, [str(n) for n in labelled])
    ax.minorticks_off()
    ax.set_xlabel("labelled image-caption pairs")
    ax.set_ylabel("matching accuracy (held-out pairs)")
    ax.set_title("Does this caption describe this image?")
    ax.legend()
    fig.tight_layout()
    return fig
