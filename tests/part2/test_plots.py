"""fusionlab.plots, Part 2's figures: each renders headless (Agg) and draws what it says."""


import matplotlib
import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.patches import Circle, Rectangle

from fusionlab import plots
from fusionlab.part2.scenes import ANSWERS, COLORS, SortOfClevr
from tests.figures import render


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def scenes():
    return SortOfClevr(n_samples=12, seed=3)


def objects_drawn(ax):
    """{slot: patch} of the objects on ``ax`` (the rings of the weights are left out)."""
    return {int(p.get_gid().split("-")[1]): p for p in ax.patches
            if (p.get_gid() or "").startswith("object-")}


def test_scene_draws_each_object_in_its_colour_shape_and_place(scenes):
    idx = 0
    fig = render(plots.plot_scene(scenes, idx))
    ax = fig.axes[0]
    drawn = objects_drawn(ax)
    valid = (~scenes.object_mask[idx]).nonzero().flatten().tolist()
    assert sorted(drawn) == valid
    for slot, patch in drawn.items():
        token = scenes.objects[idx, slot]
        colour = COLORS[int(token[: len(COLORS)].argmax())]
        assert patch.get_facecolor() == pytest.approx(matplotlib.colors.to_rgba(colour))
        square = bool(token[-2] == 1)
        assert isinstance(patch, Rectangle if square else Circle)
        centre = (patch.get_x() + patch.get_width() / 2, patch.get_y() + patch.get_height() / 2) \
            if square else patch.center
        assert centre == pytest.approx((token[8].item(), token[9].item()))
    # the question and its answer are the title; y grows downwards, as in an image
    assert ax.get_title().startswith(scenes.describe(idx).split("\nQ: ")[1].split("?")[0])
    assert ax.get_ylim()[0] > ax.get_ylim()[1]


def test_scene_attention_writes_each_objects_weight_per_panel(scenes):
    idx = 1
    slots = scenes.object_mask.shape[1]
    first = torch.zeros(slots)
    valid = (~scenes.object_mask[idx]).nonzero().flatten()
    first[valid[0]] = 1.0
    second = torch.zeros(slots)
    second[valid] = 1.0 / len(valid)
    fig = render(plots.plot_scene_attention(scenes, idx, {"hop 1": first, "hop 2": second}))
    axes = [ax for ax in fig.axes]
    assert [ax.get_title() for ax in axes] == ["hop 1", "hop 2"]
    labels = [sorted(t.get_text() for t in ax.texts) for ax in axes]
    assert labels[0] == sorted(["1.00"] + ["0.00"] * (len(valid) - 1))
    assert labels[1] == [f"{1 / len(valid):.2f}"] * len(valid)
    rings = {p.get_gid(): p.get_linewidth() for p in axes[0].patches
             if (p.get_gid() or "").startswith("weight-")}
    assert rings[f"weight-{int(valid[0])}"] > rings[f"weight-{int(valid[1])}"]


def test_accuracy_by_type_has_a_bar_per_model_and_type_with_seed_spread():
    results = {"a": {"shape": [0.9, 1.0, 0.95], "count": [0.4, 0.5, 0.45]},
               "b": {"shape": [0.6, 0.7, 0.65], "count": [0.3, 0.3, 0.3]}}
    fig = render(plots.plot_accuracy_by_type(results, baselines={"shape": 0.5, "count": 0.34}))
    ax = fig.axes[0]
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(bars) == 4
    heights = sorted(round(b.get_height(), 3) for b in bars)
    assert heights == [0.3, 0.45, 0.65, 0.95]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["shape", "count"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["a", "b"]
    dots = [c for c in ax.collections if c.get_offsets().shape[0] == 3]
    assert len(dots) == 4  # one dot per seed for each bar
    baselines = [c for c in ax.collections if c not in dots and len(c.get_segments()) == 1]
    assert sorted(c.get_segments()[0][0][1] for c in baselines) == [0.34, 0.5]


def test_heads_layers_heatmap_holds_the_mean_of_each_cell():
    grid = {(h, n): [0.5 + 0.1 * n + 0.01 * h, 0.6 + 0.1 * n + 0.01 * h]
            for h in (1, 2, 4) for n in (1, 2, 3)}
    fig = render(plots.plot_heads_layers(grid))
    ax = fig.axes[0]
    image = ax.get_images()[0].get_array()
    assert image.shape == (3, 3)  # rows: layers, columns: heads
    assert image[2, 1] == pytest.approx(0.55 + 0.3 + 0.02)
    assert "0.87" in [t.get_text().split("\n")[0] for t in ax.texts]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "4"]


def test_scene_attention_with_a_prediction_says_it_in_each_panel(scenes):
    idx = 1
    answer = int(scenes.answer[idx])
    wrong = 1 - answer if answer < 2 else 0  # another shape (or "square" for a yes/no/count)
    weights = torch.full((scenes.object_mask.shape[1],), 0.25)
    for prediction, verdict in ((answer, "right"), (wrong, "wrong")):
        fig = render(plots.plot_scene_attention(scenes, idx, {"hop 1": weights, "hop 2": weights},
                                                prediction=prediction))
        for ax, hop in zip(fig.axes, ("hop 1", "hop 2")):
            assert ax.get_title() == f"{hop}; model answers {ANSWERS[prediction]} ({verdict})"
        plt.close(fig)


def test_one_attention_map_has_its_title_and_no_second_one():
    """A single map's title sits on its panel: no panel title under a figure title."""
    weights = torch.softmax(torch.randn(3, 5), dim=-1)
    fig = render(plots.plot_attention(weights, title="cross-attn: what shape is red"))
    titled = [ax.get_title() for ax in fig.axes if ax.images]
    assert titled == ["cross-attn: what shape is red"]
    assert fig._suptitle is None


def test_accuracy_curves_draw_every_seed_the_mean_and_the_shortcut():
    curves = {"rn": [[0.7, 0.8, 0.9], [0.6, 0.7, 0.95]], "cross": [[0.7, 0.72, 0.73]] * 2}
    fig = render(plots.plot_accuracy_curves(curves, lines={"shortcut": 0.72}))
    ax = fig.axes[0]
    assert len(ax.lines) == 2 + 1 + 2 + 1 + 1  # per model: seeds + mean; then the shortcut
    mean_rn = next(line for line in ax.lines if line.get_label().startswith("rn (mean"))
    assert list(mean_rn.get_xdata()) == [1, 2, 3]
    assert list(mean_rn.get_ydata()) == pytest.approx([0.65, 0.75, 0.925])
    shortcut = next(line for line in ax.lines if line.get_label() == "shortcut")
    assert list(shortcut.get_ydata()) == [0.72, 0.72]
    assert "shortcut" in [t.get_text() for t in ax.get_legend().get_texts()]
