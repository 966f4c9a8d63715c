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

from policies.compile_hints import constant_when_compiled

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


@constant_when_compiled
def _layout(space: gym.spaces.Space) -> tuple[list[Leaf], int]:
    """:func:`observation_layout`, which torch.compile treats as a constant of the space."""
    return observation_layout(space)


def unflatten_observations(flat: torch.Tensor, space: gym.spaces.Space) -> Any:
    """Inverse of the engine's flattening for a batch ``flat`` of shape ``(*batch, row_bytes)``:
    a dict / tuple (nested like ``space``) of tensors shaped ``(*batch, *leaf_shape)`` in each
    leaf's dtype. The guide's sketch left this to the reader; here it is exact."""
    leaves, _ = _layout(space)
    batch = flat.shape[:-1]
    # Neither ONNX (no BitCast below opset 26) nor a TorchScript trace can reinterpret bytes,
    # so a graph being exported decodes them with arithmetic, which gives the same values.
    exporting = torch.compiler.is_exporting() or torch.jit.is_tracing()
    values = {}
    for leaf in leaves:
        chunk = flat[..., leaf.offset : leaf.offset + leaf.nbytes]
        dtype = _TORCH_DTYPES[leaf.dtype]
        value = decode_bytes(chunk, dtype) if exporting else chunk.view(dtype)
        values[leaf.path] = value.reshape(*batch, *leaf.shape)
    return _nest(space, (), values)


_FLOAT_BITS = {torch.float16: (5, 10), torch.float32: (8, 23), torch.float64: (11, 52)}


def decode_bytes(chunk: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``chunk.view(dtype)`` (little-endian uint8 bytes on the last axis) computed with integer
    and float arithmetic only, which every exporter translates. The values are exact, subnormals
    and infinities included (NaN stays NaN, its payload aside); uint64 is refused."""
    if dtype == torch.uint8:
        return chunk
    if dtype == torch.bool:
        return chunk != 0
    if dtype == torch.uint64:
        raise ValueError("uint64 observation leaves cannot be exported")
    size = torch.empty((), dtype=dtype).element_size()
    by_item = chunk.to(torch.int64).reshape(*chunk.shape[:-1], -1, size)
    if size == 8:  # two 32-bit halves, so that no product overflows int64
        low, high = _unsigned(by_item[..., :4]), _unsigned(by_item[..., 4:])
        signed_high = high - (high >= 2**31).to(torch.int64) * 2**32
        if dtype == torch.float64:
            return _float_from_halves(low, high)
        return low + signed_high * 2**32
    bits = _unsigned(by_item)
    if dtype in _FLOAT_BITS:
        return _float_from_bits(bits, *_FLOAT_BITS[dtype]).to(dtype)
    if dtype in (torch.int8, torch.int16, torch.int32):
        bits = bits - (bits >= 2 ** (8 * size - 1)).to(torch.int64) * 2 ** (8 * size)
    return bits.to(dtype)


def _unsigned(by_item: torch.Tensor) -> torch.Tensor:
    """The unsigned integer of each item's little-endian bytes (last axis, at most 4)."""
    weights = 256 ** torch.arange(by_item.shape[-1], dtype=torch.int64)
    return (by_item * weights).sum(-1)


def _float_from_bits(bits: torch.Tensor, exponent_bits: int, mantissa_bits: int) -> torch.Tensor:
    """The IEEE-754 value of ``bits`` (at most 32 of them) as float64."""
    mantissa = bits % 2**mantissa_bits
    rest = bits // 2**mantissa_bits
    exponent = rest % 2**exponent_bits
    negative = rest >= 2**exponent_bits
    return _ieee_value(negative, exponent, mantissa.double(), exponent_bits, mantissa_bits)


def _float_from_halves(low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """The float64 whose low and high 32 bits are ``low`` and ``high``."""
    mantissa = (high % 2**20).double() * 2**32 + low.double()
    exponent = (high // 2**20) % 2**11
    return _ieee_value(high >= 2**31, exponent, mantissa, 11, 52)


def _ieee_value(
    negative: torch.Tensor,
    exponent: torch.Tensor,
    mantissa: torch.Tensor,
    exponent_bits: int,
    mantissa_bits: int,
) -> torch.Tensor:
    bias = 2 ** (exponent_bits - 1) - 1
    fraction = mantissa * 2.0**-mantissa_bits
    normal = (1.0 + fraction) * torch.pow(2.0, (exponent - bias).double())
    subnormal = fraction * 2.0 ** (1 - bias)
    special = torch.where(mantissa == 0, torch.inf, torch.nan)
    magnitude = torch.where(exponent == 0, subnormal, normal)
    magnitude = torch.where(exponent == 2**exponent_bits - 1, special, magnitude)
    return torch.where(negative, -magnitude, magnitude)


def _nest(space: gym.spaces.Space, path: tuple, values: dict[tuple, torch.Tensor]) -> Any:
    if isinstance(space, gym.spaces.Dict):
        return {key: _nest(child, (*path, key), values) for key, child in space.spaces.items()}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(_nest(child, (*path, i), values) for i, child in enumerate(space.spaces))
    return values[path]
