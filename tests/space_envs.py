"""Tiny envs with one observation space each, for the catalogue and space tests
(``--env tests.space_envs:graph_leaf``)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class SpaceEnv(gym.Env):
    """Observations sampled from ``observation_space``; reward 1 for action 0 (every entry 0),
    episodes of 5 steps. An action outside ``action_space`` raises, as an env indexing a table
    with it would fail."""

    def __init__(
        self,
        observation_space: gym.spaces.Space,
        action_space: gym.spaces.Space | None = None,
    ) -> None:
        self.observation_space = observation_space
        self.action_space = action_space or gym.spaces.Discrete(2)
        self._t = 0

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self.observation_space.seed(seed)
        self._t = 0
        return self.observation_space.sample(), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        if not self.action_space.contains(np.asarray(action)):
            raise ValueError(f"action {action!r} is outside {self.action_space}")
        self._t += 1
        reward = float(np.all(np.asarray(action) == 0))
        return self.observation_space.sample(), reward, self._t >= 5, False, {}


def multi_binary() -> gym.Env:
    return SpaceEnv(gym.spaces.MultiBinary(6))


def multi_discrete() -> gym.Env:
    return SpaceEnv(gym.spaces.MultiDiscrete([3, 5, 2]))


def integer_vector() -> gym.Env:
    return SpaceEnv(gym.spaces.Box(-5, 5, (4,), np.int64))


def text_leaf() -> gym.Env:
    return SpaceEnv(
        gym.spaces.Dict({"position": gym.spaces.Discrete(9), "note": gym.spaces.Text(8)})
    )


def text_only() -> gym.Env:
    return SpaceEnv(gym.spaces.Text(8))


def graph_leaf() -> gym.Env:
    graph = gym.spaces.Graph(gym.spaces.Box(0, 1, (2,)), gym.spaces.Discrete(3))
    return SpaceEnv(gym.spaces.Dict({"position": gym.spaces.Discrete(9), "links": graph}))


def sequence_leaf() -> gym.Env:
    return SpaceEnv(gym.spaces.Sequence(gym.spaces.Discrete(4)))


def minigrid_rgb() -> gym.Env:
    """A MiniGrid env whose image is turned into pixels by MiniGrid's own wrapper."""
    import minigrid  # noqa: F401  (registers the ids)
    from minigrid.wrappers import RGBImgPartialObsWrapper

    return RGBImgPartialObsWrapper(gym.make("MiniGrid-Empty-5x5-v0"))


def grid_image() -> gym.Env:
    """MiniGrid's observation without MiniGrid: an image whose bounds differ by channel (object,
    color, state) and a direction."""
    high = np.broadcast_to(np.array([10, 5, 2], np.uint8), (7, 7, 3))
    image = gym.spaces.Box(np.zeros_like(high), high, dtype=np.uint8)
    return SpaceEnv(gym.spaces.Dict({"image": image, "direction": gym.spaces.Discrete(4)}))


_VECTOR = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)


def discrete_actions_from_1() -> gym.Env:
    return SpaceEnv(_VECTOR, gym.spaces.Discrete(3, start=1))


def multi_discrete_actions_with_starts() -> gym.Env:
    return SpaceEnv(_VECTOR, gym.spaces.MultiDiscrete([3, 4], start=[1, -2]))


def discrete_observations_from_5() -> gym.Env:
    return SpaceEnv(gym.spaces.Discrete(4, start=5))


def binary_actions() -> gym.Env:
    """MultiBinary actions of shape (2, 3); raises on anything but a 0/1 array of that shape."""
    return SpaceEnv(_VECTOR, gym.spaces.MultiBinary([2, 3]))


def float64_vector() -> gym.Env:
    return SpaceEnv(gym.spaces.Box(-1.0, 1.0, (3,), np.float64))


def integer_box_actions() -> gym.Env:
    """Box actions of integer dtype; raises on an action that is not of that dtype."""
    return SpaceEnv(_VECTOR, gym.spaces.Box(0, 10, (2,), np.int64))


def off_centre_box_actions() -> gym.Env:
    """Box actions in [2, 10]: a new policy's mean 0 lies below them."""
    return SpaceEnv(_VECTOR, gym.spaces.Box(2.0, 10.0, (2,), np.float32))
