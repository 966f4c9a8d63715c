"""What a second torch thread buys a minibatch step (forward, backward, Adam) by policy size:
the evidence behind ``puffertrain.threads.PARALLEL_FLOPS``.

    python experiments/thread_choice.py --output experiments/results/thread_choice.json

For each policy and minibatch, the FLOPs the trainer counts (3 × one forward) and the median
step time on 1 and on 2 threads, interleaved.
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

from puffertrain.policy_loader import build_policy
from puffertrain.ppo import PolicyAdapter
from puffertrain.threads import PARALLEL_FLOPS, forward_flops

CASES = [  # name, policy, observation space, action space, minibatch rows
    ("CartPole preset, mlp", "mlp", gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2), 256),
    (
        "MuJoCo preset, continuous",
        "continuous",
        gym.spaces.Box(-1, 1, (17,)),
        gym.spaces.Box(-1, 1, (6,)),
        64,
    ),
    ("mlp, 2048 rows", "mlp", gym.spaces.Box(-1, 1, (64,)), gym.spaces.Discrete(8), 2048),
    (
        "Atari preset, cnn",
        "cnn",
        gym.spaces.Box(0, 255, (4, 84, 84), np.uint8),
        gym.spaces.Discrete(4),
        256,
    ),
]


def step_seconds(adapter: PolicyAdapter, obs: torch.Tensor, actions: torch.Tensor) -> float:
    optimizer = torch.optim.Adam(adapter.parameters(), lr=1e-4, fused=True)
    start = time.perf_counter()
    log_probs, entropy, values = adapter.evaluate(obs, actions)
    loss = -(log_probs.mean() + entropy.mean()) + values.square().mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    rows = []
    for name, policy_name, space, action_space, batch in CASES:
        adapter = PolicyAdapter(build_policy(policy_name, space, action_space), action_space)
        obs = torch.from_numpy(np.stack([space.sample() for _ in range(batch)]))
        actions = torch.from_numpy(np.stack([action_space.sample() for _ in range(batch)]))
        flops = 3 * forward_flops(lambda a=adapter, o=obs: a.act(o[:1], None, True)) * batch
        times: dict[int, list[float]] = {1: [], 2: []}
        for _ in range(args.repeats):
            for threads in (1, 2):
                torch.set_num_threads(threads)
                times[threads].append(step_seconds(adapter, obs, actions))
        one, two = (statistics.median(times[t]) * 1e3 for t in (1, 2))
        row = {
            "case": name,
            "gflop_per_step": flops / 1e9,
            "ms_1_thread": one,
            "ms_2_threads": two,
            "speedup_2_threads": one / two,
            "threads_chosen": 2 if flops >= PARALLEL_FLOPS else 1,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.output:
        record = {"command": "python experiments/thread_choice.py", "date": time.strftime("%F")}
        args.output.write_text(json.dumps(record | {"rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
