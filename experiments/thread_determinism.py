"""Whether the number of torch threads changes a run's numbers: the same policy, data and seed
trained for a few Adam steps on 1 and on 2 threads, and the largest parameter difference.

    python experiments/thread_determinism.py --output experiments/results/thread_determinism.json

A thread count chosen from the machine's load at start would make one seed's results differ
from one start to the next by this much (and then diverge as training goes on).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gymnasium as gym
import torch

from puffertrain.policy_loader import build_policy
from puffertrain.ppo import PolicyAdapter

CASES = [  # name, policy, observation space, action space, minibatch rows
    ("mlp, CartPole spaces", "mlp", gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2), 256),
    ("mlp, CartPole spaces", "mlp", gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2), 2048),
    (
        "cnn, Atari frames",
        "cnn",
        gym.spaces.Box(0, 255, (4, 84, 84), dtype="uint8"),
        gym.spaces.Discrete(4),
        256,
    ),
]


def trained_parameters(case: tuple, threads: int, steps: int) -> torch.Tensor:
    """The parameters after ``steps`` Adam steps of a stand-in loss, on ``threads`` threads."""
    _, name, observation_space, action_space, rows = case
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    agent = PolicyAdapter(build_policy(name, observation_space, action_space), action_space, None)
    optimizer = torch.optim.Adam(agent.parameters(), lr=3e-4, eps=1e-5)
    generator = torch.Generator().manual_seed(1)
    low = 0 if observation_space.dtype == "uint8" else -1
    high = 255 if observation_space.dtype == "uint8" else 1
    for _ in range(steps):
        obs = torch.randint(low, high + 1, (rows, *observation_space.shape), generator=generator)
        obs = obs.to(torch.uint8) if observation_space.dtype == "uint8" else obs.float()
        actions = torch.randint(0, action_space.n, (rows,), generator=generator)
        log_probs, entropy, values = agent.evaluate(obs, actions)
        loss = -(log_probs.mean() + 0.01 * entropy.mean()) + values.square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return torch.cat([p.detach().flatten() for p in agent.parameters()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    rows = []
    for case in CASES:
        one, two = (trained_parameters(case, threads, args.steps) for threads in (1, 2))
        again = trained_parameters(case, 1, args.steps)
        row = {
            "case": case[0],
            "rows": case[4],
            "max_abs_difference_1_vs_2_threads": float((one - two).abs().max()),
            "max_abs_difference_1_vs_1_thread": float((one - again).abs().max()),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.output:
        result = {"steps": args.steps, "rows": rows, "date": time.strftime("%Y-%m-%d")}
        args.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
