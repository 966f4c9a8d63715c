"""One flat byte row per observation for Dict and Tuple spaces, and the way back.

The rollout engine stores a structured observation as one row of uint8 bytes: each leaf's
values in turn (Dict keys in the space's order, Tuple items in order, nested to any depth),
every leaf starting on an 8-byte boundary. ``unflatten_observations`` undoes it on batched
torch tensors by viewing each leaf's bytes as its dtype: no copy, and it works under
torch.compile. Both directions use :func:`observation_layout`, so they cannot disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

ALIGN = 8
_TORCH_DTYPES = {
    np.dtype(t): torch.from_numpy(np.zeros(0, dtype=t)).dtype
    for t in (
        np.bool_,
        np.uint8,
        np.int8,
        np.int16,
        np.int32,
        np.int64,
        np.uint16,
        np.uint32,
        np.uint64,
        np.float16,
        np.float32,
        np.float64,
    )
}


@dataclass(frozen=True)
class Leaf:
    """Where one leaf space's values sit in the flat row."""

    path: tuple[str | int, ...]
    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int
    nbytes: int


def is_structured(space: gym.spaces.Space) -> bool:
    return isinstance(space, gym.spaces.Dict | gym.spaces.Tuple)


def travels_as_bytes(space: gym.spaces.Space) -> bool:
    """Whether the engine carries observations of ``space`` as flat byte rows: every space but
    a Box (a bare Discrete, MultiDiscrete or MultiBinary is a one-leaf layout)."""
    return not isinstance(space, gym.spaces.Box)


def _leaf_shape_dtype(space: gym.spaces.Space) -> tuple[tuple[int, ...], np.dtype]:
    if isinstance(space, gym.spaces.Box):
        return tuple(int(n) for n in space.shape), np.dtype(space.dtype)
    if isinstance(space, gym.spaces.Discrete):
        return (), np.dtype(np.int64)
    if isinstance(space, gym.spaces.MultiDiscrete):
        return tuple(int(n) for n in space.shape), np.dtype(np.int64)
    if isinstance(space, gym.spaces.MultiBinary):
        return tuple(int(n) for n in np.atleast_1d(space.n)), np.dtype(np.int8)
    raise ValueError(f"cannot flatten observation space {space}")


def observation_layout(space: gym.spaces.Space) -> tuple[list[Leaf], int]:
    """The leaves of ``space`` in flat order, and the row size in bytes (a multiple of 8)."""
    leaves: list[Leaf] = []
    offset = 0

    def walk(node: gym.spaces.Space, path: tuple[str | int, ...]) -> None:
        nonlocal offset
        if isinstance(node, gym.spaces.Dict):
            for key, child in node.spaces.items():
                walk(child, (*path, key))
        elif isinstance(node, gym.spaces.Tuple):
            for index, child in enumerate(node.spaces):
                walk(child, (*path, index))
        else:
            shape, dtype = _leaf_shape_dtype(node)
            nbytes = math.prod(shape) * dtype.itemsize
            leaves.append(Leaf(path, shape, dtype, offset, nbytes))
            offset += -(-nbytes // ALIGN) * ALIGN

    walk(space, ())
    return leaves, max(offset, ALIGN)


def flat_space(space: gym.spaces.Space) -> gym.spaces.Box:
    """The Box of flat byte rows that stands for ``space`` in the rollout engine."""
    return gym.spaces.Box(0, 255, (observation_layout(space)[1],), np.uint8)


def flatten_observation(observation: Any, space: gym.spaces.Space) -> np.ndarray:
    """One observation of ``space`` as a flat uint8 row."""
    leaves, size = observation_layout(space)
    row = np.zeros(size, dtype=np.uint8)
    for leaf in leaves:
        value = observation
        for key in leaf.path:
            value = value[key]
        data = np.ascontiguousarray(value, dtype=leaf.dtype).reshape(-1).view(np.uint8)
        row[leaf.offset : leaf.offset + leaf.nbytes] = data
    return row


@torch.compiler.assume_constant_result
def _layout(space: gym.spaces.Space) -> tuple[list[Leaf], int]:
    """:func:`observation_layout`, which torch.compile treats as a constant of the space."""
    return observation_layout(space)


def unflatten_observations(flat: torch.Tensor, space: gym.spaces.Space) -> Any:
    """Inverse of the engine's flattening for a batch ``flat`` of shape ``(*batch, row_bytes)``:
    a dict / tuple (nested like ``space``) of tensors shaped ``(*batch, *leaf_shape)`` in each
    leaf's dtype. The guide's sketch left this to the reader; here it is exact."""
    leaves, _ = _layout(space)
    batch = flat.shape[:-1]
    values = {}
    for leaf in leaves:
        chunk = flat[..., leaf.offset : leaf.offset + leaf.nbytes]
        values[leaf.path] = chunk.view(_TORCH_DTYPES[leaf.dtype]).reshape(*batch, *leaf.shape)
    return _nest(space, (), values)


def _nest(space: gym.spaces.Space, path: tuple, values: dict[tuple, torch.Tensor]) -> Any:
    if isinstance(space, gym.spaces.Dict):
        return {key: _nest(child, (*path, key), values) for key, child in space.spaces.items()}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(_nest(child, (*path, i), values) for i, child in enumerate(space.spaces))
    return values[path]
