"""Multiprocessing backend, synchronous: every env steps at once, and the trainer's process
steps a share of them itself while the workers step theirs, instead of waiting idle (on 2
cores, one worker and the trainer each take half of the envs)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from puffertrain.engine.base import StepResult
from puffertrain.engine.env_rows import step_envs
from puffertrain.engine.worker_process import STEP
from puffertrain.engine.workers import WorkerEngine
from puffertrain.envs import EnvFactory
from puffertrain.errors import UserError

# Checks of a shared flag before sleeping on a semaphore. In lockstep the other side is usually
# microseconds away, so a short spin skips most sleeps and wake-ups (measured with `bench`).
_SPINS = 2000


class LockstepWorkers(WorkerEngine):
    """``len(factories)`` envs split evenly over ``num_workers`` workers and this process."""

    def __init__(self, factories: Sequence[EnvFactory], num_workers: int) -> None:
        num_envs = len(factories)
        lanes = num_workers + 1
        if num_envs % lanes:
            raise UserError(
                f"--num-envs {num_envs} must split evenly over the {num_workers} worker(s) "
                "and the trainer's process"
            )
        super().__init__(factories, num_workers, num_envs // lanes, num_envs, _SPINS)
        self.group_size = self.num_rows
        self._local_pending = False

    def send(self, actions: np.ndarray, row_ids: np.ndarray) -> None:
        shared_actions = self._views["actions"]
        shared_actions[row_ids] = actions.reshape((len(row_ids), *shared_actions.shape[1:]))
        self._command(STEP, range(self.num_workers))
        self._local_pending = True

    def recv(self) -> StepResult:
        self._local_pending = False
        actions = self._views["actions"][: self._local * self.agents_per_env]
        try:
            step_envs(self._local_envs, actions, self._local_rows, 0)
        finally:
            self._wait_for(self.num_workers)
        return self._step_result(np.arange(self.num_rows), self._rows, slice(0, self.num_rows))
