"""The puffertrain policy library: plain ``nn.Module`` policies and their building blocks.

Every policy is built as ``Policy(observation_space, action_space, **kwargs)`` and returns
``(logits, value)`` for discrete actions; recurrent ones add ``initial_state``, ``forward_step``
and ``forward_sequence`` (see ``policies.recurrent``). This package never imports ``puffertrain``.
"""

from policies.cnn import CNNPolicy, EfficientCNN
from policies.init import layer_init
from policies.mlp import BasicPolicy
from policies.recurrent import (
    EncoderHeads,
    LSTMPolicy,
    LSTMWrapper,
    OptimizedLSTMPolicy,
    RecurrentPolicy,
    is_recurrent,
)
from policies.registry import POLICIES, PolicyEntry

__all__ = [
    "POLICIES",
    "BasicPolicy",
    "CNNPolicy",
    "EfficientCNN",
    "EncoderHeads",
    "LSTMPolicy",
    "LSTMWrapper",
    "OptimizedLSTMPolicy",
    "PolicyEntry",
    "RecurrentPolicy",
    "is_recurrent",
    "layer_init",
]
