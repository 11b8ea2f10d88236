"""Shared fixtures: a headless matplotlib and small, seeded datasets."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from fusionlab.data import make_splits  # noqa: E402

torch.set_num_threads(1)  # tiny models: one thread is fastest and keeps runs deterministic


@pytest.fixture(scope="session")
def original_splits():
    """The seed notebook's data: 3000 training and 600 test samples."""
    return make_splits(seed=0)


@pytest.fixture(scope="session")
def xor_splits():
    return make_splits(seed=0, interaction="xor")
