"""Action masks: where an env's masks come from (decided once, at start) and reading them.

An env gives masks in one of two conventions: a Dict observation with an ``action_mask`` entry
(PettingZoo's classic envs), or ``info["action_mask"]`` at every reset and step (Gymnasium's
Taxi). A mask holds 0/1 (bool or int) per action of a Discrete space, or the dimensions' masks
side by side for a MultiDiscrete one. The recipe looks at one env at start
(:func:`find_mask_source`); every env of the run is then read by a :class:`MaskReader`, which
takes the mask out of the observation (the policy sees the rest) and refuses a mask that is
missing, of the wrong size, or allows nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from puffertrain.errors import UserError

MASK_KEY = "action_mask"


class MaskError(UserError):
    """An env gave an action mask that breaks the rules, or stopped giving one."""


def action_blocks(action_space: gym.spaces.Space) -> list[int]:
    """Actions of each dimension: ``[n]`` for Discrete, ``nvec`` for MultiDiscrete."""
    if isinstance(action_space, gym.spaces.Discrete):
        return [int(action_space.n)]
    return [int(n) for n in np.asarray(action_space.nvec).reshape(-1)]


@dataclass(frozen=True)
class MaskSource:
    """Where an env's masks are (``in_observation``: the Dict observation's entry, else the
    info's) and how many entries each has (``blocks``: per action dimension)."""

    in_observation: bool
    blocks: tuple[int, ...]

    @property
    def size(self) -> int:
        return sum(self.blocks)

    @property
    def where(self) -> str:
        return (
            f"the observation's '{MASK_KEY}' entry"
            if self.in_observation
            else (f"info['{MASK_KEY}']")
        )


def find_mask_source(
    observation_space: gym.spaces.Space, reset_info: Any, action_space: gym.spaces.Space
) -> MaskSource | None:
    """The mask source of an env with these spaces whose reset gave ``reset_info`` (None: the
    env gives no masks). ``UserError`` for a mask on an action space that has no discrete
    actions to mask, or of the wrong size."""
    in_observation = isinstance(observation_space, gym.spaces.Dict) and (
        MASK_KEY in observation_space.spaces
    )
    if in_observation:
        found = int(np.prod(observation_space[MASK_KEY].shape))
    elif isinstance(reset_info, dict) and MASK_KEY in reset_info:
        found = int(np.asarray(reset_info[MASK_KEY]).size)
    else:
        return None
    where = MaskSource(in_observation, ()).where
    if not isinstance(action_space, gym.spaces.Discrete | gym.spaces.MultiDiscrete):
        raise UserError(
            f"the env gives an action mask ({where}) but its action space {action_space} has "
            "no discrete actions to mask; masks need a Discrete or MultiDiscrete action space"
        )
    blocks = tuple(action_blocks(action_space))
    if found != sum(blocks):
        per = "one per action" if len(blocks) == 1 else "the dimensions' masks side by side"
        raise UserError(
            f"the env's action mask ({where}) has {found} entries; its action space "
            f"{action_space} needs {sum(blocks)} ({per})"
        )
    return MaskSource(in_observation, blocks)


def has_mask_entry(space: gym.spaces.Space) -> bool:
    """Whether ``space`` is a Dict with an ``action_mask`` entry."""
    return isinstance(space, gym.spaces.Dict) and MASK_KEY in space.spaces


def without_mask(space: gym.spaces.Space) -> gym.spaces.Space:
    """The observation space the policy sees: a Dict without its ``action_mask`` entry, or
    the one entry left (PettingZoo's ``observation``) as it is; any other space unchanged."""
    if not has_mask_entry(space):
        return space
    rest = {key: child for key, child in space.spaces.items() if key != MASK_KEY}
    if len(rest) == 1:
        return next(iter(rest.values()))
    return gym.spaces.Dict(rest)


