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

from puffertrain.config import parse_env_kwargs
from puffertrain.envs import EnvFactory, env_factory, is_atari
from puffertrain.envs.atari import atari_settings, make_wrapped_atari
from puffertrain.envs.flatten import with_flat_observations
from puffertrain.policy_loader import build_policy
from puffertrain.ppo import Agent, env_actions
from puffertrain.rollout import to_torch
from puffertrain.vector import engine_from


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
    """Threads of the native ALE backend (0: one per core)."""
    seconds: float = 10.0
    """Time spent per measurement, split into --windows windows."""
    windows: int = 5
    """Timed windows per measurement; the median is reported."""
    policy: str = "auto"
    """Policy whose inference the rollout measurement includes."""
    env_kwargs: str = ""
    """JSON object of env settings, as for training."""
    compare: bool = False
    """Also measure gymnasium's SyncVectorEnv and AsyncVectorEnv on the same env."""
    output: Path | None = None
    """Where to write the JSON results (default: runs/bench/<env>__<time>.json)."""


Stepper = Callable[[np.ndarray], np.ndarray]


def _median_sps(
    step: Stepper, first_obs: np.ndarray, act: Callable, num_envs: int, seconds: float, windows: int
) -> float:
    obs = first_obs
    for _ in range(3):  # warm up
        obs = step(act(obs))
    rates = []
    for _ in range(windows):
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / windows:
            obs = step(act(obs))
            steps += num_envs
        rates.append(steps / (time.perf_counter() - start))
    return statistics.median(rates)


def _actors(
    config: BenchConfig, observation_space: gym.spaces.Space, action_space: gym.spaces.Space
) -> tuple[Callable, Callable]:
    batch_actions = gym.vector.utils.batch_space(action_space, config.num_envs)
    batch_actions.seed(0)
    agent = Agent(build_policy(config.policy, observation_space, action_space), action_space)
    device = torch.device("cpu")

    def random_actions(_: np.ndarray) -> np.ndarray:
        return batch_actions.sample()

    def policy_actions(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return env_actions(agent.act(to_torch(obs, device))[0], action_space)

    return random_actions, policy_actions


def _factory(config: BenchConfig) -> EnvFactory:
    kwargs = parse_env_kwargs(config.env_kwargs)
    if is_atari(config.env):
        return partial(make_wrapped_atari, config.env, atari_settings(config.env, kwargs))
    return partial(with_flat_observations, env_factory(config.env, kwargs))


def bench(config: BenchConfig) -> dict:
    """Run the measurements; print a table; write and return the results."""
    env_factory(config.env)  # a clear error for a bad id
    rows = []
    envs, reason = engine_from(config)
    try:
        random_actions, policy_actions = _actors(
            config, envs.policy_observation_space, envs.single_action_space
        )
        first = envs.reset(0).copy()

        def step(actions: np.ndarray) -> np.ndarray:
            return envs.step(actions).observations

        rows.append(
            {
                "engine": f"puffertrain {envs.name}",
                "env_sps": _median_sps(
                    step, first, random_actions, config.num_envs, config.seconds, config.windows
                ),
                "rollout_sps": _median_sps(
                    step, first, policy_actions, config.num_envs, config.seconds, config.windows
                ),
            }
        )
    finally:
        envs.close()

    if config.compare:
        for name, cls in (
            ("gymnasium SyncVectorEnv", gym.vector.SyncVectorEnv),
            ("gymnasium AsyncVectorEnv", gym.vector.AsyncVectorEnv),
        ):
            vector = cls([_factory(config)] * config.num_envs)
            try:
                first = vector.reset(seed=0)[0]

                def step(actions: np.ndarray, vector=vector) -> np.ndarray:
                    return vector.step(actions)[0]

                rows.append(
                    {
                        "engine": name,
                        "env_sps": _median_sps(
                            step,
                            first,
                            random_actions,
                            config.num_envs,
                            config.seconds,
                            config.windows,
                        ),
                        "rollout_sps": _median_sps(
                            step,
                            first,
                            policy_actions,
                            config.num_envs,
                            config.seconds,
                            config.windows,
                        ),
                    }
                )
            finally:
                vector.close()

    baseline = rows[0]["env_sps"]
    table = Table(title=f"{config.env}, {config.num_envs} envs ({reason})")
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
