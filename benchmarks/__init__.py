"""Speed benchmarks of the course: ``python -m benchmarks`` (what ``make bench`` runs).

Four measurements, side by side in one run, written to ``benchmarks/RESULTS.md``:

1. ``loop``: the seed notebook's training code (``benchmarks/original.py``, the baseline)
   against ``fusionlab.train.fit`` on the same three models and hyperparameters;
2. ``multiseed``: 10 seeds of each model with ``fusionlab.multiseed.fit_seeds_vectorized``
   against sequential ``fit_seeds`` and against the original's single seed;
3. ``grading``: the Part 1 solution notebook in a fresh kernel, and the autograder per
   submission and per batch;
4. ``floor``: microseconds per optimiser step at batch 64 on the CPU, the framework's floor,
   against the per-step cost of each training loop.

Timings are medians of several runs with their min-max; tests never assert on them.
"""
