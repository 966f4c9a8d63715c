"""``puffertrain bench``: env-only and rollout steps per second of a rollout backend, optionally
side by side with gymnasium's SyncVectorEnv and AsyncVectorEnv on the same env."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import gymnasium as gym
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from puffertrain.config import parse_kwargs
from puffertrain.envs import EnvFactory, env_factory, is_atari
from puffertrain.envs.atari import atari_settings, make_wrapped_atari
from puffertrain.envs.flatten import with_flat_observations
from puffertrain.errors import UserError
from puffertrain.policy_loader import build_policy
from puffertrain.ppo import Agent, env_actions
from puffertrain.ppo.precision import Precision, resolve_precision
from puffertrain.rollout import to_torch
from puffertrain.vector import VectorEnv, engine_from


@dataclass
class BenchConfig:
    """Measure env-only SPS (random actions) and rollout SPS (env + policy inference, no
    update): the median over several timed windows."""

    env: str
    """Env id, as for training."""
    vec: Literal["auto", "serial", "multiprocessing", "native"] = "auto"
    """Backend to measure."""
    num_envs: int = 8
    """Envs stepped together."""
    num_workers: int = 0
    """Worker processes of the multiprocessing backend (0: one per core)."""
    num_threads: int = 0
    """Threads of the native ALE backend (0: one per core, shared out over its batches)."""
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
    output: Path | None = None
    """Where to write the JSON results (default: runs/bench/<env>__<time>.json)."""


Advance = Callable[[], int]
"""Moves a measurement on by one batch; returns the env steps it took."""
Actor = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""Actions for the observations of envs ``env_ids``."""


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


def _engine_sps(envs: VectorEnv, act: Actor, config: BenchConfig) -> float:
    """SPS of a puffertrain engine driven like the trainer drives it: act on each batch that
    comes back and send it again (synchronous engines return every env at once), with the
    trainer's torch thread count for the rollout."""
    default_threads = torch.get_num_threads()
    torch.set_num_threads(envs.policy_threads())
    all_envs = np.arange(envs.num_envs)
    envs.send(act(envs.reset(0), all_envs), all_envs)
    in_flight = envs.num_envs

    def advance() -> int:
        result = envs.recv()
        envs.send(act(result.observations, result.env_ids), result.env_ids)
        return len(result.env_ids)

    try:
        rate = _median_sps(advance, config.seconds, config.windows)
    finally:
        torch.set_num_threads(default_threads)
    while in_flight:  # leave nothing in flight for the next measurement
        in_flight -= len(envs.recv().env_ids)
    return rate


def _gymnasium_sps(vector: gym.vector.VectorEnv, act: Actor, config: BenchConfig) -> float:
    observations = [vector.reset(seed=0)[0]]
    all_envs = np.arange(vector.num_envs)

    def advance() -> int:
        observations[0] = vector.step(act(observations[0], all_envs))[0]
        return vector.num_envs

    return _median_sps(advance, config.seconds, config.windows)


def _actors(
    config: BenchConfig, envs: VectorEnv, autocast_dtype: torch.dtype | None
) -> tuple[Actor, Actor, Callable[[], AbstractContextManager]]:
    """Random actions, and policy actions with a recurrent state kept per env (per row: envs
    × agents for a multi-agent env, whose rows also tell the policy their agent), computed
    under ``autocast_dtype`` (None: fp32); and the precision region to measure the policy in,
    one region over many steps as in the trainer's rollout."""
    observation_space, action_space = envs.policy_observation_space, envs.single_action_space
    batch_actions = gym.vector.utils.batch_space(action_space, envs.num_envs)
    batch_actions.seed(0)
    policy = build_policy(
        config.policy, observation_space, action_space, agent_names=envs.agent_names
    )
    agent = Agent(policy, action_space, autocast_dtype)
    device = torch.device("cpu")
    states = agent.initial_state(envs.num_envs, device)
    agents = envs.agents_per_env if envs.agent_names else 0

    def random_actions(obs: np.ndarray, env_ids: np.ndarray) -> np.ndarray:
        return batch_actions.sample()[: len(obs)]

    def policy_actions(obs: np.ndarray, env_ids: np.ndarray) -> np.ndarray:
        rows = torch.from_numpy(env_ids)
        state = None if states is None else tuple(part[rows] for part in states)
        agent_ids = rows % agents if agents else None
        with torch.no_grad():
            actions, _, _, state = agent.act(to_torch(obs, device), state, agent_ids=agent_ids)
        if states is not None:
            for part, new in zip(states, state, strict=True):
                part[rows] = new
        return env_actions(actions, action_space)

    return random_actions, policy_actions, partial(agent.autocast, device)


def _factory(config: BenchConfig) -> EnvFactory:
    kwargs = parse_kwargs(config.env_kwargs)
    if is_atari(config.env):
        return partial(make_wrapped_atari, config.env, atari_settings(config.env, kwargs))
    return partial(with_flat_observations, env_factory(config.env, kwargs))


def bench(config: BenchConfig) -> dict:
    """Run the measurements; print a table; write and return the results."""
    env_factory(config.env)  # a clear error for a bad id
    autocast_dtype, precision = resolve_precision(config.precision, torch.device("cpu"))
    rows = []
    envs, reason = engine_from(config)
    name = f"puffertrain {envs.name}"
    if envs.batch_size < envs.num_envs:
        name += f" (batches of {envs.batch_size // envs.agents_per_env})"
    if config.compare and envs.agent_names:
        envs.close()
        raise UserError("--compare: gymnasium's vector envs cannot run a PettingZoo env")
    try:
        random_actions, policy_actions, acting = _actors(config, envs, autocast_dtype)

        def measure(engine: str, sps: Callable[[Actor], float]) -> None:
            """One row: ``sps`` with random actions, then with the policy in its precision."""
            env_sps = sps(random_actions)
            with acting():
                rollout_sps = sps(policy_actions)
            rows.append({"engine": engine, "env_sps": env_sps, "rollout_sps": rollout_sps})

        measure(name, partial(_engine_sps, envs, config=config))
    finally:
        envs.close()

    if config.compare:
        for name, cls in (
            ("gymnasium SyncVectorEnv", gym.vector.SyncVectorEnv),
            ("gymnasium AsyncVectorEnv", gym.vector.AsyncVectorEnv),
        ):
            vector = cls([_factory(config)] * config.num_envs)
            try:
                measure(name, partial(_gymnasium_sps, vector, config=config))
            finally:
                vector.close()

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
    output = config.output or Path("runs/bench") / (
        f"{config.env.replace('/', '-')}__{time.strftime('%Y%m%d-%H%M%S')}.json"
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results written to {output}")
    return results
