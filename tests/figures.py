"""What the figure tests share: a figure rendered headless, as a notebook on a server draws it."""

from __future__ import annotations

import io

import matplotlib


def render(fig):
    """Draw ``fig`` to a PNG with the Agg backend (it must be the one in use); returns ``fig``."""
    assert matplotlib.get_backend().lower() == "agg"
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    assert buffer.getvalue().startswith(b"\x89PNG")
    return fig
