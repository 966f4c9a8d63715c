"""What part of an env's observation the policy sees: text leaves dropped, and a clear refusal
for spaces that have no fixed-size batch form."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from puffertrain.errors import UserError

LEAF_SPACES = (
    gym.spaces.Box,
    gym.spaces.Discrete,
    gym.spaces.MultiDiscrete,
    gym.spaces.MultiBinary,
)


def describe_space(space: gym.spaces.Space) -> str:
    """``space`` in one short line for a message: a Box by its bounds, shape and dtype, a bound
    that differs by entry as its range ``least..most`` (gymnasium's repr spells out every
    entry's bound: dozens of lines for a MiniGrid image)."""
    if isinstance(space, gym.spaces.Box):
        return f"Box({_bound(space.low)}, {_bound(space.high)}, {space.shape}, {space.dtype})"
    if isinstance(space, gym.spaces.Dict):
        items = (f"'{key}': {describe_space(child)}" for key, child in space.spaces.items())
        return f"Dict({', '.join(items)})"
    if isinstance(space, gym.spaces.Tuple):
        return f"Tuple({', '.join(describe_space(child) for child in space.spaces)})"
    return str(space)


def _bound(values: np.ndarray) -> str:
    if not values.size:  # a Box of no entries (shape (0,)) has no bound to show
        return "-"
    least, most = values.min(), values.max()
    return f"{least}" if least == most else f"{least}..{most}"


def _leaf_name(path: tuple[str | int, ...]) -> str:
    return "/".join(str(key) for key in path) or "observation"


def is_text(space: gym.spaces.Space) -> bool:
    """A Text space, or any other space of strings (MiniGrid's ``MissionSpace``)."""
    if isinstance(space, gym.spaces.Text):
        return True
    if isinstance(space, (*LEAF_SPACES, gym.spaces.Dict, gym.spaces.Tuple)):
        return False
    try:
        return isinstance(space.sample(), str)
    except Exception:  # a space that cannot sample is no text space we know
        return False


def text_leaves(space: gym.spaces.Space, path: tuple[str | int, ...] = ()) -> list[str]:
    """Names of the Text leaves of ``space`` (``mission`` for MiniGrid), which the policy does
    not see."""
    if is_text(space):
        return [_leaf_name(path)]
    if isinstance(space, gym.spaces.Dict):
        children: Any = space.spaces.items()
    elif isinstance(space, gym.spaces.Tuple):
        children = enumerate(space.spaces)
    else:
        return []
    return [name for key, child in children for name in text_leaves(child, (*path, key))]


def _kept(space: gym.spaces.Space, path: tuple[str | int, ...]) -> gym.spaces.Space | None:
    """``space`` without its Text leaves (None if nothing is left); ``UserError`` naming the
    first leaf no batch can hold."""
    if is_text(space):
        return None
    if isinstance(space, LEAF_SPACES):
        return space
    if isinstance(space, gym.spaces.Dict):
        kept = {key: _kept(child, (*path, key)) for key, child in space.spaces.items()}
        kept = {key: child for key, child in kept.items() if child is not None}
        return gym.spaces.Dict(kept) if kept else None
    if isinstance(space, gym.spaces.Tuple):
        items = [_kept(child, (*path, index)) for index, child in enumerate(space.spaces)]
        items = [child for child in items if child is not None]
        return gym.spaces.Tuple(items) if items else None
    raise UserError(
        f"observation leaf '{_leaf_name(path)}' is a {type(space).__name__} space "
        f"({describe_space(space)}), "
        "which has no fixed size to batch; puffertrain trains on Box, Discrete, MultiDiscrete, "
        "MultiBinary and Dict/Tuple of them (wrap the env to give it one of those)"
    )


def policy_view(space: gym.spaces.Space) -> gym.spaces.Space:
    """The observation space the policy is built for: ``space`` without its Text leaves.
    ``UserError`` for a Graph, Sequence or other unbatchable leaf, or if only text is left."""
    kept = _kept(space, ())
    if kept is None:
        text = describe_space(space)
        raise UserError(f"the observation {text} is text only; puffertrain does not encode text")
    return kept


def _drop_text(value: Any, space: gym.spaces.Space) -> Any:
    if isinstance(space, gym.spaces.Dict):
        return {
            key: _drop_text(value[key], child)
            for key, child in space.spaces.items()
            if _kept(child, ()) is not None
        }
    if isinstance(space, gym.spaces.Tuple):
        return tuple(
            _drop_text(item, child)
            for item, child in zip(value, space.spaces, strict=True)
            if _kept(child, ()) is not None
        )
    return value


def without_text(observation: Any, space: gym.spaces.Space) -> Any:
    """An observation of ``space`` (which has Text leaves) reduced to :func:`policy_view`'s."""
    return _drop_text(observation, space)


def text_notice(space: gym.spaces.Space) -> str | None:
    """The one notice printed at start when the policy will not see some text leaves."""
    names = text_leaves(space)
    if not names:
        return None
    quoted = ", ".join(f"'{name}'" for name in names)
    return (
        f"puffertrain: note: the policy does not see the text observation leaf {quoted} "
        "(puffertrain does not encode text); in BabyAI the mission names the goal and can "
        "matter, in MiniGrid's single-task envs it is constant"
    )
