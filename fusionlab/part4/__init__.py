"""Part 4, "Align before you fuse": contrastive alignment of an image and a text encoder
(CLIP, ALIGN, SigLIP), retrieval, zero-shot classification, and fusion on top (ALBEF).

- ``fusionlab.part4.data``: scikit-learn's bundled handwritten digits (real 8x8 images) and
  captions written for them by templates (synthetic text), word tokens, the splits;
- ``fusionlab.part4.models``: the image and text encoders, the dual encoder with its learnable
  temperature, the cross-attention matching model;
- ``fusionlab.part4.train``: the contrastive training loop (any loss function) and embedding;
- ``fusionlab.part4.experiments``: the notebook's measurements (batch size, temperature, the
  modality gap, align before fuse, the linear probe);
- ``fusionlab.part4.plots``: its figures;
- ``fusionlab.part4.exercises``: the graded TODOs, declared on the exercise registry.

The losses, recall@K and the zero-shot classifier are the student's TODOs: every function
here that needs one takes it as an argument, and none of them is defined in this package.
"""
