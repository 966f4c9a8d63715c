"""Names under which the library's policies are chosen with ``--policy NAME``."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from policies.cnn import CNNPolicy, EfficientCNN
from policies.mlp import BasicPolicy
from policies.recurrent import LSTMPolicy, OptimizedLSTMPolicy, RecurrentPolicy


@dataclass(frozen=True)
class PolicyEntry:
    """A policy class and the one line ``--list-policies`` shows for it."""

    cls: type[nn.Module]
    summary: str


POLICIES: dict[str, PolicyEntry] = {
    "mlp": PolicyEntry(
        BasicPolicy, "2×256 ReLU MLP (the docs' BasicPolicy) for vector observations"
    ),
    "cnn": PolicyEntry(
        CNNPolicy, "Nature CNN (3 convs, fc 512) for stacked image frames, /255 inside"
    ),
    "efficient_cnn": PolicyEntry(
        EfficientCNN, "the docs' EfficientCNN: Nature convs, fc size from a dummy forward pass"
    ),
    "lstm": PolicyEntry(
        LSTMPolicy, "Nature CNN (images) or 128-unit MLP (vectors), then a 128-unit LSTM"
    ),
    "recurrent": PolicyEntry(
        RecurrentPolicy, "the docs' RecurrentPolicy: 128-unit MLP encoder, then a 256-unit LSTM"
    ),
    "optimized_lstm": PolicyEntry(
        OptimizedLSTMPolicy,
        "the docs' OptimizedLSTMPolicy: as recurrent, with its step/sequence API",
    ),
}
