"""fusionlab: the helper package of the course *Multimodal Fusion from First Principles*.

The shared core (Part 1's topic, and what every part uses):

- ``fusionlab.data``: synthetic two-modality datasets and a fast batch iterator;
- ``fusionlab.models``: early, late, committee and cross-attention fusion over ``(B, N, D)``;
- ``fusionlab.train``: a device-agnostic training loop and evaluation;
- ``fusionlab.multiseed``: ``fit_seeds``, several seeds of one model trained side by side;
- ``fusionlab.results``, ``fusionlab.plots``, ``fusionlab.utils``: tables, figures, seeding.

The grading machinery and the self-checks:

- ``fusionlab.check``: the self-check that follows each TODO (``check.gmu(GatedMultimodalUnit)``);
- ``fusionlab.grading``: the exercise registry, the checks' toolkit and the clean-room driver.

One package per part, with its topic code, its experiments and its graded exercises:

- ``fusionlab.part1``: the exercises of Part 1 (its models and data are the shared core);
- ``fusionlab.part2``: Sort-of-CLEVR scenes, models over objects and words, the experiments;
- ``fusionlab.part3``: the switch and absence tasks, fusion units and gates;
- ``fusionlab.part4``: digits with captions, dual encoders, contrastive training.

``fusionlab.earlier`` keeps the import paths of the earlier release working for one release.
"""

from . import earlier
from .utils import count_parameters, get_device, seed_everything, show_source

earlier.install()

__version__ = "0.1.0"

__all__ = ["count_parameters", "get_device", "seed_everything", "show_source", "__version__"]
