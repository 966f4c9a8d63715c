"""Serial backend: every env stepped in turn in this process."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from puffertrain.engine.base import Engine, StepResult, env_groups
from puffertrain.engine.env_rows import EnvRows, agents_per_env, build_envs, reset_envs, step_envs
from puffertrain.engine.episodes import EpisodeTracker
from puffertrain.envs import EnvFactory, capture_env_state, restore_env_state
from puffertrain.envs.flatten import policy_observation_space
from puffertrain.envs.masks import action_mask_size


class SerialEngine(Engine):
    """Steps a list of gymnasium envs one after another, writing into preallocated arrays.

    With ``batch_size`` below the number of envs it is the reference for async batches:
    ``send`` queues groups of ``batch_size`` envs and each ``recv`` steps the oldest one
    (nothing overlaps). ``batch_size`` counts envs; a multi-agent env fills a block of rows,
    one per agent.
    """

    name = "serial"
    env_threads = 0

    def __init__(self, factories: Sequence[EnvFactory], batch_size: int = 0) -> None:
        self.envs = build_envs(factories, first=0)
        self.agents_per_env = agents_per_env(self.envs)
        self.agent_names = getattr(self.envs[0], "agent_names", ())
        self.num_rows = len(self.envs) * self.agents_per_env
        self.batch_size = self.group_size = (batch_size or len(self.envs)) * self.agents_per_env
        self.single_observation_space = self.envs[0].observation_space
        self.single_action_space = self.envs[0].action_space
        self.policy_observation_space = policy_observation_space(self.envs[0])
        self.rows = EnvRows.allocate(
            self.num_rows, self.single_observation_space, action_mask_size(self.envs[0])
        )
        self.observations, self.alive = self.rows.observations, self.rows.alive
        self.action_masks = self.rows.action_masks
        self.tracker = EpisodeTracker(self.num_rows, self.agent_names)
        self._sent: deque[tuple[int, np.ndarray]] = deque()
        # each group's rows as views and its row ids, built once: selecting them costs more
        # than a small env's step (the arrays are written in place, never replaced)
        firsts = range(0, self.num_rows, self.group_size)
        self._group_rows = [
            self.rows.select(slice(first, first + self.group_size)) for first in firsts
        ]
        self._group_row_ids = [np.arange(first, first + self.group_size) for first in firsts]

    def reset(self, seed: int) -> np.ndarray:
        self.tracker = EpisodeTracker(self.num_rows, self.agent_names)
        self._sent.clear()
        reset_envs(self.envs, range(seed, seed + len(self.envs)), self.rows)
        return self.observations

    def send(self, actions: np.ndarray, row_ids: np.ndarray) -> None:
        size = self.group_size
        for index, group in enumerate(env_groups(row_ids, size)):
            self._sent.append((int(group), actions[index * size : (index + 1) * size].copy()))

    def recv(self) -> StepResult:
        group, actions = self._sent.popleft()
        first = group * self.group_size
        rows = slice(first, first + self.group_size)
        group_rows = self._group_rows[group]
        agents = self.agents_per_env
        step_envs(
            self.envs[first // agents : rows.stop // agents], actions, group_rows, first // agents
        )
        return self._step_result(self._group_row_ids[group], group_rows, rows)

    def state_dict(self) -> dict[str, Any]:
        return self._engine_state([capture_env_state(env) for env in self.envs])

    def _restore_envs(self, snapshots: list[Any]) -> None:
        for env, snapshot in zip(self.envs, snapshots, strict=True):
            restore_env_state(env, snapshot)

    def close(self) -> None:
        for env in self.envs:
            env.close()
