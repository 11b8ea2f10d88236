"""Part 4 (fusionlab.part4): the package, its claims and the measurements behind them, its
notebook."""
