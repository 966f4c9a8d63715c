"""Native backend for ALE ids: ale-py's C++ AtariVectorEnv, stepped on its own thread pool."""

from __future__ import annotations

from typing import Any

import numpy as np

from puffertrain.vector.base import EnvRows, EpisodeTracker, StepResult, VectorEnv


class NativeAtariVectorEnv(VectorEnv):
    """AtariVectorEnv with same-step autoreset and a termination signal at every lost life.

    The env resets a game only at game over; a lost life just sets ``terminated``. The two are
    told apart by ``episode_frame_number``, which restarts only when the game is reset, so the
    episode tracker scores whole games with raw rewards.
    """

    name = "native"

    def __init__(self, settings: dict[str, Any], num_envs: int, num_threads: int) -> None:
        from ale_py.vector_env import AtariVectorEnv

        settings = dict(settings)
        self.env = AtariVectorEnv(
            settings.pop("game"),
            num_envs,
            num_threads=num_threads,
            autoreset_mode="SameStep",
            life_loss_info=True,
            episodic_life=False,
            reward_clipping=False,
            **settings,
        )
        self.num_envs = num_envs
        self.single_observation_space = self.env.single_observation_space
        self.single_action_space = self.env.single_action_space
        self.policy_observation_space = self.single_observation_space
        self.observations = np.zeros(
            (num_envs, *self.single_observation_space.shape), dtype=np.uint8
        )
        self.rows = EnvRows(
            observations=self.observations,
            final_observations=np.zeros_like(self.observations),
            rewards=np.zeros(num_envs, dtype=np.float32),
            terminations=np.zeros(num_envs, dtype=bool),
            truncations=np.zeros(num_envs, dtype=bool),
            game_over=np.zeros(num_envs, dtype=bool),
        )
        self.tracker = EpisodeTracker(num_envs)
        self._frame_numbers = np.zeros(num_envs, dtype=np.int64)

    def reset(self, seed: int) -> np.ndarray:
        obs, info = self.env.reset(seed=seed)
        self.observations[:] = obs
        self._frame_numbers[:] = info["episode_frame_number"]
        self.tracker = EpisodeTracker(self.num_envs)
        return self.observations

    def step(self, actions: np.ndarray) -> StepResult:
        obs, rewards, terminations, truncations, info = self.env.step(actions.astype(np.int32))
        rows = self.rows
        rows.observations[:] = obs
        rows.rewards[:] = rewards
        rows.terminations[:] = terminations
        rows.truncations[:] = truncations
        ended = terminations | truncations
        if ended.any():
            rows.final_observations[ended] = info["final_obs"][ended]
        frame_numbers = info["episode_frame_number"]
        rows.game_over[:] = ended & (frame_numbers <= self._frame_numbers)
        self._frame_numbers[:] = frame_numbers
        return self._step_result(rows)

    def state_dict(self) -> dict[str, Any]:
        return {"envs": None}  # the C++ envs cannot be snapshotted: resume starts new games

    def load_state_dict(self, state: dict[str, Any], reseed: int) -> bool:
        self.reset(reseed)
        return False

    def close(self) -> None:
        self.env.close()
