"""Part 1 (fusionlab.part1; its models are the shared core's): its exercises, its claims and the
measurements behind them, its notebook's text."""
