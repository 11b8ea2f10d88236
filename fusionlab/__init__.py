"""fusionlab: the helper package of the course *Multimodal Fusion from First Principles*.

- ``fusionlab.data``: synthetic two-modality datasets and a fast batch iterator;
- ``fusionlab.models``: early, late, committee and cross-attention fusion over ``(B, N, D)``;
- ``fusionlab.gating_data``: Part 3's switch and absence tasks, and missing modalities;
- ``fusionlab.gating``: Part 3's fusion units (concatenation, sum, scalar gate, FiLM);
- ``fusionlab.train``: a device-agnostic training loop and evaluation;
- ``fusionlab.multiseed``: ``fit_seeds``, several seeds of one model trained side by side;
- ``fusionlab.plots``: the course's figures;
- ``fusionlab.check``: the self-checks that follow each TODO in the notebooks.
"""

from .utils import count_parameters, get_device, seed_everything, show_source

__version__ = "0.1.0"

__all__ = ["count_parameters", "get_device", "seed_everything", "show_source", "__version__"]
