"""The guide's residual MLP policy, made stable at depth with pre-norm blocks."""

from __future__ import annotations

import gymnasium as gym
import torch
import torch.nn as nn

from policies.heads import EncoderHeads
from policies.init import layer_init
from policies.mlp import mlp_encoder


class ResidualBlock(nn.Module):
    """``x + Linear(ReLU(Linear(LayerNorm(x))))``.

    The guide's block has no normalisation, so the residual stream's scale grows with every
    block; normalising each block's input (pre-norm) keeps deep stacks trainable.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.LayerNorm(dim),
            layer_init(nn.Linear(dim, dim)),
            nn.ReLU(),
            layer_init(nn.Linear(dim, dim)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class ResidualPolicy(EncoderHeads):
    """The guide's ResidualPolicy: a ``dim``-unit ReLU layer, ``num_blocks`` residual blocks, a
    final LayerNorm and ReLU, then the actor and critic heads. Takes any Box observation."""

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        action_space: gym.spaces.Space,
        num_blocks: int = 4,
        dim: int = 256,
    ) -> None:
        encoder = nn.Sequential(
            mlp_encoder(observation_space, dim),
            *[ResidualBlock(dim) for _ in range(num_blocks)],
            nn.LayerNorm(dim),
            nn.ReLU(),
        )
        super().__init__(encoder, dim, action_space)
        self.observation_space = observation_space
