"""What every engine built on an env's own vector implementation shares: the envs split into
batches of ``batch_size``, each batch one vector env, sent and received in order."""

from __future__ import annotations

from abc import abstractmethod
from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np

from puffertrain.engine.base import Engine, StepResult, env_groups
from puffertrain.engine.env_rows import EnvRows
from puffertrain.engine.episodes import EpisodeTracker


class VectorBatches(Engine):
    """Envs in batches of ``batch_size``, batch ``b`` holding rows ``b * batch_size`` on.

    ``send`` hands each batch its actions; ``recv`` takes the oldest sent batch back (batches
    return in the order they were sent). Batch ``b`` is reset with seed ``seed + b *
    batch_size``: its vector env seeds its own envs from it. Subclasses say how one batch
    resets, takes actions and returns its step (with same-step autoreset); a vector env that
    cannot be captured makes resume restart the episodes.
    """

    def __init__(
        self,
        num_envs: int,
        batch_size: int,
        observation_space: gym.spaces.Space,
        action_space: gym.spaces.Space,
    ) -> None:
        self.num_rows = num_envs
        self.batch_size = self.group_size = batch_size or num_envs
        self.num_batches = num_envs // self.batch_size
        self.single_observation_space = self.policy_observation_space = observation_space
        self.single_action_space = action_space
        self.rows = EnvRows.allocate(num_envs, observation_space)
        self.observations, self.alive = self.rows.observations, self.rows.alive
        self.action_masks = self.rows.action_masks  # native vector envs give no masks
        self.tracker = EpisodeTracker(num_envs)
        self._sent: deque[int] = deque()
        # each batch's rows (views) and row ids, made once: recv returns them at every step
        self._batch_rows = [self.rows.select(self.batch_rows(b)) for b in range(self.num_batches)]
        self._batch_row_ids = [
            np.arange(b * self.batch_size, (b + 1) * self.batch_size)
            for b in range(self.num_batches)
        ]
        for row_ids in self._batch_row_ids:
            row_ids.flags.writeable = False
        self._batch_slices = [self.batch_rows(b) for b in range(self.num_batches)]

    def batch_rows(self, batch: int) -> slice:
        """The rows of batch ``batch``."""
        return slice(batch * self.batch_size, (batch + 1) * self.batch_size)

    def reset(self, seed: int) -> np.ndarray:
        self._sent.clear()
        for batch in range(self.num_batches):
            self._reset_batch(batch, seed + batch * self.batch_size, self._batch_rows[batch])
        self.tracker = EpisodeTracker(self.num_rows)
        return self.observations

    def send(self, actions: np.ndarray, row_ids: np.ndarray) -> None:
        size = self.batch_size
        # a batch's own row ids, as recv returned them (read-only), are whole by construction
        own = [b for b, ids in enumerate(self._batch_row_ids) if row_ids is ids]
        for index, batch in enumerate(own or env_groups(row_ids, size)):
            self._send_batch(int(batch), actions[index * size : (index + 1) * size])
            self._sent.append(int(batch))

    def recv(self) -> StepResult:
        batch = self._sent.popleft()
        out = self._batch_rows[batch]
        self._recv_batch(batch, out)
        return self._step_result(self._batch_row_ids[batch], out, self._batch_slices[batch])

    def state_dict(self) -> dict[str, Any]:
        snapshots = [self._capture_batch(batch) for batch in range(self.num_batches)]
        if any(snapshot is None for snapshot in snapshots):
            return {"envs": None}  # resume restarts the episodes: nothing else to keep
        return self._engine_state(snapshots)

    def _capture_batch(self, batch: int) -> Any:
        """Batch ``batch``'s vector env as plain data, or None where it cannot be captured (the
        default: resume restarts the episodes)."""
        return None

    @abstractmethod
    def _reset_batch(self, batch: int, seed: int, out: EnvRows) -> None:
        """Reset batch ``batch``'s envs from ``seed``; write their observations into ``out``."""

    @abstractmethod
    def _send_batch(self, batch: int, actions: np.ndarray) -> None:
        """Start (or queue) the step of batch ``batch`` with ``actions``, one per env in row
        order."""

    @abstractmethod
    def _recv_batch(self, batch: int, out: EnvRows) -> None:
        """Finish batch ``batch``'s step and write it into ``out`` in row order, with
        same-step autoreset: observations, rewards, terminations, truncations,
        final observations where an episode ended, and ``game_over`` where its score closes."""
