"""Does torch.compile pay on this machine? Times the rollout's action sampling and one PPO
minibatch step, eager vs compiled, side by side in one process (median of several repeats).

    python experiments/compile_benchmark.py [--policies mlp cnn] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from policies import POLICIES
from puffertrain.config import PPOConfig
from puffertrain.ppo import Agent, Minibatch, ppo_loss

SETUPS = {  # observation space, actions, rollout batch (num_envs), minibatch size
    "mlp": (gym.spaces.Box(-1, 1, (4,), np.float32), 2, 8, 256),
    "cnn": (gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), 4, 8, 256),
}


def _obs(space: gym.spaces.Box, batch: int) -> torch.Tensor:
    return torch.as_tensor(np.stack([space.sample() for _ in range(batch)]))


def _time(fn, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def measure(name: str, compiled: bool, repeats: int) -> dict[str, float]:
    space, actions, envs, minibatch_size = SETUPS[name]
    torch.manual_seed(0)
    agent = Agent(
        POLICIES[name].cls(space, gym.spaces.Discrete(actions)), gym.spaces.Discrete(actions)
    )
    optimizer = torch.optim.Adam(agent.parameters(), lr=2.5e-4, eps=1e-5)
    config = PPOConfig()
    act = torch.compile(agent.act) if compiled else agent.act
    loss_fn = torch.compile(ppo_loss) if compiled else ppo_loss
    rollout_obs = _obs(space, envs)
    batch = Minibatch(
        observations=_obs(space, minibatch_size),
        actions=torch.randint(0, actions, (minibatch_size,)),
        log_probs=torch.full((minibatch_size,), -np.log(actions)),
        advantages=torch.randn(minibatch_size),
        returns=torch.randn(minibatch_size),
        values=torch.randn(minibatch_size),
    )

    def act_step():
        with torch.no_grad():
            act(rollout_obs)

    def train_step():
        loss, _ = loss_fn(agent, batch, config)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(agent.parameters(), 0.5)
        optimizer.step()

    warmup = time.perf_counter()
    act_step()
    train_step()
    first_call_s = time.perf_counter() - warmup
    calls = (200, 50) if name == "mlp" else (50, 5)
    act_times = [_time(act_step, calls[0]) for _ in range(repeats)]
    train_times = [_time(train_step, calls[1]) for _ in range(repeats)]
    return {
        "first_call_s": first_call_s,
        "act_us": statistics.median(act_times) * 1e6,
        "train_step_ms": statistics.median(train_times) * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", nargs="+", default=list(SETUPS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    results = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    for name in args.policies:
        eager = measure(name, False, args.repeats)
        compiled = measure(name, True, args.repeats)
        results[name] = {
            "eager": eager,
            "compiled": compiled,
            "act_speedup": eager["act_us"] / compiled["act_us"],
            "train_step_speedup": eager["train_step_ms"] / compiled["train_step_ms"],
        }
        print(
            f"{name}: act {eager['act_us']:.0f} µs eager vs {compiled['act_us']:.0f} µs "
            f"compiled; train step {eager['train_step_ms']:.2f} ms vs "
            f"{compiled['train_step_ms']:.2f} ms; compile cost {compiled['first_call_s']:.1f} s",
            flush=True,
        )
    if args.output:
        args.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
