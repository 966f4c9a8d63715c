"""Convolutional policies for stacked-frame image observations (Atari)."""

from __future__ import annotations

import gymnasium as gym
import torch
import torch.nn as nn

from policies.init import layer_init
from policies.spaces import action_head_size


def nature_convs(observation_space: gym.spaces.Space) -> tuple[nn.Sequential, int]:
    """The Nature-DQN conv stack (32×8 s4, 64×4 s2, 64×3 s1, flatten) and its output size.

    Input channels come from the (channels, height, width) observation space; the output size
    from a dummy forward pass, so any image size works.
    """
    if not (isinstance(observation_space, gym.spaces.Box) and len(observation_space.shape) == 3):
        raise ValueError("needs a (channels, height, width) Box observation")
    convs = nn.Sequential(
        layer_init(nn.Conv2d(observation_space.shape[0], 32, kernel_size=8, stride=4)),
        nn.ReLU(),
        layer_init(nn.Conv2d(32, 64, kernel_size=4, stride=2)),
        nn.ReLU(),
        layer_init(nn.Conv2d(64, 64, kernel_size=3, stride=1)),
        nn.ReLU(),
        nn.Flatten(),
    )
    with torch.no_grad():
        size = convs(torch.zeros(1, *observation_space.shape)).shape[1]
    return convs, size


class CNNPolicy(nn.Module):
    """The Nature CNN (conv 32×8 s4, 64×4 s2, 64×3 s1, fc 512) with actor and critic heads.

    Pixels are divided by 255 inside the network, so observations stay uint8 everywhere else.
    The docs' sketch hard-codes 3 input channels and a 7×7 feature map; both come from the
    observation space here (4 channels for a 4-frame stack).
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        action_space: gym.spaces.Space,
        hidden_size: int = 512,
    ) -> None:
        super().__init__()
        self.observation_space = observation_space
        self.action_space = action_space
        convs, features = nature_convs(observation_space)
        self.encoder = nn.Sequential(
            *convs, layer_init(nn.Linear(features, hidden_size)), nn.ReLU()
        )
        self.actor = layer_init(nn.Linear(hidden_size, action_head_size(action_space)), std=0.01)
        self.critic = layer_init(nn.Linear(hidden_size, 1), std=1.0)

    def encode_observations(self, observations: torch.Tensor) -> torch.Tensor:
        return self.encoder(observations.float() / 255.0)

    def decode_actions(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.actor(hidden), self.critic(hidden)

    def forward(self, observations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decode_actions(self.encode_observations(observations))


class EfficientCNN(nn.Module):
    """The docs' EfficientCNN: Nature convs, then an fc layer sized by a dummy forward pass.

    Same function as :class:`CNNPolicy` (which sizes its fc layer the same way), kept under the
    docs' attribute names ``network`` and ``fc``.
    """

    def __init__(self, observation_space: gym.spaces.Box, action_space: gym.spaces.Space) -> None:
        super().__init__()
        self.network, n_features = nature_convs(observation_space)
        self.fc = layer_init(nn.Linear(n_features, 512))
        self.actor = layer_init(nn.Linear(512, action_head_size(action_space)), std=0.01)
        self.critic = layer_init(nn.Linear(512, 1), std=1.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.relu(self.fc(self.network(x.float() / 255.0)))
        return self.actor(x), self.critic(x)
