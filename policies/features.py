"""Float feature vectors from any vector-like observation space, the first layer of an MLP.

A Box (any dtype, flattened) and a MultiBinary pass through as floats. Discrete and
MultiDiscrete values are categories, not magnitudes: state 7 of FrozenLake is not "more" than
state 3, so they are one-hot encoded (one block per dimension), and above :data:`ONE_HOT_MAX`
categories in all they get a learned embedding per dimension instead.

Every space but a Box reaches the policy as the engine's flat byte rows
(``policies.flatten``); these modules unflatten them first, and accept the rows cast to float
as well (bytes survive the round trip exactly), so encoders that call ``.float()`` on their
input keep working.
"""

from __future__ import annotations

import math

import gymnasium as gym
import torch
import torch.nn as nn
import torch.nn.functional as F

from policies.flatten import travels_as_bytes, unflatten_observations

# One-hot features feed n × hidden weights of the first layer, the same parameters as an
# n-row embedding of width hidden, but the matmul reads all n columns per row: at 1024
# categories and a batch of 512 that is 0.5M floats in and 134M multiply-adds per 256-unit
# layer, still a fraction of a millisecond on a CPU core; beyond, the cost grows with n for no
# gain, so larger spaces look their values up instead.
ONE_HOT_MAX = 1024
EMBEDDING_SIZE = 16

VECTOR_SPACES = (
    gym.spaces.Box,
    gym.spaces.Discrete,
    gym.spaces.MultiDiscrete,
    gym.spaces.MultiBinary,
)


def _sizes_starts(space: gym.spaces.Discrete | gym.spaces.MultiDiscrete) -> tuple:
    if isinstance(space, gym.spaces.Discrete):
        return torch.tensor([int(space.n)]), torch.tensor([int(space.start)])
    return torch.as_tensor(space.nvec.reshape(-1)), torch.as_tensor(space.start.reshape(-1))


class CategoryIndex(nn.Module):
    """The values of a Discrete / MultiDiscrete as indices into the dimensions' categories side
    by side (``(batch, dims)``), each value first brought into its dimension's range: rows no
    env wrote (a finished agent's, or before the first reset) hold zeros, which lie outside a
    space that starts above 0."""

    def __init__(self, space: gym.spaces.Discrete | gym.spaces.MultiDiscrete) -> None:
        super().__init__()
        sizes, starts = _sizes_starts(space)
        self.register_buffer("starts", starts.long(), persistent=False)
        self.register_buffer("highest", (sizes - 1).long(), persistent=False)
        self.register_buffer("offsets", (torch.cumsum(sizes, 0) - sizes).long(), persistent=False)
        self.total, self.dims = int(sizes.sum()), len(sizes)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        index = values.long().reshape(values.shape[0], -1) - self.starts
        return torch.minimum(index.clamp_min(0), self.highest) + self.offsets


class DiscreteEncoder(nn.Module):
    """A learned ``EMBEDDING_SIZE`` vector per value of a Discrete (or of each MultiDiscrete
    dimension, concatenated); takes the values themselves."""

    def __init__(self, space: gym.spaces.Discrete | gym.spaces.MultiDiscrete) -> None:
        super().__init__()
        self.index = CategoryIndex(space)
        self.embedding = nn.Embedding(self.index.total, EMBEDDING_SIZE)
        self.output_size = EMBEDDING_SIZE * self.index.dims

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        return self.embedding(self.index(values)).flatten(1)


class OneHot(nn.Module):
    """One-hot blocks, one per dimension of a Discrete / MultiDiscrete, concatenated; takes the
    values themselves."""

    def __init__(self, space: gym.spaces.Discrete | gym.spaces.MultiDiscrete) -> None:
        super().__init__()
        self.index = CategoryIndex(space)
        self.output_size = self.index.total

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        return F.one_hot(self.index(values), self.output_size).sum(1).float()


class VectorFeatures(nn.Module):
    """Observations of ``space`` (flat byte rows unless a Box) as ``(batch, output_size)``
    floats: one-hot or embedded categories, flattened Box / MultiBinary values."""

    def __init__(self, space: gym.spaces.Space) -> None:
        super().__init__()
        if not isinstance(space, VECTOR_SPACES):
            raise ValueError(
                "needs a Box, Discrete, MultiDiscrete or MultiBinary observation space"
            )
        self.space = space
        self.bytes = travels_as_bytes(space)
        self.categories: nn.Module | None = None
        if isinstance(space, gym.spaces.Discrete | gym.spaces.MultiDiscrete):
            one_hot = OneHot(space)
            self.categories = (
                one_hot if one_hot.output_size <= ONE_HOT_MAX else DiscreteEncoder(space)
            )
            self.output_size = self.categories.output_size
        else:
            self.output_size = math.prod(_shape(space))

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        values = observations
        if self.bytes:
            values = unflatten_observations(observations.to(torch.uint8), self.space)
        if self.categories is not None:
            return self.categories(values)
        return values.reshape(values.shape[0], -1).float()


def _shape(space: gym.spaces.Box | gym.spaces.MultiBinary) -> tuple[int, ...]:
    return tuple(int(n) for n in space.shape)
