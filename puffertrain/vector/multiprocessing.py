"""Multiprocessing backend: worker processes each step several envs, in shared memory, while
the trainer's process steps a share of its own.

Observations, rewards, terminations, truncations, game-over flags and actions live in shared
arrays that workers write in place. Each step the trainer raises one semaphore per worker and
waits on one per worker: no array is pickled. Episode scores are kept in the trainer's process
from the shared rewards, so no per-step info travels. Rare control messages (an env's
traceback, env-state snapshots for checkpoints) use a pipe.

Workers ignore SIGINT (the trainer decides when to stop) and exit when the trainer's process is
gone; the trainer checks that they are alive while it waits, so a killed worker is reported
within half a second instead of hanging the run.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

import gymnasium as gym
import numpy as np

from puffertrain.envs import EnvFactory, capture_env_state, restore_env_state
from puffertrain.envs.flatten import policy_observation_space
from puffertrain.errors import UserError
from puffertrain.vector.base import (
    EnvError,
    EnvRows,
    EpisodeTracker,
    StepResult,
    VectorEnv,
    build_envs,
    reset_envs,
    step_envs,
)

_STEP, _RESET, _CAPTURE, _RESTORE, _CLOSE = range(5)
_POLL_S = 0.5


def _layout(
    num_envs: int, num_workers: int, obs_space: gym.spaces.Box, action_sample: np.ndarray
) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Name → (shape, dtype) of every shared array."""
    obs = ((num_envs, *obs_space.shape), np.dtype(obs_space.dtype))
    return {
        "observations": obs,
        "final_observations": obs,
        "rewards": ((num_envs,), np.dtype(np.float32)),
        "terminations": ((num_envs,), np.dtype(np.bool_)),
        "truncations": ((num_envs,), np.dtype(np.bool_)),
        "game_over": ((num_envs,), np.dtype(np.bool_)),
        "actions": ((num_envs, *action_sample.shape), action_sample.dtype),
        "seeds": ((num_envs,), np.dtype(np.int64)),
        "commands": ((num_workers,), np.dtype(np.int64)),
        "failed": ((num_workers,), np.dtype(np.bool_)),
    }


def _views(buffers: dict[str, Any], layout: dict) -> dict[str, np.ndarray]:
    return {
        name: np.frombuffer(buffers[name], dtype=dtype, count=int(np.prod(shape))).reshape(shape)
        for name, (shape, dtype) in layout.items()
    }


def _rows(views: dict[str, np.ndarray], rows: slice) -> EnvRows:
    return EnvRows(
        observations=views["observations"][rows],
        final_observations=views["final_observations"][rows],
        rewards=views["rewards"][rows],
        terminations=views["terminations"][rows],
        truncations=views["truncations"][rows],
        game_over=views["game_over"][rows],
    )


