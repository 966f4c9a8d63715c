"""What runs inside an env worker process, and the shared arrays it writes its steps into.

A worker builds its envs, then waits for commands: it spins briefly on its command counter
(when asked to, and less when spinning does not pay), then sleeps on its ``go`` semaphore; it
runs the command, sets its ``finished`` flag and raises the ``ready`` semaphore. It ignores
SIGINT and SIGTERM (a signal to the whole run reaches it too; the trainer decides when to stop)
and exits when its parent is gone.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import fields
from multiprocessing.connection import Connection
from typing import Any

import gymnasium as gym
import numpy as np

from puffertrain.engine.base import EnvError
from puffertrain.engine.env_rows import (
    EnvRows,
    agents_per_env,
    build_envs,
    reset_envs,
    step_envs,
)
from puffertrain.envs import EnvFactory, capture_env_state, restore_env_state

STEP, RESET, CAPTURE, RESTORE, CLOSE = range(5)
POLL_S = 0.5

ArraySpecs = dict[str, tuple[tuple[int, ...], np.dtype]]


def shared_array_specs(
    num_envs: int,
    num_rows: int,
    num_workers: int,
    obs_space: gym.spaces.Box,
    action_sample: np.ndarray,
    mask_size: int = 0,
) -> ArraySpecs:
    """Name → (shape, dtype) of every shared array (``num_rows``: envs × agents per env;
    ``mask_size``: entries of each row's action mask, 0 for an env without masks)."""
    obs = ((num_rows, *obs_space.shape), np.dtype(obs_space.dtype))
    return {
        "observations": obs,
        "final_observations": obs,
        "rewards": ((num_rows,), np.dtype(np.float32)),
        "terminations": ((num_rows,), np.dtype(np.bool_)),
        "truncations": ((num_rows,), np.dtype(np.bool_)),
        "game_over": ((num_rows,), np.dtype(np.bool_)),
        "alive": ((num_rows,), np.dtype(np.bool_)),
        "action_masks": ((num_rows, mask_size), np.dtype(np.bool_)),
        "actions": ((num_rows, *action_sample.shape), action_sample.dtype),
        "seeds": ((num_envs,), np.dtype(np.int64)),
        "commands": ((num_workers,), np.dtype(np.int64)),
        "sequence": ((num_workers,), np.dtype(np.int64)),
        "finished": ((num_workers,), np.dtype(np.bool_)),
        "failed": ((num_workers,), np.dtype(np.bool_)),
    }


def array_views(buffers: dict[str, Any], specs: ArraySpecs) -> dict[str, np.ndarray]:
    return {
        name: np.frombuffer(buffers[name], dtype=dtype, count=int(np.prod(shape))).reshape(shape)
        for name, (shape, dtype) in specs.items()
    }


def rows_of(views: dict[str, np.ndarray], rows: slice) -> EnvRows:
    """The shared arrays' ``rows`` as an :class:`EnvRows` (views, written in place)."""
    return EnvRows(**{field.name: views[field.name][rows] for field in fields(EnvRows)})


class Spinner:
    """Busy-waits on a condition for up to ``limit`` checks before the caller sleeps on a
    semaphore: a wait that ends within microseconds then skips the sleep and the wake-up.

    The spin adapts: after a wait that the spin did not see end, the next spin is half as long
    (down to a few checks), after one it saw end, twice as long (up to ``limit``). A partner
    that is slow, or that shares its core with other work, then stops costing this side a
    core it spins on. ``limit`` 0 never spins.
    """

    FLOOR = 16

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.spins = limit

    def wait(self, condition: Callable[[], Any]) -> None:
        for _ in range(self.spins):
            if condition():
                self.spins = min(self.limit, self.spins * 2)
                return
        self.spins = min(self.limit, max(self.FLOOR, self.spins // 2))


def worker_main(
    worker: int,
    first: int,
    factories: Sequence[EnvFactory],
    specs: ArraySpecs,
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
    views = array_views(buffers, specs)
    try:
        envs = build_envs(factories, first)
    except EnvError as error:
        pipe.send(str(error))
        return
    agents = agents_per_env(envs)
    rows = slice(first * agents, (first + len(envs)) * agents)
    env_rows, actions = rows_of(views, rows), views["actions"][rows]
    seeds = views["seeds"][first : first + len(envs)]
    sequence, seen = views["sequence"], 0
    spinner = Spinner(spins)
    while True:
        spinner.wait(lambda: sequence[worker] != seen)  # noqa: B023 (read at each call)
        while not go.acquire(timeout=POLL_S):
            if os.getppid() != parent_pid:
                return
        seen = sequence[worker]
        command = views["commands"][worker]
        try:
            if command == STEP:
                step_envs(envs, actions, env_rows, first)
            elif command == RESET:
                reset_envs(envs, seeds, env_rows, first)
            elif command == CAPTURE:
                pipe.send([capture_env_state(env) for env in envs])
            elif command == RESTORE:
                for env, snapshot in zip(envs, pipe.recv(), strict=True):
                    restore_env_state(env, snapshot)
            elif command == CLOSE:
                for env in envs:
                    env.close()
                return
        except EnvError as error:
            views["failed"][worker] = True
            pipe.send(str(error))
        finally:
            views["finished"][worker] = True
            ready.release()