class MaskReader:
    """Takes each step's mask out of one env's (or agent's) observation or info, and checks
    it: present, of the source's size, and allowing at least one action in every dimension.
    ``MaskError`` names the step otherwise. (Per step it only looks: any cast waits for the
    engine's bool buffer.)"""

    def __init__(self, source: MaskSource) -> None:
        self._size = source.size
        self._in_observation = source.in_observation
        self._starts = np.cumsum((0, *source.blocks[:-1])) if len(source.blocks) > 1 else None

    def read(self, observation: Any, info: dict, step: int, agent: str = "") -> np.ndarray:
        """The mask of the observation after ``step`` (0: the reset's) of the env (or of
        ``agent``), as the env gave it (0/1 or bools)."""
        mask = observation[MASK_KEY] if self._in_observation else info.get(MASK_KEY)
        if mask is None:
            raise MaskError(
                f"{_who(agent)}info has no '{MASK_KEY}' {_when(step)}, though it had one at "
                "start; an env that masks actions must give a mask at every reset and step"
            )
        mask = np.asarray(mask)
        if mask.size != self._size:
            raise MaskError(
                f"{_who(agent)}action mask has {mask.size} entries {_when(step)}, not the "
                f"{self._size} it had at start"
            )
        # np.count_nonzero costs a quarter of ``mask.any()``, at every step of every env
        if np.count_nonzero(mask) == 0 or (
            self._starts is not None and not self._each_allows(mask)
        ):
            raise MaskError(
                f"{_who(agent)}action mask allows no action {_when(step)} (all zero"
                f"{' in a dimension' if self._starts is not None else ''}); a masked env must "
                "leave at least one valid action"
            )
        return mask

    def _each_allows(self, mask: np.ndarray) -> bool:
        """Whether every action dimension's block of ``mask`` allows an action."""
        return bool(np.logical_or.reduceat(mask.reshape(-1) != 0, self._starts).all())


def _who(agent: str) -> str:
    return f"agent {agent}'s " if agent else ""


def _when(step: int) -> str:
    return "at reset" if step == 0 else f"after its step {step}"


def observation_without_mask(observation: Any) -> Any:
    """A Dict observation without its mask entry, shaped like :func:`without_mask`'s space."""
    rest = {key: value for key, value in observation.items() if key != MASK_KEY}
    return next(iter(rest.values())) if len(rest) == 1 else rest


class ActionMasks(gym.Wrapper):
    """A gymnasium env whose masks are read by a :class:`MaskReader`: observations without
    the mask, and the checked mask in ``info["action_mask"]`` at every reset and step (what
    the engines read)."""

    def __init__(self, env: gym.Env, source: MaskSource) -> None:
        super().__init__(env)
        self.action_mask_size = source.size
        self.mask_in_observation = source.in_observation
        # a function, not state: env snapshots (checkpoints) skip it and keep ``steps``
        self.read_mask = MaskReader(source).read
        self.observation_space = without_mask(env.observation_space)
        self.steps = 0

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        observation, info = self.env.reset(**kwargs)
        return self._split(observation, info, 0)

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        observation, info = self._split(observation, info, self.steps)
        return observation, reward, terminated, truncated, info

    def _split(self, observation: Any, info: dict, step: int) -> tuple[Any, dict]:
        mask = self.read_mask(observation, info, step)
        if not self.mask_in_observation:
            return observation, info  # the mask is there already, and checked
        return observation_without_mask(observation), {**info, MASK_KEY: mask}


def action_mask_size(env: Any) -> int:
    """Entries of the masks ``env`` (as an engine builds it) gives per row; 0 for none."""
    if isinstance(env, gym.Env):
        try:
            return int(env.get_wrapper_attr("action_mask_size"))
        except AttributeError:
            return 0
    return int(getattr(env, "action_mask_size", 0))


def unexpected_mask() -> MaskError:
    """The error for a mask in a step's info from an env that gave none at start."""
    return MaskError(
        f"info['{MASK_KEY}'] appeared in a step, though the env gave no mask at start; an env "
        "that masks actions must give a mask at every reset and step"
    )


def random_valid_actions(action_space: gym.spaces.Space, masks: np.ndarray) -> np.ndarray:
    """One random action per row of ``masks`` (all actions where ``masks`` has no entries)
    that its mask allows."""
    if not masks.shape[1]:
        return np.stack([action_space.sample() for _ in masks])
    blocks = action_blocks(action_space)
    rows = []
    for mask in masks.astype(np.int8):
        parts = np.split(mask, np.cumsum(blocks)[:-1])
        if isinstance(action_space, gym.spaces.Discrete):
            rows.append(action_space.sample(mask=parts[0]))
        else:
            rows.append(action_space.sample(mask=tuple(parts)))
    return np.stack(rows)
