"""SB3's ``MlpPolicy`` network as a puffertrain policy, and two variants that each change one
thing against the library's ``mlp`` (one 2 × 256 ReLU trunk under both heads), to tell the
network's part from the hyperparameters' in a comparison with the RL Zoo
(``--policy experiments.sb3_mlp_policy:Separate``).

``Separate`` is SB3's default for Discrete actions, the library's ``separate_mlp``: an actor and a
critic with no layer in common, each 2 × 64 tanh. ``SharedTanh64`` shares one 2 × 64 tanh trunk;
``SeparateRelu256`` keeps the two networks apart at the ``mlp``'s width and activation.
"""

from __future__ import annotations

import gymnasium as gym
import torch
import torch.nn as nn

from policies.init import layer_init
from policies.mlp import SeparateMLPPolicy

Separate = SeparateMLPPolicy


class SeparateRelu256(SeparateMLPPolicy):
    """:class:`Separate` at the library ``mlp``'s width and activation (2 × 256 ReLU)."""

    def __init__(
        self, observation_space: gym.spaces.Box, action_space: gym.spaces.Discrete
    ) -> None:
        super().__init__(observation_space, action_space, hidden_size=256, activation=nn.ReLU)


class SharedTanh64(nn.Module):
    """One 2 × 64 tanh trunk under both heads, as the library's ``mlp`` shares its 2 × 256 ReLU."""

    def __init__(
        self, observation_space: gym.spaces.Box, action_space: gym.spaces.Discrete
    ) -> None:
        super().__init__()
        inputs = int(observation_space.shape[0])
        self.trunk = nn.Sequential(
            layer_init(nn.Linear(inputs, 64)),
            nn.Tanh(),
            layer_init(nn.Linear(64, 64)),
            nn.Tanh(),
        )
        self.actor = layer_init(nn.Linear(64, int(action_space.n)), std=0.01)
        self.critic = layer_init(nn.Linear(64, 1), std=1.0)

    def forward(self, observations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.trunk(observations.float())
        return self.actor(hidden), self.critic(hidden)
