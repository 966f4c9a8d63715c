"""Policies for Dict and Tuple observations: one encoder per leaf, chosen from its space."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import torch
import torch.nn as nn

from policies.cnn import ImageEncoder, is_image
from policies.features import DiscreteEncoder
from policies.flatten import observation_layout, travels_as_bytes, unflatten_observations
from policies.heads import EncoderHeads
from policies.init import layer_init
from policies.mlp import mlp_encoder

VECTOR_SIZE = 128


class VectorEncoder(nn.Module):
    """Flatten, then one ``VECTOR_SIZE``-unit ReLU layer (Box of any other shape, MultiBinary)."""

    def __init__(self, space: gym.spaces.Space) -> None:
        super().__init__()
        self.mlp = mlp_encoder(gym.spaces.Box(0, 1, (math.prod(space.shape),)), VECTOR_SIZE)
        self.output_size = VECTOR_SIZE

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        return self.mlp(values.reshape(values.shape[0], -1).float())


def leaf_encoder(space: gym.spaces.Space) -> nn.Module:
    """CNN for an image, embedding for Discrete / MultiDiscrete, MLP for other Box and
    MultiBinary leaves; each has an ``output_size``."""
    if is_image(space):
        return ImageEncoder(space)
    if isinstance(space, gym.spaces.Discrete | gym.spaces.MultiDiscrete):
        return DiscreteEncoder(space)
    if isinstance(space, gym.spaces.Box | gym.spaces.MultiBinary):
        return VectorEncoder(space)
    raise ValueError(f"no encoder for observation leaf {space}")


def _at(tree: Any, path: tuple[str | int, ...]) -> Any:
    """The item at ``path`` in a nested Dict/Tuple space or observation."""
    for key in path:
        tree = tree[key]
    return tree


class LeafEncoders(nn.Module):
    """Every leaf of a Dict/Tuple observation through its own encoder, features concatenated.

    Takes the engine's flat byte rows (unflattened here) or the structured observation itself.
    A bare leaf space (a Discrete, a Box) is one leaf. ``keys`` keeps only those top-level Dict
    keys.
    """

    def __init__(self, space: gym.spaces.Space, keys: Sequence[str] | None = None) -> None:
        super().__init__()
        if keys is not None and not isinstance(space, gym.spaces.Dict):
            raise ValueError(f"needs a Dict observation with the keys {', '.join(keys)}")
        self.space = space
        self.bytes = travels_as_bytes(space)
        leaves = [
            leaf for leaf in observation_layout(space)[0] if keys is None or leaf.path[0] in keys
        ]
        if keys is not None and {leaf.path[0] for leaf in leaves} != set(keys):
            raise ValueError(f"needs a Dict observation with the keys {', '.join(keys)}")
        self.paths = [leaf.path for leaf in leaves]
        self.leaf_dims = [len(leaf.shape) for leaf in leaves]
        self.encoders = nn.ModuleDict(
            {_name(path): leaf_encoder(_at(space, path)) for path in self.paths}
        )
        self.output_size = sum(encoder.output_size for encoder in self.encoders.values())

    def forward(self, observations: torch.Tensor | Mapping | tuple) -> torch.Tensor:
        if isinstance(observations, torch.Tensor) and self.bytes:
            observations = unflatten_observations(observations, self.space)
        features = [
            self.encoders[_name(path)](_at(observations, path).flatten(0, -1 - dims))
            for path, dims in zip(self.paths, self.leaf_dims, strict=True)
        ]
        return torch.cat(features, dim=-1)


def _name(path: tuple[str | int, ...]) -> str:
    return "/".join(str(key) for key in path) or "observation"


class MultiInputPolicy(EncoderHeads):
    """``--policy multi_input``: one encoder per leaf of a Dict/Tuple observation, or of a bare
    leaf space (CNN for images, embedding for Discrete, MLP for vectors), concatenated, a
    ``hidden_size`` ReLU layer, then the heads. The guide's sketch hard-codes 3 channels and
    ``64 * 9 * 9`` image features; here every size comes from the space. ``log_std_init``:
    where Box actions' log-std starts."""

    def __init__(
        self,
        observation_space: gym.spaces.Space,
        action_space: gym.spaces.Space,
        hidden_size: int = 512,
        keys: Sequence[str] | None = None,
        log_std_init: float = 0.0,
    ) -> None:
        leaves = LeafEncoders(observation_space, keys)
        combiner = nn.Sequential(
            leaves, layer_init(nn.Linear(leaves.output_size, hidden_size)), nn.ReLU()
        )
        super().__init__(combiner, hidden_size, action_space, log_std_init)
        self.observation_space = observation_space

    def encode_observations(self, observations: torch.Tensor | Mapping | tuple) -> torch.Tensor:
        return self.encoder(observations)


class PolicyWithUnflatten(MultiInputPolicy):
    """The guide's PolicyWithUnflatten: encoders for the ``image`` and ``vector`` keys of a Dict
    observation (other keys are ignored), fed from the engine's flat rows through
    ``unflatten_observations``; the guide leaves its "rest of policy" out, here it is
    :class:`MultiInputPolicy`'s."""

    def __init__(self, observation_space: gym.spaces.Dict, action_space: gym.spaces.Space) -> None:
        super().__init__(observation_space, action_space, keys=("image", "vector"))
