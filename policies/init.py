"""Weight initialisation shared by every policy in the library."""

from __future__ import annotations

import math

import torch.nn as nn


def layer_init(layer: nn.Module, std: float = math.sqrt(2), bias_const: float = 0.0) -> nn.Module:
    """Orthogonal weights scaled by ``std`` and a constant bias; returns the same layer.

    Works on any layer with a ``weight`` of two or more dims (Linear, Conv1d/2d/3d).
    Use ``std=0.01`` for an actor head and ``std=1.0`` for a critic head.
    """
    nn.init.orthogonal_(layer.weight, std)
    if getattr(layer, "bias", None) is not None:
        nn.init.constant_(layer.bias, bias_const)
    return layer
