"""fusionlab.plots: every figure renders headless (Agg) and draws what it says."""


import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from fusionlab import plots
from fusionlab.data import MultimodalDataset
from fusionlab.train import History
from tests.figures import render


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_data_scatter_has_one_series_per_class_and_modality():
    fig = render(plots.plot_data(MultimodalDataset(n_samples=300, seed=0)))
    assert [len(ax.collections) for ax in fig.axes] == [3, 3]


def test_training_curves_accept_single_runs_and_seed_lists():
    one = History(train_loss=[1.0, 0.5, 0.2], test_acc=[0.5, 0.8, 0.9])
    two = History(train_loss=[1.1, 0.4, 0.3], test_acc=[0.6, 0.7, 0.95])
    fig = render(plots.plot_training_curves({"single": one, "seeds": [one, two]}))
    loss_ax, acc_ax = fig.axes
    assert len(acc_ax.lines) == 2
    assert list(acc_ax.lines[1].get_ydata()) == pytest.approx([0.55, 0.75, 0.925])
    assert len(acc_ax.collections) == 1  # the min-max band of the seed list


def test_per_class_bars_highlight_one_class_with_its_own_alpha():
    """The seed notebook passed alpha=[0.5, 0.5, 1.0], which matplotlib rejects."""
    fig = render(plots.plot_per_class({"A": [0.9, 0.8, 0.5], "B": [1.0, 1.0, 0.9]},
                                      highlight=2, chance=1 / 3, errors={"A": [0.1, 0.1, 0.1]}))
    bars = fig.axes[0].patches
    assert [bar.get_alpha() for bar in bars] == [0.5, 0.5, 1.0]
    assert [bar.get_height() for bar in bars] == [0.9, 0.8, 0.5]


def test_confusion_matrix_writes_every_count():
    fig = render(plots.plot_confusion_matrix(torch.tensor([[5, 1], [2, 7]]), ["no", "yes"]))
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["5", "1", "2", "7"]


def test_attention_heatmap_has_one_panel_per_head():
    weights = torch.softmax(torch.randn(4, 3, 5), dim=-1)
    fig = render(plots.plot_attention(weights, title="heads"))
    assert len([ax for ax in fig.axes if ax.images]) == 4
    render(plots.plot_attention(weights[0]))
    with pytest.raises(ValueError, match=r"\(N_q, N_kv\) or \(heads, N_q, N_kv\)"):
        plots.plot_attention(torch.zeros(2, 2, 2, 2))


def test_data_scatter_subsample_keeps_every_class():
    fig = render(plots.plot_data(MultimodalDataset(n_samples=3000, seed=0), max_points=300))
    assert [len(c.get_offsets()) for c in fig.axes[0].collections] == [100, 100, 100]


def test_per_class_chance_level_per_panel():
    fig = render(plots.plot_per_class({"three": [0.9, 0.8, 0.7], "two": [0.6, 0.5]},
                                      chance={"three": 1 / 3, "two": 1 / 2}))
    levels = [ax.lines[-1].get_ydata()[0] for ax in fig.axes]
    assert levels == pytest.approx([1 / 3, 1 / 2])


def test_cross_modal_scatter_puts_an_image_feature_against_a_text_feature():
    """On the XOR data image[0] against text[0] shows the XOR: class 0 where the signs agree."""
    data = MultimodalDataset(n_samples=400, seed=0, interaction="xor")
    fig = render(plots.plot_cross_modal(data, max_points=400))
    (ax,) = fig.axes
    assert ax.get_xlabel() == "image[0]" and ax.get_ylabel() == "text[0]"
    for c, collection in enumerate(ax.collections):
        points = torch.as_tensor(collection.get_offsets())
        rows = data.labels == c
        expected = torch.stack([data.img_features[rows, 0], data.txt_features[rows, 0]], dim=1)
        assert torch.equal(points.float(), expected)
        same_sign = (points[:, 0] > 0) == (points[:, 1] > 0)
        assert same_sign.float().mean() > 0.9 if c == 0 else same_sign.float().mean() < 0.1


def test_training_curves_say_what_the_band_shows():
    runs = [History(train_loss=[1.0, 0.5], test_acc=[0.5, 0.8]),
            History(train_loss=[1.2, 0.4], test_acc=[0.6, 0.9])]
    fig = render(plots.plot_training_curves({"a": runs, "b": runs}))
    for ax in fig.axes:
        assert "mean of 2 seeds" in ax.get_title()
        assert "band: min to max over the seeds" in ax.get_title()
    band = fig.axes[1].collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(0.5) and band.max() == pytest.approx(0.9)
    single = render(plots.plot_training_curves({"a": runs[0]}))
    assert "band" not in single.axes[0].get_title()


# ----------------------------------------------------------------------------- layout

def overlapping_legends(fig) -> list[tuple[str, str]]:
    """(legend, value label) pairs whose drawn boxes overlap, after a full draw."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    labels = [text for ax in fig.axes for text in ax.texts]
    assert labels, "no value label drawn"
    return [
        (str(legend.get_texts()[0].get_text()), text.get_text())
        for legend in legends
        for text in labels
        if legend.get_window_extent(renderer).overlaps(text.get_window_extent(renderer))
    ]


def notebook_figure(cell_id: str, table: dict, xor_table: dict):
    """The figure that the Part 1 master's cell ``cell_id`` draws from these results."""
    from types import SimpleNamespace

    from autograder.authoring.examples import master_namespace

    cells = master_namespace("part1_fusion_strategies", [])  # the setup cell's imports
    source = {c["id"]: c["source"] for c in _master_cells()}[cell_id]
    namespace = {**cells, "plots": plots, "plt": SimpleNamespace(show=lambda: None),
                 "table": table, "xor_table": xor_table, "fusion_names": FUSION_NAMES,
                 "FACTORIES": dict.fromkeys(FUSION_NAMES + ["image only", "text only"])}
    exec(compile(source, cell_id, "exec"), namespace)
    return namespace["fig"]


