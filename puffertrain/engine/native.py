"""Native backend for ALE ids: ale-py's C++ AtariVectorEnv, stepped on its own thread pool."""

from __future__ import annotations

import os
from collections import deque
from typing import Any

import numpy as np

from puffertrain.engine.base import Engine, StepResult, env_groups
from puffertrain.engine.env_rows import EnvRows
from puffertrain.engine.episodes import EpisodeTracker


class NativeAtariEngine(Engine):
    """AtariVectorEnv with same-step autoreset and a termination signal at every lost life.

    The env resets a game only at game over; a lost life just sets ``terminated``. The two are
    told apart by ``episode_frame_number``, which restarts only when the game is reset, so the
    episode tracker scores whole games with raw rewards.

    Async batches use one AtariVectorEnv per batch, each on its own C++ threads: ``send``
    returns at once, so the envs of one batch step while the policy acts on another, and a
    batch is always the same envs (its steps stay in order, and a whole batch can sit idle at
    the end of a rollout). Batches come back in the order they were sent.

    The C++ threads run at idle priority (Linux ``SCHED_IDLE``): they step envs on every core
    the process's other threads leave free, but a thread woken by ``send`` no longer preempts
    the policy that sent it (experiments/RESULTS.md measures the gain). Other busy processes on
    the same cores starve them, though.
    """

    name = "native"

    def __init__(
        self, settings: dict[str, Any], num_envs: int, num_threads: int, batch_size: int = 0
    ) -> None:
        from ale_py.vector_env import AtariVectorEnv

        settings = dict(settings)
        game = settings.pop("game")
        self.num_rows = num_envs
        self.batch_size = self.group_size = batch_size or num_envs
        num_batches = num_envs // self.batch_size
        self.env_threads = max(1, num_threads // num_batches) * num_batches
        threads_before = _thread_ids()
        self._batches = [
            AtariVectorEnv(
                game,
                self.batch_size,
                num_threads=max(1, num_threads // num_batches),
                autoreset_mode="SameStep",
                life_loss_info=True,
                episodic_life=False,
                reward_clipping=False,
                **settings,
            )
            for _ in range(num_batches)
        ]
        _set_idle_priority(_thread_ids() - threads_before)
        self.single_observation_space = self._batches[0].single_observation_space
        self.single_action_space = self._batches[0].single_action_space
        self.policy_observation_space = self.single_observation_space
        self.rows = EnvRows.allocate(num_envs, self.single_observation_space)
        self.observations, self.alive = self.rows.observations, self.rows.alive
        self.action_masks = self.rows.action_masks  # ALE games give no masks
        self.tracker = EpisodeTracker(num_envs)
        self._frame_numbers = np.zeros(num_envs, dtype=np.int64)
        self._sent: deque[int] = deque()
        self._orders = [np.arange(self.batch_size) for _ in self._batches]

    def reset(self, seed: int) -> np.ndarray:
        self._sent.clear()
        size = self.batch_size
        for index, batch in enumerate(self._batches):
            obs, info = batch.reset(seed=seed + index * size)
            order = self._sorted(index, info["env_id"])
            rows = slice(index * size, (index + 1) * size)
            self.observations[rows] = obs[order]
            self._frame_numbers[rows] = info["episode_frame_number"][order]
        self.tracker = EpisodeTracker(self.num_rows)
        return self.observations

    def _sorted(self, group: int, env_ids: np.ndarray) -> np.ndarray:
        """Remember the order the C++ env returned a batch in (its next ``send`` takes actions
        in that order); return the permutation that sorts the batch by env."""
        self._orders[group] = env_ids
        return np.argsort(env_ids)

    def send(self, actions: np.ndarray, row_ids: np.ndarray) -> None:
        size = self.batch_size
        actions = actions.astype(np.int32)
        for index, group in enumerate(env_groups(row_ids, size)):
            batch_actions = actions[index * size : (index + 1) * size]
            self._batches[group].send(batch_actions[self._orders[group]])
            self._sent.append(int(group))

    def recv(self) -> StepResult:
        group = self._sent.popleft()
        obs, rewards, terminations, truncations, info = self._batches[group].recv()
        order = self._sorted(group, info["env_id"])
        first = group * self.batch_size
        rows = slice(first, first + self.batch_size)
        out = self.rows.select(rows)
        out.observations[:] = obs[order]
        out.rewards[:] = rewards[order]
        out.terminations[:] = terminations[order]
        out.truncations[:] = truncations[order]
        ended = out.terminations | out.truncations
        if ended.any():
            out.final_observations[ended] = info["final_obs"][order][ended]
        frame_numbers = info["episode_frame_number"][order]
        out.game_over[:] = ended & (frame_numbers <= self._frame_numbers[rows])
        self._frame_numbers[rows] = frame_numbers
        return self._step_result(np.arange(first, rows.stop), out)

    def state_dict(self) -> dict[str, Any]:
        return {"envs": None}  # the C++ envs cannot be snapshotted: resume starts new games

    def load_state_dict(self, state: dict[str, Any], reseed: int) -> bool:
        self.reset(reseed)
        return False

    def close(self) -> None:
        for batch in self._batches:
            batch.close()


def _thread_ids() -> set[int]:
    """This process's thread ids (empty where there is no ``/proc``)."""
    try:
        return {int(name) for name in os.listdir("/proc/self/task")}
    except FileNotFoundError:
        return set()


def _set_idle_priority(thread_ids: set[int]) -> None:
    """Schedule ``thread_ids`` with ``SCHED_IDLE`` where the OS has it (any user may lower
    their own threads' priority). A thread that already ended is skipped; where a sandbox
    refuses the call, the threads keep their normal priority (only slower)."""
    if not hasattr(os, "SCHED_IDLE"):
        return
    for thread_id in thread_ids:
        try:
            os.sched_setscheduler(thread_id, os.SCHED_IDLE, os.sched_param(0))
        except ProcessLookupError:
            continue
        except PermissionError:
            return
