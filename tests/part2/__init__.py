"""Part 2 (fusionlab.part2): scenes, models, experiments, exercises, figures, its claims and the
measurements behind them, its notebook."""
