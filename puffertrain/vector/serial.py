"""Serial backend: every env stepped in turn in this process."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from puffertrain.envs import EnvFactory, capture_env_state, restore_env_state
from puffertrain.vector.base import EpisodeTracker, StepResult, VectorEnv


class SerialVectorEnv(VectorEnv):
    """Steps a list of gymnasium envs one after another, writing into preallocated arrays."""

    def __init__(self, factories: Sequence[EnvFactory]) -> None:
        self.envs = [factory() for factory in factories]
        self.num_envs = len(self.envs)
        self.single_observation_space = self.envs[0].observation_space
        self.single_action_space = self.envs[0].action_space
        space = self.single_observation_space
        self.observations = np.zeros((self.num_envs, *space.shape), dtype=space.dtype)
        self.final_observations = np.zeros_like(self.observations)
        self.rewards = np.zeros(self.num_envs, dtype=np.float32)
        self.terminations = np.zeros(self.num_envs, dtype=bool)
        self.truncations = np.zeros(self.num_envs, dtype=bool)
        self.game_over = np.zeros(self.num_envs, dtype=bool)
        self.tracker = EpisodeTracker(self.num_envs)

    def reset(self, seed: int) -> np.ndarray:
        self.tracker = EpisodeTracker(self.num_envs)
        for index, env in enumerate(self.envs):
            self.observations[index], _ = env.reset(seed=seed + index)
        return self.observations

    def step(self, actions: np.ndarray) -> StepResult:
        for index, env in enumerate(self.envs):
            obs, reward, terminated, truncated, info = env.step(actions[index])
            self.rewards[index] = reward
            self.terminations[index] = terminated
            self.truncations[index] = truncated
            # An env may end an episode for bootstrapping while its score goes on (Atari life
            # loss): it says so with info["game_over"] = False.
            self.game_over[index] = (terminated or truncated) and info.get("game_over", True)
            if terminated or truncated:
                self.final_observations[index] = obs
                obs, _ = env.reset()
            self.observations[index] = obs
        episodes = self.tracker.update(self.rewards, self.game_over)
        return StepResult(
            self.observations,
            self.rewards,
            self.terminations,
            self.truncations,
            self.final_observations,
            episodes,
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "observations": self.observations.tobytes(),
            "tracker": self.tracker.state_dict(),
            "envs": [capture_env_state(env) for env in self.envs],
        }

    def load_state_dict(self, state: dict[str, Any], reseed: int) -> bool:
        snapshots = state["envs"]
        if any(snapshot is None for snapshot in snapshots):
            self.reset(reseed)
            return False
        for env, snapshot in zip(self.envs, snapshots, strict=True):
            restore_env_state(env, snapshot)
        self.observations[:] = np.frombuffer(
            state["observations"], dtype=self.observations.dtype
        ).reshape(self.observations.shape)
        self.tracker.load_state_dict(state["tracker"])
        return True

    def close(self) -> None:
        for env in self.envs:
            env.close()
