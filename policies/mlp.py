"""The docs' BasicPolicy: a two-layer MLP with separate actor and critic heads."""

from __future__ import annotations

import math

import gymnasium as gym
import torch
import torch.nn as nn

from policies.init import layer_init
from policies.spaces import action_head_size


class BasicPolicy(nn.Module):
    """MLP encoder (2 × ``hidden_size`` ReLU), actor head (std 0.01), critic head (std 1.0).

    Takes any Box observation (flattened) and Discrete or MultiDiscrete actions.
    ``forward(obs) -> (logits, value)`` with ``value`` of shape ``(batch, 1)``.
    The split ``encode_observations`` / ``decode_actions`` lets a recurrent wrapper sit between.
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        action_space: gym.spaces.Space,
        hidden_size: int = 256,
    ) -> None:
        super().__init__()
        if not isinstance(observation_space, gym.spaces.Box):
            raise ValueError("needs a Box observation space")
        self.observation_space = observation_space
        self.action_space = action_space
        obs_size = math.prod(observation_space.shape)
        self.encoder = nn.Sequential(
            nn.Flatten(),
            layer_init(nn.Linear(obs_size, hidden_size)),
            nn.ReLU(),
            layer_init(nn.Linear(hidden_size, hidden_size)),
            nn.ReLU(),
        )
        self.actor = layer_init(nn.Linear(hidden_size, action_head_size(action_space)), std=0.01)
        self.critic = layer_init(nn.Linear(hidden_size, 1), std=1.0)

    def encode_observations(self, observations: torch.Tensor) -> torch.Tensor:
        return self.encoder(observations.float())

    def decode_actions(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.actor(hidden), self.critic(hidden)

    def forward(self, observations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decode_actions(self.encode_observations(observations))
