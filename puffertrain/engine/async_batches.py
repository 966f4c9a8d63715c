"""Multiprocessing backend, async batches: the workers own every env, and ``recv`` hands over
whichever workers finish first while the policy acts on the others. Nobody spins: there are
more processes than cores to share."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from puffertrain.engine.base import StepResult, as_rows, env_groups, group_row_ids
from puffertrain.engine.worker_process import STEP
from puffertrain.engine.workers import WorkerEngine
from puffertrain.envs import EnvFactory
from puffertrain.errors import UserError


class AsyncWorkers(WorkerEngine):
    """``len(factories)`` envs split evenly over ``num_workers`` workers; a group is one
    worker's envs and a batch of ``batch_size`` envs is one or more whole workers."""

    def __init__(self, factories: Sequence[EnvFactory], num_workers: int, batch_size: int) -> None:
        num_envs = len(factories)
        if num_envs % num_workers:
            raise UserError(
                f"--num-envs {num_envs} must split evenly over the {num_workers} worker(s)"
            )
        if batch_size % (num_envs // num_workers):
            raise UserError(
                f"--env-batch-size {batch_size} must be a multiple of the "
                f"{num_envs // num_workers} envs each worker steps (num-envs / num-workers)"
            )
        super().__init__(factories, num_workers, 0, batch_size, spins=0)
        self.group_size = self.envs_per_worker * self.agents_per_env

    def send(self, actions: np.ndarray, row_ids: np.ndarray) -> None:
        shared_actions = self._views["actions"]
        shared_actions[row_ids] = actions.reshape((len(row_ids), *shared_actions.shape[1:]))
        self._command(STEP, [int(group) for group in env_groups(row_ids, self.group_size)])

    def recv(self) -> StepResult:
        workers = self._wait_for(min(self.batch_size // self.group_size, len(self._busy)))
        row_ids = group_row_ids(workers, self.group_size)
        rows = as_rows(row_ids)
        return self._step_result(row_ids, self._rows.select(rows), rows)
