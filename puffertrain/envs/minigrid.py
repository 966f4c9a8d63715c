"""MiniGrid's ``image`` is its grid encoding (an object, colour and state id per cell), not
pixels, but MiniGrid declares it as a 0–255 Box. Declaring the encoding's real bounds lets the
policy's image encoder scale each channel to [0, 1], as it scales pixels by 1/255."""

from __future__ import annotations

import sys
from typing import Any

import gymnasium as gym
import numpy as np


class GridCodeBounds(gym.ObservationWrapper):
    """A MiniGrid env whose ``image`` Box declares the largest object, colour and state ids as
    its per-channel bounds; observations pass unchanged."""

    def __init__(self, env: gym.Env) -> None:
        from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, STATE_TO_IDX

        super().__init__(env)
        image = env.observation_space["image"]
        ids = (OBJECT_TO_IDX, COLOR_TO_IDX, STATE_TO_IDX)
        high = np.broadcast_to(np.array([max(c.values()) for c in ids], np.uint8), image.shape)
        spaces = dict(env.observation_space.spaces, image=gym.spaces.Box(0, high, dtype=np.uint8))
        self.observation_space = gym.spaces.Dict(spaces)

    def observation(self, observation: Any) -> Any:
        return observation


def with_grid_code_bounds(env: Any) -> Any:
    """``env`` in :class:`GridCodeBounds` if it is a MiniGrid env whose ``image`` is still its
    grid encoding (not, say, turned into pixels by one of MiniGrid's RGB wrappers)."""
    minigrid_env = getattr(sys.modules.get("minigrid.minigrid_env"), "MiniGridEnv", None)
    if minigrid_env is None or not isinstance(getattr(env, "unwrapped", None), minigrid_env):
        return env
    own = env.unwrapped.observation_space["image"]
    space = env.observation_space
    if not isinstance(space, gym.spaces.Dict) or space.spaces.get("image") != own:
        return env
    return GridCodeBounds(env)