def _master_cells():
    import nbformat

    from autograder.masters import find_masters

    master = next(m for m in find_masters() if m.stem == "part1_fusion_strategies")
    return nbformat.read(str(master), as_version=4).cells


FUSION_NAMES = ["early", "late", "cross-attention", "bidirectional", "gated", "committee"]


def seed_results(accuracy: float, spread: float, classes: int):
    from fusionlab.results import SeedResults

    per_seed = torch.tensor([accuracy - spread, accuracy, min(accuracy + spread, 1.0)])
    return SeedResults(per_seed, per_seed[:, None].repeat(1, classes))


@pytest.mark.parametrize("accuracy,spread", [(1.0, 0.0), (0.99, 0.01), (0.9, 0.05), (0.5, 0.02),
                                              (1 / 3, 0.02), (0.0, 0.0)])
@pytest.mark.parametrize("cell_id", ["final-per-class", "final-comparison"])
def test_no_legend_covers_a_value_label_in_the_notebooks_final_figures(cell_id, accuracy, spread):
    """The seed notebook's and an earlier version's legends sat on the value labels of classes
    1 and 2. Here the notebook's own figure cells run on results from perfect to chance."""
    names = FUSION_NAMES + ["image only", "text only"]
    table = {name: seed_results(accuracy, spread, 3) for name in names}
    xor_table = {name: seed_results(accuracy, spread, 2) for name in names}
    fig = notebook_figure(cell_id, table, xor_table)
    assert fig.legends or any(ax.get_legend() for ax in fig.axes), "the chance line is explained"
    assert overlapping_legends(fig) == []


def test_the_overlap_check_sees_a_legend_on_a_value_label():
    fig = plots.plot_per_class({"A": [0.5, 0.5, 0.5]})
    fig.axes[0].legend(["a legend"], loc="center")  # the value labels sit at 0.52 of 1.15
    assert overlapping_legends(fig) == [("a legend", "0.50")]


# ----------------------------------------------------------------------------- Part 3

def test_gate_against_switch_has_one_histogram_per_value_and_the_correlation():
    switch = torch.tensor([1, 0] * 50)
    gate = torch.stack([switch.float() * 0.8 + 0.1] * 3, dim=1)  # (n, 3), perfectly aligned
    fig = render(plots.plot_gate_vs_switch(gate, switch))
    (ax,) = fig.axes
    assert "corr(z, M) = 1.00" in ax.get_title()
    heights = [sum(p.get_height() for p in container) for container in ax.containers]
    assert heights == [50, 50]


def test_missing_curves_draw_the_mean_over_seeds():
    rates = [0.0, 0.5, 1.0]
    fig = render(plots.plot_missing_curves(
        rates, {"one": [0.9, 0.8, 0.7], "seeds": [[1.0, 0.8, 0.6], [0.8, 0.6, 0.4]]}, chance=1 / 3))
    (ax,) = fig.axes
    assert np.allclose(ax.lines[1].get_ydata(), [0.9, 0.7, 0.5])
    assert len(ax.collections) == 1  # one band, for the seed list
    with pytest.raises(ValueError, match="one per rate"):
        plots.plot_missing_curves(rates, {"bad": [0.5, 0.5]})


def test_the_missing_curves_legend_covers_no_line_and_not_the_chance_line():
    """Part 3's figure: the legend sits beside the axes, so no curve and no part of the chance
    line is hidden under it, whatever the curves."""
    rates = [i / 10 for i in range(11)]
    curves = {name: [[0.25 + 0.07 * k * r for r in rates] for k in (1, 2)]
              for name in ("late fusion", "late fusion + modality dropout", "image only",
                           "text only")}
    fig = render(plots.plot_missing_curves(rates, curves, chance=0.25))
    (ax,) = fig.axes
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend = ax.get_legend().get_window_extent(renderer)
    assert not legend.overlaps(ax.get_window_extent(renderer))
    chance = next(line for line in ax.lines if line.get_label() == "chance")
    assert not legend.overlaps(chance.get_window_extent(renderer))
    assert [t.get_text() for t in ax.get_legend().get_texts()][-1] == "chance"


def test_training_curves_start_at_epoch_0_with_the_initial_accuracy():
    """Part 3's insertion figure: with ``initial_acc`` the accuracy curve starts at epoch 0 (the
    initialisation, one value per seed), the loss curve at epoch 1."""
    runs = [History(train_loss=[1.0, 0.5], test_acc=[0.8, 0.9]),
            History(train_loss=[1.2, 0.4], test_acc=[0.6, 0.9])]
    fig = render(plots.plot_training_curves({"a": runs, "b": runs},
                                            initial_acc={"a": [0.7, 0.5]}))
    loss_ax, acc_ax = fig.axes
    a, b = acc_ax.lines
    assert list(a.get_xdata()) == [0, 1, 2] and np.allclose(a.get_ydata(), [0.6, 0.7, 0.9])
    assert list(b.get_xdata()) == [1, 2]  # no initial accuracy given: no epoch 0
    assert list(loss_ax.lines[0].get_xdata()) == [1, 2]
    band = acc_ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(0.5) and band.max() == pytest.approx(0.9)
    with pytest.raises(ValueError, match="one per seed"):
        plots.plot_training_curves({"a": runs}, initial_acc={"a": [0.1, 0.2, 0.3]})
