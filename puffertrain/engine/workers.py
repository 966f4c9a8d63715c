"""Worker processes that step envs in shared memory: the layer both multiprocessing engines
(lockstep and async batches) are built on.

Observations, rewards, terminations, truncations, game-over flags, action masks and actions
live in shared arrays that workers write in place. To step, the engine bumps a worker's
command counter and raises its ``go`` semaphore; the worker steps its envs, sets its
``finished`` flag and raises the one ``ready`` semaphore the engine waits on: no array is
pickled, and the engine learns which workers are done in the order they finish. Episode scores
are kept in the engine's process from the shared rewards, so no per-step info travels. Rare
control messages (an env's traceback, env-state snapshots for checkpoints) use a pipe.

Workers ignore SIGINT and SIGTERM (a signal to the whole run reaches them too; the trainer
decides when to stop, checkpoints, and closes them, killing any that do not exit) and exit when
the trainer's process is gone; the engine checks that they are alive while it waits, so a
killed worker is reported within half a second instead of hanging the run. An engine still open
when the interpreter exits is closed then: multiprocessing's own exit step only sends SIGTERM
to the workers and would wait on them forever.
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

import gymnasium as gym
import numpy as np

from puffertrain.engine.base import Engine, EnvError
from puffertrain.engine.env_rows import agents_per_env, build_envs, reset_envs
from puffertrain.engine.episodes import EpisodeTracker
from puffertrain.engine.worker_process import (
    CAPTURE,
    CLOSE,
    POLL_S,
    RESET,
    RESTORE,
    Spinner,
    array_views,
    rows_of,
    shared_array_specs,
    worker_main,
)
from puffertrain.envs import EnvFactory, capture_env_state, restore_env_state
from puffertrain.envs.flatten import policy_observation_space
from puffertrain.envs.masks import action_mask_size
from puffertrain.errors import UserError


class WorkerEngine(Engine):
    """What both multiprocessing engines share: ``num_workers`` processes each stepping
    ``envs_per_worker`` envs in shared arrays, after ``local`` envs this process steps itself.

    ``spins``: how many times a waiting side checks a shared flag, at most, before it sleeps
    on a semaphore (see :class:`~puffertrain.engine.worker_process.Spinner`). ``num_workers``
    and batch sizes count envs; a multi-agent env fills one row per agent.
    """

    name = "multiprocessing"

    def __init__(
        self,
        factories: Sequence[EnvFactory],
        num_workers: int,
        local: int,
        batch_envs: int,
        spins: int,
    ) -> None:
        num_envs = len(factories)
        self.num_workers, self.env_threads = num_workers, num_workers
        self.envs_per_worker = (num_envs - local) // num_workers
        self._spinner = Spinner(spins)
        self._local_envs = build_envs(factories[: max(local, 1)], first=0)
        agents = self.agents_per_env = agents_per_env(self._local_envs)
        self.agent_names = getattr(self._local_envs[0], "agent_names", ())
        self.num_rows, self.batch_size = num_envs * agents, batch_envs * agents
        self.single_observation_space = self._local_envs[0].observation_space
        self.single_action_space = self._local_envs[0].action_space
        self.policy_observation_space = policy_observation_space(self._local_envs[0])
        mask_size = action_mask_size(self._local_envs[0])
        if not local:  # it only told us the spaces: the workers own every env
            self._local_envs.pop().close()
        if not isinstance(self.single_observation_space, gym.spaces.Box):
            raise UserError(
                "the multiprocessing backend needs a Box observation space, got "
                f"{self.single_observation_space}"
            )
        specs = shared_array_specs(
            num_envs,
            self.num_rows,
            num_workers,
            self.single_observation_space,
            np.asarray(self.single_action_space.sample()),
            mask_size,
        )
        context = mp.get_context("spawn")
        buffers = {
            name: context.RawArray("b", max(1, int(np.prod(shape)) * dtype.itemsize))
            for name, (shape, dtype) in specs.items()
        }
        self._views = array_views(buffers, specs)
        self._views["alive"][:] = True  # single-agent envs never write it
        self._rows = rows_of(self._views, slice(None))
        self._local = len(self._local_envs)
        self._local_rows = rows_of(self._views, slice(0, self._local * agents))
        self.observations, self.alive = self._rows.observations, self._rows.alive
        self.action_masks = self._rows.action_masks
        self.tracker = EpisodeTracker(self.num_rows, self.agent_names)
        self._go = [context.Semaphore(0) for _ in range(num_workers)]
        self._ready = context.Semaphore(0)
        self._busy: list[int] = []  # in the order they were sent
        self._checked_at = time.monotonic()
        self._pipes: list[Connection] = []
        self._processes: list[Any] = []
        for worker in range(num_workers):
            first = self._first_env(worker)
            parent_end, child_end = context.Pipe()
            process = context.Process(
                target=worker_main,
                args=(
                    worker,
                    first,
                    list(factories[first : first + self.envs_per_worker]),
                    specs,
                    buffers,
                    self._go[worker],
                    self._ready,
                    child_end,
                    os.getpid(),
                    spins,
                ),
                daemon=True,
                name=f"puffertrain-env-worker-{worker}",
            )
            process.start()
            child_end.close()
            self._pipes.append(parent_end)
            self._processes.append(process)
        atexit.register(self.close)  # runs before multiprocessing's, registered earlier

    def _first_env(self, worker: int) -> int:
        return self._local + worker * self.envs_per_worker

    def _command(self, command: int, workers: Sequence[int], payloads: Sequence[Any] = ()) -> None:
        """Tell ``workers`` to run ``command`` (with a pipe payload each, if given)."""
        for index, worker in enumerate(workers):
            self._views["commands"][worker] = command
            self._views["sequence"][worker] += 1
            if payloads:
                self._pipes[worker].send(payloads[index])
            self._busy.append(worker)
            self._go[worker].release()

    def _wait_for(self, count: int) -> list[int]:
        """Wait until ``count`` busy workers are done; return them in env order.

        Raises ``EnvError`` (after closing every worker) if an env raised or a worker died.
        """
        finished_flags = self._views["finished"]
        finished: list[int] = []
        if time.monotonic() - self._checked_at > POLL_S:  # others may keep the tokens coming
            self._check_alive()
        while len(finished) < count:
            self._spinner.wait(finished_flags.any)
            while not self._ready.acquire(timeout=POLL_S):
                self._check_alive()
            # one token per finished flag (a flag may be seen before its token arrives); the
            # longest-busy finished worker goes first, so none is starved
            for worker in self._busy:
                if finished_flags[worker]:
                    finished_flags[worker] = False
                    self._busy.remove(worker)
                    finished.append(worker)
                    break
        failed = np.flatnonzero(self._views["failed"])
        if failed.size:
            message = self._pipes[failed[0]].recv()
            self.close()
            raise EnvError(message)
        return sorted(finished)

    def _check_alive(self) -> None:
        self._checked_at = time.monotonic()
        for worker in self._busy:
            if not self._processes[worker].is_alive():
                code = self._processes[worker].exitcode
                first = self._first_env(worker)
                reason = self._last_words(worker) or f"died with exit code {code}"
                self.close()
                raise EnvError(
                    f"env worker {worker} (envs {first}-{first + self.envs_per_worker - 1}): "
                    f"{reason}"
                )

    def _everyone(
        self, command: int, local_work: Callable[[], Any], payloads: Sequence[Any] = ()
    ) -> None:
        """Run ``command`` on every worker and ``local_work`` here meanwhile; wait for all."""
        self._command(command, range(self.num_workers), payloads)
        try:
            local_work()
        finally:
            self._wait_for(len(self._busy))

    def _last_words(self, worker: int) -> str | None:
        """What a dead worker sent before it exited (why its envs failed to build), if anything."""
        pipe = self._pipes[worker]
        try:
            return pipe.recv() if pipe.poll() else None
        except (EOFError, OSError):  # killed: the pipe just closed
            return None

    def reset(self, seed: int) -> np.ndarray:
        seeds = self._views["seeds"]
        seeds[:] = np.arange(seed, seed + len(seeds))
        local_seeds, local_rows = seeds[: self._local], self._local_rows
        self._everyone(RESET, lambda: reset_envs(self._local_envs, local_seeds, local_rows))
        self.tracker = EpisodeTracker(self.num_rows, self.agent_names)
        return self.observations

    def state_dict(self) -> dict[str, Any]:
        self._command(CAPTURE, range(self.num_workers))
        snapshots = [capture_env_state(env) for env in self._local_envs]
        snapshots += [snapshot for pipe in self._pipes for snapshot in pipe.recv()]
        self._wait_for(len(self._busy))
        return self._engine_state(snapshots)

    def _restore_envs(self, snapshots: list[Any]) -> None:
        local, size = self._local, self.envs_per_worker
        payloads = [
            snapshots[local + w * size : local + (w + 1) * size] for w in range(self.num_workers)
        ]

        def restore_local() -> None:
            for env, snapshot in zip(self._local_envs, snapshots[:local], strict=True):
                restore_env_state(env, snapshot)

        self._everyone(RESTORE, restore_local, payloads)

    def close(self) -> None:
        """Stop every worker: ask, then kill (they ignore SIGTERM); never leave an orphan."""
        if not self._processes:
            return
        atexit.unregister(self.close)
        self._views["commands"][:] = CLOSE
        self._views["sequence"][:] += 1
        for go in self._go:
            go.release()
        for process in self._processes:
            process.join(timeout=1.0)
            if process.is_alive():
                process.kill()
                process.join()
        self._processes = []
        for env in self._local_envs:
            env.close()
