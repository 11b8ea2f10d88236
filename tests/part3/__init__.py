"""Part 3 (fusionlab.part3): data, models, exercises, its claims and the measurements behind
them."""
