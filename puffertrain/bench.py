"""``puffertrain bench``: env-only and rollout steps per second of a rollout backend, optionally
side by side with gymnasium's SyncVectorEnv and AsyncVectorEnv on the same env."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import gymnasium as gym
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from puffertrain.config import parse_kwargs, value_problem
from puffertrain.engine import Engine, engine_from
from puffertrain.engine.base import StepResult
from puffertrain.engine.episodes import EpisodeTracker
from puffertrain.envs import env_factory
from puffertrain.envs.masks import random_valid_actions
from puffertrain.envs.recipe import env_recipe
from puffertrain.errors import UserError
from puffertrain.policy_loader import build_policy
from puffertrain.ppo import PolicyAdapter
from puffertrain.ppo.precision import Precision, resolve_precision
from puffertrain.rollout import Rollout


@dataclass
class BenchConfig:
    """Measure env-only SPS (random actions) and rollout SPS (env + policy inference, no
    update): the median over several timed windows."""

    env: str
    """Env id, as for training."""
    vec: Literal["auto", "serial", "multiprocessing", "native", "envpool"] = "auto"
    """Backend to measure."""
    num_envs: int = 8
    """Envs stepped together."""
    num_workers: int = 0
    """Worker processes of the multiprocessing backend (0: one per core)."""
    num_threads: int = 0
    """Threads of the native ALE and envpool backends (0: one per core, shared out over their
    batches)."""
    env_batch_size: int = 0
    """Async batches of this many envs (a divisor of num-envs; 0: synchronous)."""
    seconds: float = 10.0
    """Time spent per measurement, split into --windows windows."""
    windows: int = 5
    """Timed windows per measurement; the median is reported."""
    policy: str = "auto"
    """Policy whose inference the rollout measurement includes."""
    precision: Precision = "fp32"
    """Precision of that inference, as for training (the Atari preset trains with "auto")."""
    env_kwargs: str = ""
    """JSON object of env settings, as for training."""
    compare: bool = False
    """Also measure gymnasium's SyncVectorEnv and AsyncVectorEnv on the same env."""
    concurrent: int = 1
    """Run this many identical benchmarks at once (separate processes) after one alone, and
    report their summed SPS against the one alone: how the engine holds up when the machine
    is shared."""
    output: Path | None = None
    """Where to write the JSON results (default: runs/bench/<env>__<time>.json)."""


RANDOM_ACTION_BATCHES = 64

Advance = Callable[[], int]
"""Moves a measurement on by one batch; returns the env steps it took."""


def _median_sps(advance: Advance, seconds: float, windows: int) -> float:
    for _ in range(3):  # warm up
        advance()
    rates = []
    for _ in range(windows):
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / windows:
            steps += advance()
        rates.append(steps / (time.perf_counter() - start))
    return statistics.median(rates)


def _rollout_sps(rollout: Rollout, config: BenchConfig, random_actions: bool) -> float:
    """SPS of the rollout step as the trainer runs it (each batch that comes back is acted on
    and sent again; synchronous engines return every row at once) inside the trainer's acting
    region: with the policy, or with random actions (env-only)."""
    engine = rollout.engine
    space = gym.vector.utils.batch_space(engine.single_action_space, engine.num_rows)
    space.seed(0)
    # random actions drawn before the clock starts: sampling a batched space costs more than
    # a step of a fast vector env, and is no part of the engine
    actions = [space.sample() for _ in range(RANDOM_ACTION_BATCHES)]
    sent = 0

    def send(row_ids: np.ndarray) -> None:
        nonlocal sent
        if random_actions and engine.action_masks.shape[1]:  # valid ones, as the policy acts
            masks = engine.action_masks[row_ids]
            engine.send(random_valid_actions(engine.single_action_space, masks), row_ids)
        elif random_actions:
            engine.send(actions[sent % RANDOM_ACTION_BATCHES][: len(row_ids)], row_ids)
            sent += 1
        else:
            rollout.send(row_ids)

    def advance() -> int:
        row_ids = rollout.receive().row_ids
        # the trainer takes the finished episodes at every rollout; kept for the whole
        # measurement, they grow and so does each pass of the garbage collector over them
        rollout.take_episodes()
        send(row_ids)
        return len(row_ids)

    with rollout.acting(policy=not random_actions):
        rollout.reset(0)
        send(np.arange(engine.num_rows))
        in_flight = engine.num_rows
        rate = _median_sps(advance, config.seconds, config.windows)
        while in_flight:  # leave nothing in flight for the next measurement
            in_flight -= len(engine.recv().row_ids)
    return rate


