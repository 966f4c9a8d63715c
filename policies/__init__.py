"""The puffertrain policy library: plain ``nn.Module`` policies and their building blocks,
implementing the policies guide (PufferLib's user guide to writing policies; "the guide" in
these modules' docstrings).

Every policy is built as ``Policy(observation_space, action_space, **kwargs)`` and returns
``(logits, value)`` for discrete actions or ``(mean, std, value)`` for Box actions; recurrent
ones add ``initial_state``, ``forward_step`` and ``forward_sequence`` (see
``policies.recurrent``); multi-agent ones may take ``forward(obs, agent_ids)`` (see
``policies.multi_agent``). ``policies.contract`` states the contract the trainer relies on.
This package never imports ``puffertrain``.
"""

from policies.attention import AttentionPolicy, TokenAttention
from policies.cnn import CNNPolicy, EfficientCNN, ImageEncoder
from policies.contract import State, is_recurrent, takes_agent_ids
from policies.flatten import unflatten_observations
from policies.heads import EncoderHeads, GaussianHead, actor_head
from policies.init import layer_init
from policies.mlp import BasicPolicy, ContinuousPolicy, SeparateMLPPolicy
from policies.multi_agent import (
    IndependentMultiAgentPolicy,
    SharedLSTMPolicy,
    SharedMultiAgentPolicy,
)
from policies.multi_input import MultiInputPolicy, PolicyWithUnflatten
from policies.normalize import NormalizedPolicy, RunningMeanStd, normalize_observations
from policies.recurrent import (
    LSTMPolicy,
    LSTMWrapper,
    OptimizedLSTMPolicy,
    RecurrentPolicy,
)
from policies.registry import POLICIES, PolicyEntry
from policies.residual import ResidualBlock, ResidualPolicy

__all__ = [
    "POLICIES",
    "AttentionPolicy",
    "BasicPolicy",
    "CNNPolicy",
    "ContinuousPolicy",
    "EfficientCNN",
    "EncoderHeads",
    "GaussianHead",
    "ImageEncoder",
    "IndependentMultiAgentPolicy",
    "LSTMPolicy",
    "LSTMWrapper",
    "MultiInputPolicy",
    "NormalizedPolicy",
    "OptimizedLSTMPolicy",
    "PolicyEntry",
    "PolicyWithUnflatten",
    "RecurrentPolicy",
    "ResidualBlock",
    "ResidualPolicy",
    "RunningMeanStd",
    "SeparateMLPPolicy",
    "SharedLSTMPolicy",
    "SharedMultiAgentPolicy",
    "State",
    "TokenAttention",
    "actor_head",
    "is_recurrent",
    "layer_init",
    "normalize_observations",
    "takes_agent_ids",
    "unflatten_observations",
]
