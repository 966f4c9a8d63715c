"""Native backend for ALE ids: ale-py's C++ AtariVectorEnv, stepped on its own thread pool."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from puffertrain.engine.env_rows import EnvRows
from puffertrain.engine.vector_batches import VectorBatches


class NativeAtariEngine(VectorBatches):
    """AtariVectorEnv with same-step autoreset and a termination signal at every lost life.

    The env resets a game only at game over; a lost life just sets ``terminated``. The two are
    told apart by ``episode_frame_number``, which restarts only when the game is reset, so the
    episode tracker scores whole games with raw rewards.

    Async batches use one AtariVectorEnv per batch, each on its own C++ threads: ``send``
    returns at once, so the envs of one batch step while the policy acts on another, and a
    batch is always the same envs (its steps stay in order, and a whole batch can sit idle at
    the end of a rollout). The C++ envs cannot be captured: resume starts new games.

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
        batch_size = batch_size or num_envs
        num_batches = num_envs // batch_size
        self.env_threads = max(1, num_threads // num_batches) * num_batches
        threads_before = _thread_ids()
        self._batches = [
            AtariVectorEnv(
                game,
                batch_size,
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
        first = self._batches[0]
        super().__init__(
            num_envs, batch_size, first.single_observation_space, first.single_action_space
        )
        self._frame_numbers = np.zeros(num_envs, dtype=np.int64)
        self._orders = [np.arange(batch_size) for _ in self._batches]

    def _reset_batch(self, batch: int, seed: int, out: EnvRows) -> None:
        obs, info = self._batches[batch].reset(seed=seed)
        order = self._sorted(batch, info["env_id"])
        out.observations[:] = obs[order]
        self._frame_numbers[self.batch_rows(batch)] = info["episode_frame_number"][order]

    def _sorted(self, batch: int, env_ids: np.ndarray) -> np.ndarray:
        """Remember the order the C++ env returned a batch in (its next ``send`` takes actions
        in that order); return the permutation that sorts the batch by env."""
        self._orders[batch] = env_ids
        return np.argsort(env_ids)

    def _send_batch(self, batch: int, actions: np.ndarray) -> None:
        self._batches[batch].send(actions.astype(np.int32)[self._orders[batch]])

    def _recv_batch(self, batch: int, out: EnvRows) -> None:
        obs, rewards, terminations, truncations, info = self._batches[batch].recv()
        order = self._sorted(batch, info["env_id"])
        out.observations[:] = obs[order]
        out.rewards[:] = rewards[order]
        out.terminations[:] = terminations[order]
        out.truncations[:] = truncations[order]
        ended = out.terminations | out.truncations
        if np.count_nonzero(ended):  # a fifth of `.any()`'s cost
            out.final_observations[ended] = info["final_obs"][order][ended]
        rows = self.batch_rows(batch)
        frame_numbers = info["episode_frame_number"][order]
        out.game_over[:] = ended & (frame_numbers <= self._frame_numbers[rows])
        self._frame_numbers[rows] = frame_numbers

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
