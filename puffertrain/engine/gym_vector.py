"""Native backend for ids that register a gymnasium vector entry point (gymnasium's numpy
``CartPoleVectorEnv``): every env of a batch stepped by one vectorised call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv
from gymnasium.vector import AutoresetMode

from puffertrain.engine.env_rows import EnvRows
from puffertrain.engine.vector_batches import VectorBatches
from puffertrain.envs import capture_env_state, restore_env_state
from puffertrain.envs.make import quiet_out_of_date
from puffertrain.errors import UserError

RowReset = Callable[[gym.vector.VectorEnv, np.ndarray, np.ndarray, np.ndarray], None]
"""``(vector, ended, rows, observations)``: reset the envs ``ended`` (a mask; ``rows``, its
row ids) now and write their first observations into ``observations``, which holds what the
step returned."""


def _reset_cartpole_rows(
    vector: gym.vector.VectorEnv, ended: np.ndarray, rows: np.ndarray, observations: np.ndarray
) -> None:
    """CartPoleVectorEnv resets an env on the step after its end (next-step autoreset), with
    that step's action ignored. This does the same reset by the env's own rule (a uniform
    state in ``[low, high]``, step count 0) within the step that ended, and clears the pending
    reset, so no step is spent on it."""
    env = vector.unwrapped  # indexed by row ids four times: a mask would be scanned each time
    states = env.np_random.uniform(low=env.low, high=env.high, size=(4, rows.size))
    env.state[:, rows] = states
    env.steps[rows] = 0
    env.prev_done[rows] = False
    observations[rows] = states.T  # cast to float32 by the assignment, no array between


def _reset_masked_rows(
    vector: gym.vector.VectorEnv, ended: np.ndarray, rows: np.ndarray, observations: np.ndarray
) -> None:
    """A vector env without autoreset resets the envs of a mask when asked (gymnasium's
    ``reset_mask`` option)."""
    observations[ended] = vector.reset(options={"reset_mask": ended})[0][ended]


def _next_episode_rows(
    vector: gym.vector.VectorEnv, ended: np.ndarray, rows: np.ndarray, observations: np.ndarray
) -> None:
    """A same-step vector env has already reset the envs: the step's observations are the
    next episodes' first ones."""


def row_reset(vector: gym.vector.VectorEnv) -> RowReset | None:
    """How this vector env's ended envs start their next episode within the step, or None if
    it cannot (a next-step autoreset env of a kind puffertrain does not know how to reset)."""
    mode = vector.metadata.get("autoreset_mode")
    if mode == AutoresetMode.SAME_STEP:
        return _next_episode_rows
    if mode == AutoresetMode.DISABLED:
        return _reset_masked_rows
    if isinstance(vector.unwrapped, CartPoleVectorEnv):
        return _reset_cartpole_rows
    return None


def has_vector_entry_point(env_id: str) -> bool:
    """Whether ``env_id`` is a registered id with a gymnasium vector entry point."""
    spec = gym.registry.get(env_id)
    return spec is not None and spec.vector_entry_point is not None


def make_vector(env_id: str, num_envs: int, env_kwargs: dict[str, Any]) -> gym.vector.VectorEnv:
    """``num_envs`` envs of ``env_id`` from its vector entry point; an env setting the vector
    env does not take is the user's --env-kwargs."""
    try:
        with quiet_out_of_date():
            return gym.make_vec(
                env_id, num_envs, vectorization_mode="vector_entry_point", **env_kwargs
            )
    except TypeError as error:
        raise UserError(f"--env-kwargs for '{env_id}''s vector env: {error}") from None
    except (gym.error.DependencyNotInstalled, ImportError) as error:
        hint = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UserError(f"'{env_id}''s vector env needs something not installed: {hint}") from None


class GymVectorEngine(VectorBatches):
    """One gymnasium vector env per batch, stepped in this process when its batch is received
    (async batches are stepped in turn, as on the serial backend: nothing overlaps).

    Same-step autoreset whatever the vector env's own mode: an env's final observation goes to
    ``final_observations`` and its next episode's first observation is in ``observations`` in
    the step that ended it (see :func:`row_reset`). A vector env whose state is plain data (the
    numpy CartPole's is) is captured exactly in checkpoints; any other restarts its episodes on
    resume.
    """

    name = "native"
    env_threads = 0

    def __init__(
        self,
        env_id: str,
        env_kwargs: dict[str, Any],
        num_envs: int,
        batch_size: int = 0,
        build: Callable[[int], gym.vector.VectorEnv] | None = None,
    ) -> None:
        """``build(n)`` makes a vector env of ``n`` envs (default: ``env_id``'s vector entry
        point with ``env_kwargs``)."""
        build = build or (lambda size: make_vector(env_id, size, env_kwargs))
        batch_size = batch_size or num_envs
        self._vectors = [build(batch_size) for _ in range(num_envs // batch_size)]
        first = self._vectors[0]
        reset_rows = row_reset(first)
        if reset_rows is None:
            self.close()
            raise UserError(
                f"--vec native: '{env_id}''s vector env resets an ended env only on the next "
                "step, and puffertrain cannot reset it within the step; use --vec serial or "
                "multiprocessing"
            )
        self._reset_rows = reset_rows
        self._same_step = reset_rows is _next_episode_rows
        super().__init__(
            num_envs, batch_size, first.single_observation_space, first.single_action_space
        )
        self._actions: list[np.ndarray | None] = [None] * len(self._vectors)
        # a row mask's shape against an observation's: one row flag over its every value
        self._row_mask_shape = (batch_size,) + (1,) * (self.observations.ndim - 1)

    def _reset_batch(self, batch: int, seed: int, out: EnvRows) -> None:
        out.observations[:] = self._vectors[batch].reset(seed=seed)[0]

    def _send_batch(self, batch: int, actions: np.ndarray) -> None:
        self._actions[batch] = actions.copy()  # the sender may reuse its array before recv

    def _recv_batch(self, batch: int, out: EnvRows) -> None:
        vector = self._vectors[batch]
        observations, rewards, terminations, truncations, info = vector.step(self._actions[batch])
        out.observations[:] = observations
        out.rewards[:] = rewards
        out.terminations[:] = terminations
        out.truncations[:] = truncations
        ended = np.logical_or(terminations, truncations, out=out.game_over)
        # `.nonzero()`: a fifth of `np.flatnonzero`'s and `.any()`'s cost, whose Python wrappers
        # dominate small arrays
        rows = ended.nonzero()[0]
        if rows.size:
            if self._same_step:
                out.final_observations[rows] = np.stack(info["final_obs"][rows])
            else:  # a masked copy: half the cost of indexing both sides by the mask
                np.copyto(
                    out.final_observations, observations, where=ended.reshape(self._row_mask_shape)
                )
            self._reset_rows(vector, ended, rows, out.observations)

    def _capture_batch(self, batch: int) -> Any:
        return capture_env_state(self._vectors[batch])

    def _restore_envs(self, snapshots: list[Any]) -> None:
        for vector, snapshot in zip(self._vectors, snapshots, strict=True):
            restore_env_state(vector, snapshot)

    def close(self) -> None:
        for vector in self._vectors:
            vector.close()
