"""Rollout engine: vectorised env backends behind one interface."""

from __future__ import annotations

import time
from functools import partial
from typing import Any, Protocol

import numpy as np

from puffertrain.config import parse_kwargs
from puffertrain.distributed import process_cores
from puffertrain.envs import EnvFactory, env_factory, is_atari
from puffertrain.envs.atari import atari_settings, make_wrapped_atari
from puffertrain.envs.flatten import with_flat_observations
from puffertrain.errors import UserError
from puffertrain.vector.base import (
    EnvError,
    EnvRows,
    Episode,
    EpisodeTracker,
    StepResult,
    VectorEnv,
    agents_per_env,
    build_envs,
    reset_envs,
    step_envs,
)
from puffertrain.vector.multiprocessing import MultiprocessingVectorEnv
from puffertrain.vector.native import NativeAtariVectorEnv
from puffertrain.vector.serial import SerialVectorEnv

# Wall time one lockstep round trip to a worker costs the trainer (semaphores both ways), ~65 µs
# measured here with experiments/worker_round_trip.py; workers pay only when the env work they
# take off this process is several times larger.
WORKER_ROUND_TRIP_S = 65e-6


def _env_step_seconds(factory: EnvFactory, steps: int = 200, budget_s: float = 0.5) -> float:
    """Mean wall time of one env step (all its agents) with random actions (bounded by
    ``budget_s``)."""
    envs = build_envs([factory], first=0)
    rows = EnvRows.allocate(agents_per_env(envs), envs[0].observation_space)
    reset_envs(envs, [0], rows)
    action_space = envs[0].action_space
    start = time.perf_counter()
    count = 0
    while count < steps and time.perf_counter() - start < budget_s:
        actions = np.stack([action_space.sample() for _ in rows.rewards])
        step_envs(envs, actions, rows, first=0)
        count += 1
    elapsed = time.perf_counter() - start
    envs[0].close()
    return elapsed / count


def choose_backend(
    kind: str, env_id: str, factory: EnvFactory | None, num_envs: int, batch_size: int = 0
) -> tuple[str, str]:
    """The backend ``--vec kind`` means for this env, and why (logged at start)."""
    atari = is_atari(env_id)
    if kind == "native" and not atari:
        raise UserError(f"--vec native runs ALE ids only; '{env_id}' is not one")
    if kind != "auto":
        return kind, "asked for"
    if atari:
        return "native", "ALE id: ale-py's C++ vector env"
    cores = process_cores()
    if cores < 2 or num_envs < 2 or factory is None:
        return "serial", f"{cores} core(s), {num_envs} env(s)"
    if 0 < batch_size < num_envs:
        return "multiprocessing", "async batches overlap env steps with the policy in workers"
    step_s = _env_step_seconds(factory)
    processes = min(cores, num_envs)  # the trainer's process steps a share too
    saved_s = num_envs * step_s * (1 - 1 / processes)
    reason = (
        f"one env step takes {step_s * 1e6:.0f} µs; {processes} processes would save "
        f"{saved_s * 1e6:.0f} µs per step of all envs against a {WORKER_ROUND_TRIP_S * 1e6:.0f} µs "
        "round trip"
    )
    return ("multiprocessing" if saved_s > 3 * WORKER_ROUND_TRIP_S else "serial"), reason


class EngineSettings(Protocol):
    """The config fields that choose and size the rollout engine (train and bench share them)."""

    vec: str
    env: str
    num_envs: int
    env_kwargs: str
    num_threads: int
    num_workers: int
    env_batch_size: int


def engine_from(settings: EngineSettings) -> tuple[VectorEnv, str]:
    """:func:`make_vector_env` for a train or bench config."""
    return make_vector_env(
        settings.vec,
        settings.env,
        settings.num_envs,
        parse_kwargs(settings.env_kwargs),
        settings.num_threads,
        settings.num_workers,
        settings.env_batch_size,
    )


def make_vector_env(
    kind: str,
    env_id: str,
    num_envs: int,
    env_kwargs: dict[str, Any],
    num_threads: int = 0,
    num_workers: int = 0,
    batch_size: int = 0,
) -> tuple[VectorEnv, str]:
    """``num_envs`` copies of the env on the backend ``kind`` resolves to, and the reason for
    that backend; ``batch_size`` envs per ``recv`` (0: all of them, synchronous).

    ALE ids get the standard Atari preprocessing on every backend: natively in C++, or as
    gymnasium wrappers on the serial and multiprocessing backends (the reference path).
    """
    if is_atari(env_id):
        settings = atari_settings(env_id, env_kwargs)
        factory: EnvFactory = partial(make_wrapped_atari, env_id, settings)
    else:
        factory = partial(with_flat_observations, env_factory(env_id, env_kwargs))
    if batch_size < 0 or (batch_size and num_envs % batch_size):
        raise UserError(
            f"--env-batch-size {batch_size} must divide --num-envs {num_envs} (0: synchronous)"
        )
    backend, reason = choose_backend(kind, env_id, factory, num_envs, batch_size)
    if backend == "native":
        threads = num_threads or process_cores()
        return NativeAtariVectorEnv(settings, num_envs, threads, batch_size), reason
    if backend == "multiprocessing":
        return MultiprocessingVectorEnv([factory] * num_envs, num_workers, batch_size), reason
    return SerialVectorEnv([factory] * num_envs, batch_size), reason


__all__ = [
    "EnvError",
    "Episode",
    "EpisodeTracker",
    "MultiprocessingVectorEnv",
    "NativeAtariVectorEnv",
    "SerialVectorEnv",
    "StepResult",
    "VectorEnv",
    "choose_backend",
    "engine_from",
    "make_vector_env",
]
