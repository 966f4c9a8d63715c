"""Snapshot an env's state as plain data so a resumed run continues the same episodes.

The snapshot walks the wrapper chain and keeps every attribute that is data (numbers, strings,
numpy arrays, numpy random generators, and containers of them). Spaces, specs and the wrapped
env are structure, not state, and are skipped. An env holding any other kind of object (a
physics engine handle, a socket) cannot be captured: ``capture_env_state`` returns None and the
trainer restarts its episodes on resume instead.

The result holds only builtins and bytes, so it loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import types
from typing import Any

import gymnasium as gym
import numpy as np

_SCALARS = (type(None), bool, int, float, str, bytes)
_STRUCTURE = (gym.Env, gym.spaces.Space, gym.envs.registration.EnvSpec, types.ModuleType)


class _NotData(Exception):
    pass


class SnapshotMismatch(ValueError):
    """A snapshot that does not fit the env it is put back into (another wrapper chain, or
    another engine's envs)."""


def _encode(value: Any) -> Any:
    # numpy scalars first: np.float64 and np.str_ subclass float and str, and saved as they are
    # they would make the checkpoint unloadable under weights_only (Blackjack-v1 holds an np.str_).
    if isinstance(value, np.generic):
        return {"__npscalar__": value.dtype.str, "value": value.item()}
    if type(value) in _SCALARS:  # exactly: a subclass (an IntEnum) would not load either
        return value
    if isinstance(value, np.ndarray) and value.dtype != object:
        return {"__ndarray__": value.tobytes(), "dtype": value.dtype.str, "shape": value.shape}
    if isinstance(value, np.random.Generator):
        return {"__generator__": value.bit_generator.state}
    if isinstance(value, tuple | list):
        encoded = [_encode(item) for item in value]
        return {"__tuple__": encoded} if isinstance(value, tuple) else encoded
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {"__dict__": {key: _encode(item) for key, item in value.items()}}
    raise _NotData(type(value).__name__)


def _decode(value: Any, current: Any) -> Any:
    if isinstance(value, list):
        return [_decode(item, None) for item in value]
    if not isinstance(value, dict):
        return value
    if "__ndarray__" in value:
        return (
            np.frombuffer(value["__ndarray__"], dtype=value["dtype"]).reshape(value["shape"]).copy()
        )
    if "__npscalar__" in value:
        return np.dtype(value["__npscalar__"]).type(value["value"])
    if "__generator__" in value:
        generator = current if isinstance(current, np.random.Generator) else np.random.default_rng()
        generator.bit_generator.state = value["__generator__"]
        return generator
    if "__tuple__" in value:
        return tuple(_decode(item, None) for item in value["__tuple__"])
    return {key: _decode(item, None) for key, item in value["__dict__"].items()}


def _chain(env: gym.Env) -> list[Any]:
    layers = [env]
    while isinstance(layers[-1], gym.Wrapper):
        layers.append(layers[-1].env)
    return layers


def _is_structure(value: Any) -> bool:
    return isinstance(value, _STRUCTURE) or callable(value)


def capture_env_state(env: gym.Env) -> list[dict[str, Any]] | None:
    """The state of every layer of ``env`` as plain data, or None if it holds non-data objects."""
    snapshot = []
    for layer in _chain(env):
        attributes = {}
        for name, value in vars(layer).items():
            if _is_structure(value):
                continue
            try:
                attributes[name] = _encode(value)
            except _NotData:
                return None
        snapshot.append(attributes)
    return snapshot


def restore_env_state(env: gym.Env, snapshot: list[dict[str, Any]]) -> None:
    """Put a snapshot from :func:`capture_env_state` back into an env built the same way."""
    layers = _chain(env)
    if len(layers) != len(snapshot):
        raise SnapshotMismatch("env wrapper chain differs from the snapshot's")
    for layer, attributes in zip(layers, snapshot, strict=True):
        for name, value in attributes.items():
            setattr(layer, name, _decode(value, getattr(layer, name, None)))