class GymnasiumEngine(Engine):
    """A gymnasium vector env behind the engine interface, so that ``--compare`` drives it
    with the very rollout step that drives ours (every env steps at once)."""

    env_threads = 0

    def __init__(self, vector: gym.vector.VectorEnv, name: str) -> None:
        self.vector, self.name = vector, name
        self.num_rows = self.batch_size = self.group_size = vector.num_envs
        self.single_observation_space = self.policy_observation_space = (
            vector.single_observation_space
        )
        self.single_action_space = vector.single_action_space
        space = vector.single_observation_space
        self.observations = np.zeros((self.num_rows, *space.shape), dtype=space.dtype)
        self.alive = np.ones(self.num_rows, dtype=bool)
        self.action_masks = np.zeros((self.num_rows, 0), dtype=bool)  # --compare: no masks
        self.tracker = EpisodeTracker(self.num_rows)
        self._actions: np.ndarray | None = None

    def reset(self, seed: int) -> np.ndarray:
        self.observations[:] = self.vector.reset(seed=seed)[0]
        return self.observations

    def send(self, actions: np.ndarray, row_ids: np.ndarray) -> None:
        self._actions = actions

    def recv(self) -> StepResult:
        obs, rewards, terminations, truncations, _ = self.vector.step(self._actions)
        self.observations[:] = obs
        rows = slice(0, self.num_rows)
        episodes = self.tracker.update(rows, rewards, terminations | truncations)
        return StepResult(
            np.arange(self.num_rows),
            rows,
            obs,
            rewards,
            terminations,
            truncations,
            obs,
            self.alive,
            episodes,
            self.action_masks,
        )

    def state_dict(self) -> dict:
        return {"envs": None}  # benchmarks never checkpoint

    def close(self) -> None:
        self.vector.close()


def bench(config: BenchConfig) -> dict:
    """Run the measurements; print a table; write and return the results."""
    for name, value in vars(config).items():
        problem = value_problem(name, value)
        if problem:
            raise UserError(problem)
    env_factory(config.env)  # a clear error for a bad id
    autocast_dtype, precision = resolve_precision(config.precision, torch.device("cpu"))
    rows = []
    engine, reason = engine_from(config)
    name = f"puffertrain {engine.name}"
    if engine.batch_size < engine.num_rows:
        name += f" (batches of {engine.batch_size // engine.agents_per_env})"
    if config.compare and engine.agent_names:
        engine.close()
        raise UserError("--compare: gymnasium's vector envs cannot run a PettingZoo env")
    if config.compare and engine.action_masks.shape[1]:
        engine.close()
        raise UserError("--compare: gymnasium's vector envs do not read action masks")
    policy = build_policy(
        config.policy,
        engine.policy_observation_space,
        engine.single_action_space,
        agent_names=engine.agent_names,
    )
    adapter = PolicyAdapter(policy, engine.single_action_space, autocast_dtype)
    engines: list[tuple[str, Callable[[], Engine]]] = [(name, lambda: engine)]
    if config.compare:
        factory = env_recipe(config.env, parse_kwargs(config.env_kwargs, "--env-kwargs")).factory
        for label, cls in (
            ("gymnasium SyncVectorEnv", gym.vector.SyncVectorEnv),
            ("gymnasium AsyncVectorEnv", gym.vector.AsyncVectorEnv),
        ):
            vector = partial(cls, [factory] * config.num_envs)  # built when measured
            engines.append(
                (label, lambda vector=vector, label=label: GymnasiumEngine(vector(), label))
            )
    for label, build in engines:
        measured = build()
        try:
            rollout = Rollout(measured, adapter, torch.device("cpu"))
            env_sps = _rollout_sps(rollout, config, random_actions=True)
            rollout_sps = _rollout_sps(rollout, config, random_actions=False)
            rows.append({"engine": label, "env_sps": env_sps, "rollout_sps": rollout_sps})
        finally:
            measured.close()

    baseline = rows[0]["env_sps"]
    table = Table(title=f"{config.env}, {config.num_envs} envs ({reason}); policy in {precision}")
    for column in ("engine", "env-only SPS", "rollout SPS", "env-only vs puffertrain"):
        table.add_column(column, justify="left" if column == "engine" else "right")
    for row in rows:
        table.add_row(
            row["engine"],
            f"{row['env_sps']:,.0f}",
            f"{row['rollout_sps']:,.0f}",
            f"{row['env_sps'] / baseline:.2f}×",
        )
    Console().print(table)

    results = {
        "config": json.loads(json.dumps(asdict(config), default=str)),
        "backend_reason": reason,
        "policy_precision": precision,
        "cpu_count": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "rows": rows,
    }
    write_results(results, config.output, config.env.replace("/", "-"))
    return results


def write_results(results: dict, output: Path | None, name: str) -> None:
    """Write ``results`` as JSON to ``output`` (default ``runs/bench/<name>__<time>.json``)."""
    output = output or Path("runs/bench") / f"{name}__{time.strftime('%Y%m%d-%H%M%S')}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results written to {output}")
