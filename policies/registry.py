"""Names under which the library's policies are chosen with ``--policy NAME``."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from policies.attention import AttentionPolicy
from policies.cnn import CNNPolicy, EfficientCNN
from policies.mlp import BasicPolicy, ContinuousPolicy, SeparateMLPPolicy
from policies.multi_agent import (
    IndependentMultiAgentPolicy,
    SharedLSTMPolicy,
    SharedMultiAgentPolicy,
)
from policies.multi_input import MultiInputPolicy
from policies.recurrent import LSTMPolicy, OptimizedLSTMPolicy, RecurrentPolicy
from policies.residual import ResidualPolicy


@dataclass(frozen=True)
class PolicyEntry:
    """A policy class and the one line ``--list-policies`` shows for it."""

    cls: type[nn.Module]
    summary: str


POLICIES: dict[str, PolicyEntry] = {
    "mlp": PolicyEntry(
        BasicPolicy,
        "2×256 ReLU MLP (the guide's BasicPolicy) for vectors; Gaussian head for Box actions",
    ),
    "separate_mlp": PolicyEntry(
        SeparateMLPPolicy,
        "actor and critic MLPs with nothing shared, 2×64 tanh each (SB3's and CleanRL's)",
    ),
    "continuous": PolicyEntry(
        ContinuousPolicy, "the guide's ContinuousPolicy: mlp with a Gaussian head, Box actions only"
    ),
    "cnn": PolicyEntry(
        CNNPolicy, "Nature CNN (3 convs, fc 512) for images, channels first or last, /255 inside"
    ),
    "efficient_cnn": PolicyEntry(
        EfficientCNN, "the guide's EfficientCNN: Nature convs, fc size from a dummy forward pass"
    ),
    "multi_input": PolicyEntry(
        MultiInputPolicy,
        "Dict/Tuple observations: CNN, MLP or embedding per leaf, concatenated, fc 512",
    ),
    "attention": PolicyEntry(
        AttentionPolicy, "self-attention over entity rows or up to 8 chunks of a vector"
    ),
    "residual": PolicyEntry(
        ResidualPolicy, "256-unit MLP with 4 pre-norm residual blocks (the guide's ResidualPolicy)"
    ),
    "lstm": PolicyEntry(
        LSTMPolicy,
        "Nature CNN (images), 128-unit MLP (vectors) or multi_input's encoders (Dict, Tuple), "
        "then a 128-unit LSTM",
    ),
    "recurrent": PolicyEntry(
        RecurrentPolicy, "the guide's RecurrentPolicy: 128-unit MLP encoder, then a 256-unit LSTM"
    ),
    "optimized_lstm": PolicyEntry(
        OptimizedLSTMPolicy,
        "the guide's OptimizedLSTMPolicy: as recurrent, with its step/sequence API",
    ),
    "shared": PolicyEntry(
        SharedMultiAgentPolicy,
        "multi-agent, one network for all agents (CNN or 2×256 MLP); agent_ids=true adds a "
        "one-hot agent id",
    ),
    "independent": PolicyEntry(
        IndependentMultiAgentPolicy,
        "multi-agent, one 2×256 MLP per agent, all agents run in batched matmuls",
    ),
    "shared_lstm": PolicyEntry(
        SharedLSTMPolicy, "multi-agent: shared, then a 128-unit LSTM (what lstm means there)"
    ),
}
