"""fusionlab.plots: every figure renders headless (Agg) and draws what it says."""

import io

import matplotlib
import matplotlib.pyplot as plt
import pytest
import torch

from fusionlab import plots
from fusionlab.data import MultimodalDataset
from fusionlab.train import History


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def render(fig):
    assert matplotlib.get_backend().lower() == "agg"
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    assert buffer.getvalue().startswith(b"\x89PNG")
    return fig


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
