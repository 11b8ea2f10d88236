"""The course's figures. Every function draws a new figure and returns the ``matplotlib``
Figure; call ``plt.show()`` in a notebook, or ``fig.savefig`` in a script.

Colours follow the Part 1 seed notebook: blue, orange-red and green for the first three series.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import MaxNLocator

COLORS = ["#2196F3", "#FF5722", "#4CAF50", "#9C27B0", "#FFC107", "#607D8B"]


def _color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def plot_data(dataset, dims: tuple[int, int] = (0, 1), max_points: int = 1500):
    """Scatter of two feature dimensions of each modality, coloured by class.

    At most ``max_points`` samples are drawn, evenly spaced over the dataset so that every class
    keeps its share (the datasets store their samples grouped by class).
    """
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    labels = dataset.labels
    shown = torch.linspace(0, len(labels) - 1, min(max_points, len(labels))).round().long()
    for ax, feats, title in (
        (axes[0], dataset.img_features, "Image features"),
        (axes[1], dataset.txt_features, "Text features"),
    ):
        for c in range(int(labels.max()) + 1):
            rows = shown[labels[shown] == c]
            ax.scatter(feats[rows, dims[0]], feats[rows, dims[1]], s=12, alpha=0.4,
                       color=_color(c), label=f"Class {c}")
        ax.set_title(f"{title} (dims {dims[0]} and {dims[1]})")
        ax.set_xlabel(f"Dimension {dims[0]}")
        ax.set_ylabel(f"Dimension {dims[1]}")
        ax.legend()
    fig.tight_layout()
    return fig


def plot_cross_modal(dataset, img_dim: int = 0, txt_dim: int = 0, max_points: int = 1500):
    """Scatter of one image feature against one text feature, coloured by class.

    ``plot_data`` shows each modality on its own; this shows the two together, which is where
    a cross-modal rule lives: on the XOR task ``image[0]`` against ``text[0]`` puts class 0 in
    the quadrants where the signs agree and class 1 where they differ.
    """
    fig, ax = plt.subplots(figsize=(6, 5.5))
    labels = dataset.labels
    shown = torch.linspace(0, len(labels) - 1, min(max_points, len(labels))).round().long()
    img, txt = dataset.img_features[:, img_dim], dataset.txt_features[:, txt_dim]
    for c in range(int(labels.max()) + 1):
        rows = shown[labels[shown] == c]
        ax.scatter(img[rows], txt[rows], s=12, alpha=0.4, color=_color(c), label=f"Class {c}")
    ax.axhline(0, color="gray", linewidth=0.8)
    ax.axvline(0, color="gray", linewidth=0.8)
    ax.set_xlabel(f"image[{img_dim}]")
    ax.set_ylabel(f"text[{txt_dim}]")
    ax.set_title(f"image[{img_dim}] against text[{txt_dim}]")
    ax.legend()
    fig.tight_layout()
    return fig


def _as_runs(value) -> list:
    """One History or a list of Histories (one per seed) -> a list."""
    return list(value) if isinstance(value, Sequence) else [value]


def plot_training_curves(histories: Mapping[str, object],
                         initial_acc: Mapping[str, object] | None = None):
    """Training loss and test accuracy per epoch, one line per model.

    ``histories`` maps a model name to a ``History`` or to a list of them (one per seed); with
    several seeds the line is the mean and the band spans the minimum to the maximum over the
    seeds, as the panel titles say. ``initial_acc`` maps a model name to its test accuracy
    before training (one number, or one per seed): its accuracy curve then starts at epoch 0,
    the initialisation. (The training loss is a mean over an epoch's batches, so it has no
    epoch 0.)
    """
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    seed_counts = set()
    for i, (name, value) in enumerate(histories.items()):
        runs = _as_runs(value)
        seed_counts.add(len(runs))
        for ax, attr in ((axes[0], "train_loss"), (axes[1], "test_acc")):
            length = min(len(getattr(h, attr)) for h in runs)
            if length == 0:
                continue
            curves = np.array([getattr(h, attr)[:length] for h in runs])  # (seeds, epochs)
            epochs = np.arange(1, length + 1)
            if attr == "test_acc" and initial_acc is not None and name in initial_acc:
                start = np.asarray(initial_acc[name], dtype=float).reshape(-1)  # (seeds,)
                if start.size not in (1, len(runs)):
                    raise ValueError(f"{name}: expected 1 or {len(runs)} initial accuracies "
                                     f"(one per seed), got {start.size}")
                curves = np.concatenate([np.broadcast_to(start, (len(runs),))[:, None], curves],
                                        axis=1)
                epochs = np.arange(0, length + 1)
            ax.plot(epochs, curves.mean(axis=0), color=_color(i), linewidth=2, label=name)
            if len(runs) > 1:
                ax.fill_between(epochs, curves.min(axis=0), curves.max(axis=0),
                                color=_color(i), alpha=0.2)
    if seed_counts == {1}:
        note = ""
    elif len(seed_counts) == 1:
        note = f"\nline: mean of {seed_counts.pop()} seeds, band: min to max over the seeds"
    else:
        note = "\nline: mean over the seeds, band: min to max over the seeds"
    axes[0].set_ylabel("Training loss")
    axes[0].set_title("Training loss" + note)
    axes[1].set_ylabel("Test accuracy")
    axes[1].set_title("Test accuracy" + note)
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("Epoch")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def plot_per_class(
    results: Mapping[str, Sequence[float]],
    class_names: Sequence[str] | None = None,
    highlight: int | None = None,
    errors: Mapping[str, Sequence[float]] | None = None,
    chance: float | Mapping[str, float] | None = None,
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
):
    """One panel per model with a bar per class accuracy and its value written above it.

    ``highlight`` draws that class's bar solid and the others faded (the seed notebook tried to
    do this with a list of alphas, which matplotlib rejects: here each bar gets its own alpha).
    ``errors`` adds error bars (e.g. the standard deviation over seeds); ``chance`` a dashed line,
    at one level for every panel or at a level per panel (a mapping from the panel's name),
    explained by one legend below the panels, where it covers no value label. Long labels (more
    than three bars, e.g. model names) are drawn at an angle. ``title`` goes above the panels.
    """
    names = list(results)
    fig, axes = plt.subplots(1, len(names), figsize=figsize or (4.5 * len(names), 4.2),
                             squeeze=False, layout="constrained")
    chance_line = None
    for i, (ax, name) in enumerate(zip(axes[0], names)):
        accs = list(results[name])
        labels = list(class_names) if class_names else [f"Class {c}" for c in range(len(accs))]
        yerr = list(errors[name]) if errors and name in errors else None
        bars = ax.bar(labels, accs, color=_color(i), edgecolor=_color(i), linewidth=2,
                      yerr=yerr, capsize=4)
        for c, (bar, acc) in enumerate(zip(bars, accs)):
            if highlight is not None:
                bar.set_alpha(1.0 if c == highlight else 0.5)
            top = min(acc + (yerr[c] if yerr else 0.0), 1.0)  # above the error bar
            ax.text(bar.get_x() + bar.get_width() / 2, top + 0.02, f"{acc:.2f}",
                    ha="center", va="bottom", fontweight="bold")
        level = chance.get(name) if isinstance(chance, Mapping) else chance
        if level is not None:
            chance_line = ax.axhline(level, color="gray", linestyle="--", alpha=0.6)
        if len(accs) > 3:
            ax.tick_params(axis="x", labelrotation=45)
        ax.set_ylim(0, 1.15)
        ax.set_title(name, fontsize=13, fontweight="bold")
        ax.set_ylabel("Accuracy")
    if title:
        fig.suptitle(title, fontsize=15, fontweight="bold")
    if chance_line is not None:
        fig.legend([chance_line], ["chance level (guessing)"], loc="outside lower center")
    return fig


def plot_confusion_matrix(confusion, class_names: Sequence[str] | None = None, title: str = ""):
    """Heatmap of a confusion matrix (rows: true class, columns: predicted), with counts."""
    confusion = np.asarray(torch.as_tensor(confusion).cpu())
    n = confusion.shape[0]
    names = list(class_names) if class_names else [str(c) for c in range(n)]
    fig, ax = plt.subplots(figsize=(1.2 * n + 2.5, 1.2 * n + 1.5))
    image = ax.imshow(confusion, cmap="Blues")
    fig.colorbar(image, ax=ax)
    threshold = confusion.max() / 2 if confusion.size else 0
    for r in range(n):
        for c in range(n):
            ax.text(c, r, f"{confusion[r, c]:d}", ha="center", va="center",
                    color="white" if confusion[r, c] > threshold else "black")
    ax.set_xticks(range(n), names)
    ax.set_yticks(range(n), names)
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("True class")
    ax.set_title(title or "Confusion matrix")
    fig.tight_layout()
    return fig


def plot_attention(
    weights,
    query_labels: Sequence[str] | None = None,
    key_labels: Sequence[str] | None = None,
    title: str = "",
):
    """Heatmap of attention weights.

    ``weights`` is ``(N_q, N_kv)`` or ``(heads, N_q, N_kv)`` (one panel per head, titled
    ``"head h"`` under the figure's ``title``), e.g. ``model.last_attn_weights[0]`` for the
    first sample of a batch. Each row sums to 1. A single map has one title only, ``title``.
    """
    weights = torch.as_tensor(weights).detach().float().cpu()
    if weights.dim() == 2:
        weights = weights.unsqueeze(0)
    if weights.dim() != 3:
        raise ValueError(
            f"weights must have shape (N_q, N_kv) or (heads, N_q, N_kv), got {tuple(weights.shape)}"
        )
    heads, n_q, n_kv = weights.shape
    panel_width = max(2.5, 0.45 * n_kv + 1.5)
    fig, axes = plt.subplots(1, heads, figsize=(panel_width * heads + 1.0, 0.45 * n_q + 2.5),
                             squeeze=False)
    for h, ax in enumerate(axes[0]):
        image = ax.imshow(weights[h].numpy(), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(n_kv), key_labels or [str(k) for k in range(n_kv)], rotation=90)
        ax.set_yticks(range(n_q), query_labels or [str(q) for q in range(n_q)])
        ax.set_xlabel("Key (attended to)")
        if h == 0:
            ax.set_ylabel("Query")
        if heads > 1:
            ax.set_title(f"head {h}")
    fig.colorbar(image, ax=list(axes[0]))
    if heads == 1:
        axes[0][0].set_title(title)  # one title: no panel title under it to misread
    elif title:
        fig.suptitle(title)
    return fig


# ----------------------------------------------------------------------------- Part 3: gates


def plot_gate_vs_switch(gate, switch, title: str = ""):
    """Where a per-sample gate sits for each value of the switch ``M`` (``SwitchDataset``).

    ``gate`` is ``(n,)`` or ``(n, H)`` (averaged over the features), e.g. a GMU's ``z`` on the
    test set; ``switch`` ``(n,)`` holds ``M`` (1: the image carries the class). One histogram
    per value of ``M``; the title gives their Pearson correlation
    (``fusionlab.part3.models.gate_switch_correlation``).
    """
    from .part3.models import gate_switch_correlation

    gate_t = torch.as_tensor(gate).detach().float().cpu()
    corr = gate_switch_correlation(gate_t, switch)
    if gate_t.dim() == 2:
        gate_t = gate_t.mean(dim=1)
    switch = torch.as_tensor(switch).cpu()
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(0.0, 1.0, 41)
    for i, (m, label) in enumerate(((1, "M = 1: the image speaks"), (0, "M = 0: the text speaks"))):
        ax.hist(gate_t[switch == m].numpy(), bins=bins, color=_color(i), alpha=0.6, label=label)
    ax.set_xlim(0, 1)
    ax.set_xlabel("gate z (mean over features): the image's share")
    ax.set_ylabel("samples")
    ax.set_title(title or f"Gate against the switch M: corr(z, M) = {corr:.2f}")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_missing_curves(
    rates: Sequence[float],
    curves: Mapping[str, Sequence[Sequence[float]]],
    title: str = "",
    chance: float | None = None,
):
    """Accuracy against the fraction of test samples missing a modality, one line per model.

    ``curves`` maps a name to one accuracy per rate, or to a list of them (one per seed): the
    line is then the mean and the band spans the minimum to the maximum.
    """
    rates = np.asarray(rates, dtype=float)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for i, (name, value) in enumerate(curves.items()):
        runs = np.asarray(value, dtype=float)
        runs = runs[None] if runs.ndim == 1 else runs
        if runs.shape[1] != len(rates):
            raise ValueError(
                f"{name}: expected {len(rates)} accuracies per run (one per rate), "
                f"got {runs.shape[1]}"
            )
        label = name if len(runs) == 1 else f"{name} (mean of {len(runs)} seeds)"
        ax.plot(rates, runs.mean(axis=0), marker="o", color=_color(i), linewidth=2, label=label)
        if len(runs) > 1:
            ax.fill_between(rates, runs.min(axis=0), runs.max(axis=0), color=_color(i), alpha=0.2)
    if chance is not None:
        ax.axhline(chance, color="gray", linestyle="--", alpha=0.6, label="chance")
    ax.set_xlabel("fraction of test samples missing the modality")
    ax.set_ylabel("test accuracy")
    ax.set_title(title or "Accuracy against the missing rate")
    ax.grid(True, alpha=0.3)
    # beside the axes, not inside: inside, it covers part of a curve or of the chance line
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- Part 2: scenes


def _scene_objects(dataset, idx: int) -> list[dict]:
    """The objects of sample ``idx`` of a ``SortOfClevr``: slot, colour, shape, x, y."""
    from .part2.scenes import COLORS, SHAPES, X_FEATURE, Y_FEATURE

    objects = []
    for slot in range(dataset.objects.shape[1]):
        if dataset.object_mask[idx, slot]:
            continue
        token = dataset.objects[idx, slot]
        objects.append({
            "slot": slot,
            "colour": COLORS[int(token[: len(COLORS)].argmax())],
            "shape": SHAPES[int(token[Y_FEATURE + 1:].argmax())],
            "x": float(token[X_FEATURE]),
            "y": float(token[Y_FEATURE]),
        })
    return objects


def _draw_scene(ax, dataset, idx: int, weights=None, size: float = 0.09):
    """Draw sample ``idx``'s objects on ``ax``: the unit canvas, ``y`` downwards as in an image.
    ``weights`` ``(num_slots,)``: each object's attention weight, written under it and drawn as
    a black ring whose width grows with the weight."""
    from matplotlib.patches import Circle, Rectangle

    ax.set_xlim(0, 1)
    ax.set_ylim(1, 0)  # the top of the canvas is y = 0
    ax.set_aspect("equal")
    ax.set_facecolor("#f4f4f4")
    ax.set_xticks([])
    ax.set_yticks([])
    for obj in _scene_objects(dataset, idx):
        x, y, colour = obj["x"], obj["y"], obj["colour"]
        if obj["shape"] == "square":
            patch = Rectangle((x - size / 2, y - size / 2), size, size, facecolor=colour,
                              edgecolor="black", linewidth=0.8)
        else:
            patch = Circle((x, y), size / 2, facecolor=colour, edgecolor="black", linewidth=0.8)
        patch.set_gid(f"object-{obj['slot']}")
        ax.add_patch(patch)
        if weights is not None:
            w = float(weights[obj["slot"]])
            ring = Circle((x, y), 0.75 * size, fill=False, edgecolor="black",
                          linewidth=0.5 + 6 * w, alpha=0.3 + 0.7 * w)
            ring.set_gid(f"weight-{obj['slot']}")
            ax.add_patch(ring)
            ax.text(x, y + 0.8 * size, f"{w:.2f}", ha="center", va="top", fontsize=9)


def plot_scene(dataset, idx: int = 0, weights=None, title: str | None = None):
    """One Sort-of-CLEVR scene drawn as coloured squares and circles, with its question and
    answer above it. ``weights`` ``(num_slots,)`` (optional): an attention weight per slot,
    shown on the objects (see ``plot_scene_attention``)."""
    from .part2.scenes import ANSWERS, decode_question

    fig, ax = plt.subplots(figsize=(4.8, 5.0))
    _draw_scene(ax, dataset, idx, weights)
    question = decode_question(dataset.question[idx])
    ax.set_title(title or f"{question}?  ({ANSWERS[int(dataset.answer[idx])]})")
    fig.tight_layout()
    return fig


def plot_scene_attention(dataset, idx: int, panels: Mapping[str, object],
                         title: str | None = None, prediction: int | None = None):
    """The scene of sample ``idx`` once per panel, each with its own attention weights over the
    objects: ``panels`` maps a panel's title (e.g. ``"hop 1"``) to weights ``(num_slots,)``,
    e.g. ``model.attention_maps[h][idx, :, word].mean(0)``: the heads' mean for one word.
    ``title`` defaults to the question and its answer; with ``prediction`` (an answer id, the
    model's), each panel's title also says what the model answered and whether that is right."""
    from .part2.scenes import ANSWERS, decode_question

    names = list(panels)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        weights = torch.as_tensor(panels[name]).detach().float().cpu()
        _draw_scene(ax, dataset, idx, weights)
        if prediction is not None:
            verdict = "right" if int(prediction) == int(dataset.answer[idx]) else "wrong"
            name = f"{name}; model answers {ANSWERS[int(prediction)]} ({verdict})"
        ax.set_title(name, fontsize=10)
    question = decode_question(dataset.question[idx])
    fig.suptitle(title or f"{question}?  (answer: {ANSWERS[int(dataset.answer[idx])]})")
    fig.tight_layout()
    return fig


def plot_accuracy_by_type(results: Mapping[str, Mapping[str, Sequence[float]]],
                          columns: Sequence[str] | None = None,
                          baselines: Mapping[str, float] | None = None, title: str = ""):
    """Grouped bars: accuracy per question type (groups), one bar per model, at the mean over
    seeds, with an error bar of one standard deviation and a dot per seed.

    ``results`` maps a model to ``{question type: [accuracy per seed]}`` (as
    ``fusionlab.part2.experiments.accuracy_per_type`` returns); ``columns`` picks and orders
    the types (default: the first model's); ``baselines`` draws a dashed line per type (e.g.
    the majority-class baseline)."""
    models = list(results)
    columns = list(columns or results[models[0]])
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(columns) + 2), 4.5),
                           layout="constrained")
    for m, model in enumerate(models):
        values = [np.asarray(results[model][c], dtype=float) for c in columns]
        positions = np.arange(len(columns)) - 0.4 + width * (m + 0.5)
        means = [v.mean() for v in values]
        spreads = [v.std(ddof=1) if len(v) > 1 else 0.0 for v in values]
        ax.bar(positions, means, width, yerr=spreads, capsize=3, color=_color(m), label=model)
        for x, v in zip(positions, values):
            ax.scatter(np.full(len(v), x), v, s=10, color="black", zorder=3)
    if baselines:
        for i, c in enumerate(columns):
            if c in baselines:
                ax.hlines(baselines[c], i - 0.45, i + 0.45, colors="gray", linestyles="--")
    ax.set_xticks(range(len(columns)), columns)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("Test accuracy")
    fig.legend(loc="outside right upper")
    if title:
        ax.set_title(title)
    return fig


def plot_accuracy_curves(curves: Mapping[str, Sequence[Sequence[float]]],
                         lines: Mapping[str, float] | None = None, title: str = ""):
    """Test accuracy after each epoch: for each model of ``curves`` (``{model: [[accuracy after
    each epoch] per seed]}``) a thin line per seed and a thick one for the mean over seeds;
    ``lines`` draws a dashed horizontal line per entry (e.g. a shortcut's accuracy)."""
    fig, ax = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
    for m, (model, runs) in enumerate(curves.items()):
        runs = np.asarray(runs, dtype=float)  # (seeds, epochs)
        epochs = np.arange(1, runs.shape[1] + 1)
        for run in runs:
            ax.plot(epochs, run, color=_color(m), alpha=0.35, linewidth=1)
        ax.plot(epochs, runs.mean(axis=0), color=_color(m), linewidth=2.5,
                label=f"{model} (mean of {len(runs)} seeds)")
    for i, (name, level) in enumerate((lines or {}).items()):
        ax.axhline(level, color="gray", linestyle=("--", ":", "-.")[i % 3], label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0.5, 1.0)
    ax.legend(loc="upper left", fontsize=9)
    if title:
        ax.set_title(title)
    return fig


def plot_heads_layers(grid: Mapping[tuple[int, int], Sequence[float]], title: str = ""):
    """Heatmap of the mean accuracy over seeds for each ``(heads, layers)`` of ``grid``, with
    the mean and the standard deviation written in each cell."""
    heads = sorted({h for h, _ in grid})
    layers = sorted({n for _, n in grid})
    means = np.full((len(layers), len(heads)), np.nan)
    fig, ax = plt.subplots(figsize=(1.6 * len(heads) + 2.5, 1.0 * len(layers) + 1.8))
    for (h, n), values in grid.items():
        v = np.asarray(values, dtype=float)
        r, c = layers.index(n), heads.index(h)
        means[r, c] = v.mean()
        spread = v.std(ddof=1) if len(v) > 1 else 0.0
        ax.text(c, r, f"{v.mean():.2f}\n± {spread:.2f}", ha="center", va="center",
                color="black" if v.mean() > 0.75 else "white")
    image = ax.imshow(means, cmap="viridis", vmin=0.5, vmax=1.0)
    fig.colorbar(image, ax=ax, label="test accuracy")
    ax.set_xticks(range(len(heads)), [str(h) for h in heads])
    ax.set_yticks(range(len(layers)), [str(n) for n in layers])
    ax.set_xlabel("heads")
    ax.set_ylabel("layers")
    ax.set_title(title or "heads x layers")
    fig.tight_layout()
    return fig
