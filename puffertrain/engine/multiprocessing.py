"""Multiprocessing backend: worker processes each step several envs, in shared memory.

Observations, rewards, terminations, truncations, game-over flags and actions live in shared
arrays that workers write in place. To step, the trainer bumps a worker's command counter and
raises its ``go`` semaphore; the worker steps its envs, sets its ``finished`` flag and raises the
one ``ready`` semaphore the trainer waits on: no array is pickled, and the trainer learns which
workers are done in the order they finish. Episode scores are kept in the trainer's process
from the shared rewards, so no per-step info travels. Rare control messages (an env's
traceback, env-state snapshots for checkpoints) use a pipe.

Synchronous (``batch_size == num_envs``): the trainer's process steps a share of the envs itself
while the workers step theirs, and both sides spin briefly on the shared flags before sleeping
on a semaphore, since the other side is usually microseconds away. Async batches: the workers
own every env, ``recv`` hands over whichever workers finish first, and nobody spins (there are
more processes than cores to share).

Workers ignore SIGINT and SIGTERM (a signal to the whole run reaches them too; the trainer
decides when to stop, checkpoints, and closes them, killing any that do not exit) and exit when
the trainer's process is gone; the trainer checks that they are alive while it waits, so a
killed worker is reported within half a second instead of hanging the run. An engine still open
when the interpreter exits is closed then: multiprocessing's own exit step only sends SIGTERM
to the workers and would wait on them forever.
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import fields
from multiprocessing.connection import Connection
from typing import Any

import gymnasium as gym
import numpy as np

from puffertrain.distributed import process_cores
from puffertrain.envs import EnvFactory, capture_env_state, restore_env_state
from puffertrain.envs.flatten import policy_observation_space
from puffertrain.errors import UserError
from puffertrain.vector.base import (
    EnvError,
    EnvRows,
    EpisodeTracker,
    StepResult,
    VectorEnv,
    agents_per_env,
    as_rows,
    build_envs,
    env_groups,
    group_env_ids,
    reset_envs,
    step_envs,
)

_STEP, _RESET, _CAPTURE, _RESTORE, _CLOSE = range(5)
_POLL_S = 0.5
# Checks of a shared flag before sleeping on a semaphore in synchronous mode (~0.2 µs each):
# measured with `bench` on CartPole-v1 (64 envs), spinning took env-only SPS from ~190k to ~230k.
_SPINS = 2000


def _layout(
    num_envs: int,
    num_rows: int,
    num_workers: int,
    obs_space: gym.spaces.Box,
    action_sample: np.ndarray,
) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Name → (shape, dtype) of every shared array (``num_rows``: envs × agents per env)."""
    obs = ((num_rows, *obs_space.shape), np.dtype(obs_space.dtype))
    return {
        "observations": obs,
        "final_observations": obs,
        "rewards": ((num_rows,), np.dtype(np.float32)),
        "terminations": ((num_rows,), np.dtype(np.bool_)),
        "truncations": ((num_rows,), np.dtype(np.bool_)),
        "game_over": ((num_rows,), np.dtype(np.bool_)),
        "alive": ((num_rows,), np.dtype(np.bool_)),
        "actions": ((num_rows, *action_sample.shape), action_sample.dtype),
        "seeds": ((num_envs,), np.dtype(np.int64)),
        "commands": ((num_workers,), np.dtype(np.int64)),
        "sequence": ((num_workers,), np.dtype(np.int64)),
        "finished": ((num_workers,), np.dtype(np.bool_)),
        "failed": ((num_workers,), np.dtype(np.bool_)),
    }


def _views(buffers: dict[str, Any], layout: dict) -> dict[str, np.ndarray]:
    return {
        name: np.frombuffer(buffers[name], dtype=dtype, count=int(np.prod(shape))).reshape(shape)
        for name, (shape, dtype) in layout.items()
    }


def _rows(views: dict[str, np.ndarray], rows: slice) -> EnvRows:
    """The shared arrays' ``rows`` as an :class:`EnvRows` (views, written in place)."""
    return EnvRows(**{field.name: views[field.name][rows] for field in fields(EnvRows)})


def _spin(condition: Callable[[], Any], spins: int) -> None:
    """Busy-wait up to ``spins`` checks of ``condition`` before sleeping on a semaphore: a wait
    that ends within microseconds then skips the sleep and the wake-up."""
    for _ in range(spins):
        if condition():
            return


