"""The backend choice: which engine ``--vec`` means for an env, and building it."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any, Protocol

from puffertrain.config import parse_kwargs
from puffertrain.distributed import process_cores
from puffertrain.engine.async_batches import AsyncWorkers
from puffertrain.engine.base import Engine
from puffertrain.engine.env_rows import EnvRows, agents_per_env, build_envs, reset_envs, step_envs
from puffertrain.engine.envpool import EnvPoolEngine
from puffertrain.engine.gym_vector import GymVectorEngine, has_vector_entry_point
from puffertrain.engine.lockstep import LockstepWorkers
from puffertrain.engine.native import NativeAtariEngine
from puffertrain.engine.serial import SerialEngine
from puffertrain.engine.workers import WorkerEngine
from puffertrain.envs import EnvFactory, is_atari
from puffertrain.envs.masks import action_mask_size, random_valid_actions
from puffertrain.envs.recipe import env_recipe
from puffertrain.errors import UserError

# Wall time one lockstep round trip to a worker costs the trainer (semaphores both ways), as
# experiments/worker_round_trip.py measures it; workers pay only when the env work they take
# off this process is several times larger.
WORKER_ROUND_TRIP_S = 65e-6
# Envs from which an id's own vector env steps them (below: single envs in this process). A
# numpy vector env pays a fixed cost per call, whatever its size, that single envs do not:
# CartPole's overtook the serial engine between 6 and 12 envs (experiments/RESULTS.md, "Few
# envs: single envs beat the vector env"). The classic-control preset's 8 CartPole envs stay on it.
VECTOR_ENV_MIN_ENVS = 8


def _env_step_seconds(factory: EnvFactory, steps: int = 200, budget_s: float = 0.5) -> float:
    """Median wall time of one env step (all its agents) with random actions, valid ones for a
    masked env (bounded by ``budget_s``). The median, not the mean: on a shared machine a step
    that another process preempts (a time slice is milliseconds, a cheap step microseconds)
    would otherwise count the other process's work as the env's; under two learning runs the
    mean made MountainCar's 8 envs look worth worker processes."""
    envs = build_envs([factory], first=0)
    rows = EnvRows.allocate(
        agents_per_env(envs), envs[0].observation_space, action_mask_size(envs[0])
    )
    reset_envs(envs, [0], rows)
    action_space = envs[0].action_space
    start = time.perf_counter()
    seconds: list[float] = []
    while len(seconds) < steps and time.perf_counter() - start < budget_s:
        actions = random_valid_actions(action_space, rows.action_masks)
        before = time.perf_counter()
        step_envs(envs, actions, rows, first=0)
        seconds.append(time.perf_counter() - before)
    envs[0].close()
    return statistics.median(seconds)


def _drives_vector_env(env_id: str, env_kwargs: dict[str, Any]) -> bool:
    """Whether puffertrain can drive ``env_id``'s own vector env (it resets ended envs within
    the step, or lets them be reset so)."""
    try:
        GymVectorEngine(env_id, env_kwargs, 1).close()
    except UserError:
        return False
    return True


def choose_backend(
    kind: str,
    env_id: str,
    factory: EnvFactory | None,
    num_envs: int,
    batch_size: int = 0,
    env_kwargs: dict[str, Any] | None = None,
) -> tuple[str, str]:
    """The backend ``--vec kind`` means for this env, and why (logged at start)."""
    atari = is_atari(env_id)
    vector = has_vector_entry_point(env_id)
    if kind == "native" and not (atari or vector):
        raise UserError(
            f"--vec native: '{env_id}' has no vector implementation of its own (ALE ids have "
            "ale-py's; ids registering a gymnasium vector entry point, such as CartPole-v1, "
            "have theirs)"
        )
    if kind != "auto":
        return kind, "asked for"
    if atari:
        return "native", "ALE id: ale-py's C++ vector env"
    # A rule, not a timing: the same command must build the same engine (the engines seed
    # their envs differently). Timed, CartPole's numpy vector env tied single envs spread
    # over 2 cores at 16 envs and beat them 4.9x at 64.
    if vector and num_envs < VECTOR_ENV_MIN_ENVS:
        return "serial", (
            f"{num_envs} env(s): single envs step faster than its own vector env's fixed cost "
            f"per call below {VECTOR_ENV_MIN_ENVS}"
        )
    if vector and _drives_vector_env(env_id, env_kwargs or {}):
        return "native", "its own vector env: all envs in one numpy step"
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


