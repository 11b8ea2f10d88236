"""Seeding, device and thread helpers shared by every part of the course."""

from __future__ import annotations

import contextlib
import inspect
import os
import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU) so that a run can be repeated."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def get_device(prefer: str | torch.device | None = None) -> torch.device:
    """Return the device to train on: ``prefer`` when given, else cuda, then mps, then cpu.

    Asking for a device that this machine lacks raises a ``ValueError`` instead of failing
    later inside a kernel.
    """
    if prefer is not None:
        device = torch.device(prefer)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' was requested but no CUDA GPU is available")
        if device.type == "mps" and not _mps_available():
            raise ValueError("device 'mps' was requested but MPS is not available")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def default_cpu_threads() -> int:
    """Threads for the course's tiny models on the CPU.

    Their matrices are at most a few thousand numbers, so splitting one across threads costs
    more in synchronisation than it saves (measurement 4 of ``benchmarks/RESULTS.md`` times a
    step on one thread and on torch's default count).
    ``FUSIONLAB_NUM_THREADS`` overrides the choice.
    """
    return int(os.environ.get("FUSIONLAB_NUM_THREADS", "1"))


def training_threads(device: torch.device, requested: int | None = None) -> int | None:
    """The thread count to train on ``device`` with: ``requested``, else
    ``default_cpu_threads()``, on the CPU; ``None`` (leave torch's count alone) elsewhere."""
    if device.type != "cpu":
        return None
    return requested or default_cpu_threads()


@contextlib.contextmanager
def cpu_threads(num_threads: int | None):
    """Run a block with ``torch.set_num_threads(num_threads)``, restoring the old count after."""
    if num_threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def count_parameters(model: torch.nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def show_source(obj) -> None:
    """Show the source of a ``fusionlab`` class or function, highlighted in Jupyter.

    The notebooks show the package's models this way, so that the code a student reads is the
    code that runs: there is no second copy to drift. The source is displayed as a Markdown code
    block, which Jupyter, Colab, VS Code and GitHub all render with highlighting. Only public
    code is shown: a private name (``_helper``) may change at any time, so it raises ValueError.
    """
    name = getattr(obj, "__qualname__", getattr(obj, "__name__", ""))
    if any(part.startswith("_") and not part.startswith("__") for part in name.split(".")):
        raise ValueError(f"{name} is private: show a public class or function instead")
    source = inspect.getsource(obj)
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:  # plain Python: print it
        print(source)
        return
    if get_ipython() is None:
        print(source)
    else:
        display(Markdown(f"```python\n{source.rstrip()}\n```"))


@contextlib.contextmanager
def epoch_bar(epochs: int, desc: str, enabled: bool = True):
    """A tqdm progress bar over ``epochs`` (a widget in a notebook), for the training loops.

    A model whose TODO is not implemented yet raises ``NotImplementedError`` at its first batch;
    its bar is then taken out of view instead of being left red as a failure, since nothing
    failed: the caller says that it skipped the model."""
    from tqdm.auto import tqdm

    bar = tqdm(range(epochs), desc=desc, disable=not enabled)
    try:
        yield bar
    except NotImplementedError:
        container = getattr(bar, "container", None)  # tqdm.notebook's widget
        if container is not None:
            container.layout.display = "none"
        raise

