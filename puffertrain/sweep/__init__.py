"""Hyperparameter sweeps on Optuna (the `sweep` extra): ``puffertrain sweep``."""