def _worker(
    worker: int,
    first: int,
    factories: Sequence[EnvFactory],
    layout: dict,
    buffers: dict[str, Any],
    go: Any,
    done: Any,
    pipe: Connection,
    parent_pid: int,
) -> None:
    """Build this worker's envs, then run commands until told to close or orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    views = _views(buffers, layout)
    try:
        envs = build_envs(factories, first)
    except EnvError as error:
        pipe.send(str(error))
        return
    rows = slice(first, first + len(envs))
    env_rows, actions, seeds = _rows(views, rows), views["actions"][rows], views["seeds"][rows]
    while True:
        while not go.acquire(timeout=_POLL_S):
            if os.getppid() != parent_pid:
                return
        command = views["commands"][worker]
        try:
            if command == _STEP:
                step_envs(envs, actions, env_rows, first)
            elif command == _RESET:
                reset_envs(envs, seeds, env_rows.observations)
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
            done.release()


def default_num_workers(num_envs: int) -> int:
    """Worker processes so that they and the trainer's process use one core each, lowered
    until the envs split evenly over them all (at least one worker)."""
    lanes = min(os.cpu_count() or 1, num_envs)
    while num_envs % lanes:
        lanes -= 1
    return max(1, lanes - 1)


class MultiprocessingVectorEnv(VectorEnv):
    """``num_envs`` envs split evenly over the trainer's process and ``num_workers`` worker
    processes, stepped in lockstep.

    The trainer's process steps its own share while the workers step theirs, instead of
    waiting idle: on 2 cores, one worker and the trainer each take half of the envs.
    """

    name = "multiprocessing"

    def __init__(self, factories: Sequence[EnvFactory], num_workers: int = 0) -> None:
        num_envs = len(factories)
        num_workers = num_workers or default_num_workers(num_envs)
        if num_envs % (num_workers + 1):
            raise UserError(
                f"--num-envs {num_envs} must split evenly over the {num_workers} worker(s) and "
                "the trainer's process (a multiple of num-workers + 1)"
            )
        self._per_lane = num_envs // (num_workers + 1)
        self._local_envs = build_envs(factories[: self._per_lane], first=0)
        self.single_observation_space = self._local_envs[0].observation_space
        self.single_action_space = self._local_envs[0].action_space
        self.policy_observation_space = policy_observation_space(self._local_envs[0])
        if not isinstance(self.single_observation_space, gym.spaces.Box):
            raise UserError(
                "the multiprocessing backend needs a Box observation space, got "
                f"{self.single_observation_space}"
            )
        self.num_envs, self.num_workers = num_envs, num_workers
        layout = _layout(
            num_envs,
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
        self._rows = _rows(self._views, slice(None))
        self._local_rows = _rows(self._views, slice(0, self._per_lane))
        self.observations = self._rows.observations
        self.tracker = EpisodeTracker(num_envs)
        self._go = [context.Semaphore(0) for _ in range(num_workers)]
        self._done = [context.Semaphore(0) for _ in range(num_workers)]
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
                    self._done[worker],
                    child_end,
                    os.getpid(),
                ),
                daemon=True,
                name=f"puffertrain-env-worker-{worker}",
            )
            process.start()
            child_end.close()
            self._pipes.append(parent_end)
            self._processes.append(process)

    def _first_env(self, worker: int) -> int:
        return (worker + 1) * self._per_lane

    def _send(self, command: int, payloads: Sequence[Any] | None = None) -> None:
        self._views["commands"][:] = command
        for worker, go in enumerate(self._go):
            if payloads is not None:
                self._pipes[worker].send(payloads[worker])
            go.release()

    def _wait(self) -> None:
        """Wait for every worker; raise ``EnvError`` if an env raised or a worker died."""
        for worker, done in enumerate(self._done):
            while not done.acquire(timeout=_POLL_S):
                if not self._processes[worker].is_alive():
                    code = self._processes[worker].exitcode
                    first = self._first_env(worker)
                    reason = self._last_words(worker) or f"died with exit code {code}"
                    self.close()
                    raise EnvError(
                        f"env worker {worker} (envs {first}-{first + self._per_lane - 1}): {reason}"
                    )
        failed = np.flatnonzero(self._views["failed"])
        if failed.size:
            message = self._pipes[failed[0]].recv()
            self.close()
            raise EnvError(message)

    def _local(self, work: Any) -> None:
        """Run this process's share while the workers run theirs, then wait for them."""
        try:
            work()
        finally:
            self._wait()

    def _last_words(self, worker: int) -> str | None:
        """What a dead worker sent before it exited (why its envs failed to build), if anything."""
        pipe = self._pipes[worker]
        try:
            return pipe.recv() if pipe.poll() else None
        except (EOFError, OSError):  # killed: the pipe just closed
            return None

    def reset(self, seed: int) -> np.ndarray:
        seeds = self._views["seeds"]
        seeds[:] = np.arange(seed, seed + self.num_envs)
        self._send(_RESET)
        self._local(
            lambda: reset_envs(
                self._local_envs, seeds[: self._per_lane], self._local_rows.observations
            )
        )
        self.tracker = EpisodeTracker(self.num_envs)
        return self.observations

    def step(self, actions: np.ndarray) -> StepResult:
        shared_actions = self._views["actions"]
        shared_actions[:] = actions.reshape(shared_actions.shape)
        self._send(_STEP)
        self._local(
            lambda: step_envs(
                self._local_envs, shared_actions[: self._per_lane], self._local_rows, 0
            )
        )
        return self._step_result(self._rows)

    def state_dict(self) -> dict[str, Any]:
        self._send(_CAPTURE)
        snapshots = [capture_env_state(env) for env in self._local_envs]
        snapshots += [snapshot for pipe in self._pipes for snapshot in pipe.recv()]
        self._wait()
        return self._engine_state(snapshots)

    def _restore_envs(self, snapshots: list[Any]) -> None:
        size = self._per_lane
        self._send(
            _RESTORE, [snapshots[(w + 1) * size : (w + 2) * size] for w in range(self.num_workers)]
        )
        for env, snapshot in zip(self._local_envs, snapshots[:size], strict=True):
            restore_env_state(env, snapshot)
        self._wait()

    def close(self) -> None:
        """Stop every worker: ask, then terminate, then kill; never leave an orphan."""
        if not self._processes:
            return
        self._views["commands"][:] = _CLOSE
        for go in self._go:
            go.release()
        for process in self._processes:
            process.join(timeout=1.0)
            if process.is_alive():
                process.terminate()
                process.join(timeout=1.0)
            if process.is_alive():
                process.kill()
                process.join()
        self._processes = []
        for env in self._local_envs:
            env.close()
