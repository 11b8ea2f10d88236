"""The shared core: fusionlab.data, models, train, multiseed, results, plots; the install, the
code's shape and the torch kernel path."""