def _worker(
    worker: int,
    first: int,
    factories: Sequence[EnvFactory],
    layout: dict,
    buffers: dict[str, Any],
    go: Any,
    ready: Any,
    pipe: Connection,
    parent_pid: int,
    spins: int,
) -> None:
    """Build this worker's envs, then run commands until told to close or orphaned."""
    for signum in (signal.SIGINT, signal.SIGTERM):  # sent to the whole group: the trainer
        signal.signal(signum, signal.SIG_IGN)  # saves, then closes us (or kills us after 1 s)
    views = _views(buffers, layout)
    try:
        envs = build_envs(factories, first)
    except EnvError as error:
        pipe.send(str(error))
        return
    agents = agents_per_env(envs)
    rows = slice(first * agents, (first + len(envs)) * agents)
    env_rows, actions = _rows(views, rows), views["actions"][rows]
    seeds = views["seeds"][first : first + len(envs)]
    sequence, seen = views["sequence"], 0
    while True:
        _spin(lambda: sequence[worker] != seen, spins)  # noqa: B023 (read at each call)
        while not go.acquire(timeout=_POLL_S):
            if os.getppid() != parent_pid:
                return
        seen = sequence[worker]
        command = views["commands"][worker]
        try:
            if command == _STEP:
                step_envs(envs, actions, env_rows, first)
            elif command == _RESET:
                reset_envs(envs, seeds, env_rows, first)
            elif command == _CAPTURE:
                pipe.send([capture_env_state(env) for env in envs])
            elif command == _RESTORE:
                for env, snapshot in zip(envs, pipe.recv(), strict=True):
                    restore_env_state(env, snapshot)
            elif command == _CLOSE:
                for env in envs:
                    env.close()
                return
        except EnvError as error:
            views["failed"][worker] = True
            pipe.send(str(error))
        finally:
            views["finished"][worker] = True
            ready.release()


def default_num_workers(num_envs: int, batch_size: int) -> int:
    """Synchronous: workers so that they and the trainer's process use one core each, lowered
    until the envs split evenly over them all (at least one worker). Async batches: one worker
    per batch, so that one batch steps while the policy acts on another."""
    if batch_size < num_envs:
        return num_envs // batch_size
    lanes = min(process_cores(), num_envs)
    while num_envs % lanes:
        lanes -= 1
    return max(1, lanes - 1)