def default_num_workers(num_envs: int, batch_size: int) -> int:
    """Lockstep: workers so that they and the trainer's process use one core each, lowered
    until the envs split evenly over them all (at least one worker). Async batches: one worker
    per batch, so that one batch steps while the policy acts on another."""
    if batch_size < num_envs:
        return num_envs // batch_size
    lanes = min(process_cores(), num_envs)
    while num_envs % lanes:
        lanes -= 1
    return max(1, lanes - 1)


def multiprocessing_engine(
    factories: Sequence[EnvFactory], num_workers: int = 0, batch_size: int = 0
) -> WorkerEngine:
    """Worker processes for ``factories``: lockstep (``batch_size`` 0 or every env), or async
    batches of ``batch_size`` envs; ``num_workers`` 0 picks :func:`default_num_workers`."""
    num_envs = len(factories)
    batch_envs = batch_size or num_envs
    num_workers = num_workers or default_num_workers(num_envs, batch_envs)
    if batch_envs == num_envs:
        return LockstepWorkers(factories, num_workers)
    return AsyncWorkers(factories, num_workers, batch_envs)


class EngineSettings(Protocol):
    """The config fields that choose and size the rollout engine (train and bench share them)."""

    vec: str
    env: str
    num_envs: int
    env_kwargs: str
    num_threads: int
    num_workers: int
    env_batch_size: int


def engine_from(settings: EngineSettings) -> tuple[Engine, str]:
    """:func:`make_engine` for a train or bench config."""
    return make_engine(
        settings.vec,
        settings.env,
        settings.num_envs,
        parse_kwargs(settings.env_kwargs, "--env-kwargs"),
        settings.num_threads,
        settings.num_workers,
        settings.env_batch_size,
    )


def make_engine(
    kind: str,
    env_id: str,
    num_envs: int,
    env_kwargs: dict[str, Any],
    num_threads: int = 0,
    num_workers: int = 0,
    batch_size: int = 0,
) -> tuple[Engine, str]:
    """``num_envs`` copies of the env on the backend ``kind`` resolves to, and the reason for
    that backend; ``batch_size`` envs per ``recv`` (0: all of them, synchronous).

    ALE ids get the standard Atari preprocessing on every backend: natively in C++, or as
    gymnasium wrappers on the serial and multiprocessing backends (the reference path).
    """
    recipe = env_recipe(env_id, env_kwargs)
    if batch_size < 0 or (batch_size and num_envs % batch_size):
        raise UserError(
            f"--env-batch-size {batch_size} must divide --num-envs {num_envs} (0: synchronous)"
        )
    backend, reason = choose_backend(kind, env_id, recipe.factory, num_envs, batch_size, env_kwargs)
    threads = num_threads or process_cores()
    if backend == "native" and recipe.atari is not None:
        return NativeAtariEngine(recipe.atari, num_envs, threads, batch_size), reason
    if backend == "native":
        return GymVectorEngine(env_id, env_kwargs, num_envs, batch_size), reason
    if backend == "envpool":
        return EnvPoolEngine(env_id, env_kwargs, num_envs, threads, batch_size), reason
    factories = [recipe.factory] * num_envs
    if backend == "multiprocessing":
        return multiprocessing_engine(factories, num_workers, batch_size), reason
    return SerialEngine(factories, batch_size), reason
