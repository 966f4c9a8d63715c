"""SB3's ``MlpPolicy`` network as a puffertrain policy, to tell the network's part from the
hyperparameters' in a comparison with the RL Zoo (``--policy experiments.sb3_mlp_policy:Separate``).

``Separate`` is SB3's default for Discrete actions: an actor and a critic with no layer in
common, each 2 × 64 tanh (orthogonal init, actor head std 0.01, critic head std 1). The other two
change one thing each against the library's ``mlp`` (one 2 × 256 ReLU trunk under both heads):
``SharedTanh64`` shares one 2 × 64 tanh trunk; ``SeparateRelu256`` keeps the two networks apart
at the ``mlp``'s width and activation.
"""

from __future__ import annotations

import gymnasium as gym
import torch
import torch.nn as nn

from policies.init import layer_init


def _trunk(inputs: int, hidden: int, activation: type[nn.Module]) -> nn.Sequential:
    return nn.Sequential(
        layer_init(nn.Linear(inputs, hidden)),
        activation(),
        layer_init(nn.Linear(hidden, hidden)),
        activation(),
    )


class Separate(nn.Module):
    """Actor and critic networks with nothing in common; ``forward(obs) -> (logits, value)``."""

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        action_space: gym.spaces.Discrete,
        hidden: int = 64,
        activation: type[nn.Module] = nn.Tanh,
    ) -> None:
        super().__init__()
        inputs = int(observation_space.shape[0])
        # made in this order (both trunks, then both heads): the seeded draws of the runs in
        # experiments/RESULTS.md
        self.actor_trunk = _trunk(inputs, hidden, activation)
        self.critic_trunk = _trunk(inputs, hidden, activation)
        self.actor = layer_init(nn.Linear(hidden, int(action_space.n)), std=0.01)
        self.critic = layer_init(nn.Linear(hidden, 1), std=1.0)

    def forward(self, observations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        observations = observations.float()
        return self.actor(self.actor_trunk(observations)), self.critic(
            self.critic_trunk(observations)
        )


class SeparateRelu256(Separate):
    """:class:`Separate` at the library ``mlp``'s width and activation (2 × 256 ReLU)."""

    def __init__(
        self, observation_space: gym.spaces.Box, action_space: gym.spaces.Discrete
    ) -> None:
        super().__init__(observation_space, action_space, hidden=256, activation=nn.ReLU)


class SharedTanh64(nn.Module):
    """One 2 × 64 tanh trunk under both heads, as the library's ``mlp`` shares its 2 × 256 ReLU."""

    def __init__(
        self, observation_space: gym.spaces.Box, action_space: gym.spaces.Discrete
    ) -> None:
        super().__init__()
        self.trunk = _trunk(int(observation_space.shape[0]), 64, nn.Tanh)
        self.actor = layer_init(nn.Linear(64, int(action_space.n)), std=0.01)
        self.critic = layer_init(nn.Linear(64, 1), std=1.0)

    def forward(self, observations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.trunk(observations.float())
        return self.actor(hidden), self.critic(hidden)
