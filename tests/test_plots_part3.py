"""Part 3's figures (fusionlab.plots): they render headless and draw what they say."""

import io

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from fusionlab import plots


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