class MultiprocessingVectorEnv(VectorEnv):
    """``num_envs`` envs split evenly over ``num_workers`` worker processes, and in synchronous
    mode over the trainer's process too.

    Synchronous, the trainer's process steps its own share while the workers step theirs,
    instead of waiting idle: on 2 cores, one worker and the trainer each take half of the envs.
    With async batches a group is one worker's envs and a batch is one or more workers.
    ``num_workers`` and ``batch_size`` count envs; a multi-agent env fills one row per agent.
    """

    name = "multiprocessing"

    def __init__(
        self, factories: Sequence[EnvFactory], num_workers: int = 0, batch_size: int = 0
    ) -> None:
        num_envs = len(factories)
        batch_envs = batch_size or num_envs
        synchronous = batch_envs == num_envs
        num_workers = num_workers or default_num_workers(num_envs, batch_envs)
        lanes = num_workers + synchronous
        if num_envs % lanes:
            share = "worker(s) and the trainer's process" if synchronous else "worker(s)"
            raise UserError(
                f"--num-envs {num_envs} must split evenly over the {num_workers} {share}"
            )
        self.num_workers, self._per_lane = num_workers, num_envs // lanes
        if batch_envs % self._per_lane:
            raise UserError(
                f"--env-batch-size {batch_envs} must be a multiple of the "
                f"{self._per_lane} envs each worker steps (num-envs / num-workers)"
            )
        self.env_threads = num_workers
        self._spins = _SPINS if synchronous else 0
        self._local_envs = build_envs(factories[: self._per_lane if synchronous else 1], first=0)
        agents = self.agents_per_env = agents_per_env(self._local_envs)
        self.agent_names = getattr(self._local_envs[0], "agent_names", ())
        self.num_envs, self.batch_size = num_envs * agents, batch_envs * agents
        self.group_size = self.num_envs if synchronous else self._per_lane * agents
        self.single_observation_space = self._local_envs[0].observation_space
        self.single_action_space = self._local_envs[0].action_space
        self.policy_observation_space = policy_observation_space(self._local_envs[0])
        if not synchronous:  # it only told us the spaces: the workers own every env
            self._local_envs.pop().close()
        if not isinstance(self.single_observation_space, gym.spaces.Box):
            raise UserError(
                "the multiprocessing backend needs a Box observation space, got "
                f"{self.single_observation_space}"
            )
        layout = _layout(
            num_envs,
            self.num_envs,
            num_workers,
            self.single_observation_space,
            np.asarray(self.single_action_space.sample()),
        )
        context = mp.get_context("spawn")
        buffers = {
            name: context.RawArray("b", max(1, int(np.prod(shape)) * dtype.itemsize))
            for name, (shape, dtype) in layout.items()
        }
        self._views = _views(buffers, layout)
        self._views["alive"][:] = True  # single-agent envs never write it
        self._rows = _rows(self._views, slice(None))
        self._local = len(self._local_envs)
        self._local_rows = _rows(self._views, slice(0, self._local * agents))
        self.observations, self.alive = self._rows.observations, self._rows.alive
        self.tracker = EpisodeTracker(self.num_envs, self.agent_names)
        self._go = [context.Semaphore(0) for _ in range(num_workers)]
        self._ready = context.Semaphore(0)
        self._busy: list[int] = []  # in the order they were sent
        self._checked_at = time.monotonic()
        self._local_pending = False
        self._pipes: list[Connection] = []
        self._processes: list[Any] = []
        for worker in range(num_workers):
            first = self._first_env(worker)
            parent_end, child_end = context.Pipe()
            process = context.Process(
                target=_worker,
                args=(
                    worker,
                    first,
                    list(factories[first : first + self._per_lane]),
                    layout,
                    buffers,
                    self._go[worker],
                    self._ready,
                    child_end,
                    os.getpid(),
                    self._spins,
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
        return self._local + worker * self._per_lane

    def _command(self, command: int, workers: Sequence[int], payloads: Sequence[Any] = ()) -> None:
        """Tell ``workers`` to run ``command`` (with a pipe payload each, if given)."""
        for index, worker in enumerate(workers):
            self._views["commands"][worker] = command
            self._views["sequence"][worker] += 1
            if payloads:
                self._pipes[worker].send(payloads[index])
            self._busy.append(worker)
            self._go[worker].release()

    def _collect(self, count: int) -> list[int]:
        """Wait until ``count`` busy workers are done; return them in env order.

        Raises ``EnvError`` (after closing every worker) if an env raised or a worker died.
        """
        finished_flags = self._views["finished"]
        finished: list[int] = []
        if time.monotonic() - self._checked_at > _POLL_S:  # others may keep the tokens coming
            self._check_alive()
        while len(finished) < count:
            _spin(finished_flags.any, self._spins)
            while not self._ready.acquire(timeout=_POLL_S):
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
                    f"env worker {worker} (envs {first}-{first + self._per_lane - 1}): {reason}"
                )

    def _everyone(
        self, command: int, local_work: Callable[[], Any], payloads: Sequence[Any] = ()
    ) -> None:
        """Run ``command`` on every worker and ``local_work`` here meanwhile; wait for all."""
        self._command(command, range(self.num_workers), payloads)
        try:
            local_work()
        finally:
            self._collect(len(self._busy))

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
        self._everyone(_RESET, lambda: reset_envs(self._local_envs, local_seeds, local_rows))
        self.tracker = EpisodeTracker(self.num_envs, self.agent_names)
        return self.observations

    def send(self, actions: np.ndarray, env_ids: np.ndarray) -> None:
        shared_actions = self._views["actions"]
        shared_actions[env_ids] = actions.reshape((len(env_ids), *shared_actions.shape[1:]))
        groups = env_groups(env_ids, self.group_size)
        if self._local:  # synchronous: the one group is every env
            self._command(_STEP, range(self.num_workers))
            self._local_pending = True
        else:
            self._command(_STEP, groups.tolist())

    def recv(self) -> StepResult:
        if self._local_pending:
            self._local_pending = False
            actions = self._views["actions"][: self._local * self.agents_per_env]
            try:
                step_envs(self._local_envs, actions, self._local_rows, 0)
            finally:
                self._collect(self.num_workers)
            return self._step_result(np.arange(self.num_envs), self._rows)
        workers = self._collect(min(self.batch_size // self.group_size, len(self._busy)))
        env_ids = group_env_ids(workers, self.group_size)
        return self._step_result(env_ids, self._rows.select(as_rows(env_ids)))

    def state_dict(self) -> dict[str, Any]:
        self._command(_CAPTURE, range(self.num_workers))
        snapshots = [capture_env_state(env) for env in self._local_envs]
        snapshots += [snapshot for pipe in self._pipes for snapshot in pipe.recv()]
        self._collect(len(self._busy))
        return self._engine_state(snapshots)

    def _restore_envs(self, snapshots: list[Any]) -> None:
        local, size = self._local, self._per_lane
        payloads = [
            snapshots[local + w * size : local + (w + 1) * size] for w in range(self.num_workers)
        ]

        def restore_local() -> None:
            for env, snapshot in zip(self._local_envs, snapshots[:local], strict=True):
                restore_env_state(env, snapshot)

        self._everyone(_RESTORE, restore_local, payloads)

    def close(self) -> None:
        """Stop every worker: ask, then kill (they ignore SIGTERM); never leave an orphan."""
        if not self._processes:
            return
        atexit.unregister(self.close)
        self._views["commands"][:] = _CLOSE
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
