"""Training: data sets, models, fitting and evaluation (PyTorch)."""
