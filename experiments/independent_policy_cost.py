"""Cost of the independent multi-agent policy: its batched forward (rows grouped by agent, one
``baddbmm`` per layer for all agents) against a Python loop over agents that applies each
agent's network to its rows (the docs' way, with rows put back in input order), for several
agent counts. Prints a table and writes JSON.

    python experiments/independent_policy_cost.py [--agents 2 8 32 128] [--rows 4096]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import gymnasium as gym
import torch

from policies import IndependentMultiAgentPolicy


def looped(policy: IndependentMultiAgentPolicy, obs: torch.Tensor, ids: torch.Tensor):
    """Each agent's network on its own rows, one agent at a time, outputs in row order."""
    logits = obs.new_empty(len(obs), policy.actor_weight.shape[-1])
    values = obs.new_empty(len(obs), 1)
    for agent in range(policy.num_agents):
        rows = torch.nonzero(ids == agent).squeeze(1)
        if rows.numel():
            logits[rows], values[rows] = policy.forward_agent(obs[rows], agent)
    return logits, values


def median_ms(function, repeats: int) -> float:
    for _ in range(3):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def measure(num_agents: int, rows: int, obs_size: int, repeats: int) -> dict[str, float]:
    """Median ms of a forward, and of a forward and backward, batched and looped."""
    policy = IndependentMultiAgentPolicy(
        gym.spaces.Box(-1, 1, (obs_size,)), gym.spaces.Discrete(5), num_agents
    )
    obs = torch.randn(rows, obs_size)
    ids = (torch.arange(rows) % num_agents)[torch.randperm(rows)]  # a shuffled minibatch
    torch.testing.assert_close(policy(obs, ids)[0], looped(policy, obs, ids)[0])

    def batched() -> tuple[torch.Tensor, ...]:
        return policy(obs, ids)

    def one_by_one() -> tuple[torch.Tensor, ...]:
        return looped(policy, obs, ids)

    def train_step(forward):
        return lambda: sum(output.sum() for output in forward()).backward()

    return {
        "agents": num_agents,
        "batched_forward_ms": median_ms(batched, repeats),
        "looped_forward_ms": median_ms(one_by_one, repeats),
        "batched_train_ms": median_ms(train_step(batched), repeats),
        "looped_train_ms": median_ms(train_step(one_by_one), repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, nargs="+", default=[2, 8, 32, 128])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--obs-size", type=int, default=18)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    torch.manual_seed(0)
    results = []
    for num_agents in args.agents:
        row = measure(num_agents, args.rows, args.obs_size, args.repeats)
        results.append(row)
        print(
            f"{num_agents:>4} agents, {args.rows} rows: forward {row['batched_forward_ms']:.2f} "
            f"ms batched vs {row['looped_forward_ms']:.2f} ms looped; forward+backward "
            f"{row['batched_train_ms']:.2f} vs {row['looped_train_ms']:.2f} ms",
            flush=True,
        )
    summary = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "threads": torch.get_num_threads(),
        "rows": args.rows,
        "obs_size": args.obs_size,
        "results": results,
    }
    if args.output:
        args.output.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
