"""Speed benchmarks of the course: ``python -m benchmarks`` (what ``make bench`` runs).

Five measurements, side by side in one run, written to ``benchmarks/RESULTS.md``:

1. ``loop``: the seed notebook's training code (``benchmarks/original.py``, the baseline)
   against ``fusionlab.train.fit`` on the same three models and hyperparameters;
2. ``multiseed``: 10 seeds of each model side by side with ``fusionlab.multiseed.fit_seeds``
   against one ``fit`` per seed and against the original's single seed;
3. ``grading``: the Part 1 solution notebook in a fresh kernel, and the autograder per
   submission and per batch;
4. ``floor``: microseconds per optimiser step at batch 64 on the CPU, the framework's floor,
   against the per-step cost of each training loop;
5. ``process``: the whole process of measurement 1's job, each side in a fresh ``python`` from
   start to exit, and where its fixed costs go (imports, the first optimiser step).

Timings are medians of several runs with their min-max; tests never assert on them.
"""
