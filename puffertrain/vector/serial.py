"""Serial backend: every env stepped in turn in this process."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from puffertrain.envs import EnvFactory, capture_env_state, restore_env_state
from puffertrain.envs.flatten import policy_observation_space
from puffertrain.vector.base import (
    EnvRows,
    EpisodeTracker,
    StepResult,
    VectorEnv,
    build_envs,
    reset_envs,
    step_envs,
)


class SerialVectorEnv(VectorEnv):
    """Steps a list of gymnasium envs one after another, writing into preallocated arrays."""

    name = "serial"

    def __init__(self, factories: Sequence[EnvFactory]) -> None:
        self.envs = build_envs(factories, first=0)
        self.num_envs = len(self.envs)
        self.single_observation_space = self.envs[0].observation_space
        self.single_action_space = self.envs[0].action_space
        self.policy_observation_space = policy_observation_space(self.envs[0])
        space = self.single_observation_space
        self.observations = np.zeros((self.num_envs, *space.shape), dtype=space.dtype)
        self.rows = EnvRows(
            observations=self.observations,
            final_observations=np.zeros_like(self.observations),
            rewards=np.zeros(self.num_envs, dtype=np.float32),
            terminations=np.zeros(self.num_envs, dtype=bool),
            truncations=np.zeros(self.num_envs, dtype=bool),
            game_over=np.zeros(self.num_envs, dtype=bool),
        )
        self.tracker = EpisodeTracker(self.num_envs)

    def reset(self, seed: int) -> np.ndarray:
        self.tracker = EpisodeTracker(self.num_envs)
        reset_envs(self.envs, range(seed, seed + self.num_envs), self.observations)
        return self.observations

    def step(self, actions: np.ndarray) -> StepResult:
        step_envs(self.envs, actions, self.rows, first=0)
        return self._step_result(self.rows)

    def state_dict(self) -> dict[str, Any]:
        return self._engine_state([capture_env_state(env) for env in self.envs])

    def _restore_envs(self, snapshots: list[Any]) -> None:
        for env, snapshot in zip(self.envs, snapshots, strict=True):
            restore_env_state(env, snapshot)

    def close(self) -> None:
        for env in self.envs:
            env.close()
