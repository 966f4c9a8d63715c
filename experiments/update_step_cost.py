"""What one minibatch step of the PPO update costs, part by part, against the policy's own math.

    python experiments/update_step_cost.py --policy mlp --obs-dim 8 --actions 4 --rows 64 \\
        --output experiments/results/update_step_cost_generic.json

Times (median of ``--repeats`` blocks, one process, ``--threads`` torch threads):
- the policy's forward and backward alone (a sum of its outputs as the loss): the floor;
- the PPO loss's forward and backward (``ppo_loss``: the adapter's scoring, the surrogate,
  the value loss and the statistics);
- gradient clipping and the Adam step together, as ``Learner`` runs them;
- a whole step of ``Learner.update`` (its update divided by its minibatch steps).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from puffertrain.buffer.storage import RolloutBuffer
from puffertrain.config import PPOConfig
from puffertrain.policy_loader import build_policy
from puffertrain.ppo.adapter import PolicyAdapter
from puffertrain.ppo.learner import Learner
from puffertrain.ppo.loss import ppo_loss


def microseconds(call: Callable[[], object], calls: int, repeats: int) -> float:
    """The median over ``repeats`` blocks of ``calls`` calls, per call, after a warm-up."""
    for _ in range(calls // 10 + 1):
        call()
    blocks = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            call()
        blocks.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(blocks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="mlp")
    parser.add_argument("--obs-dim", type=int, default=8)
    parser.add_argument("--actions", type=int, default=4, help="a Discrete action space's n")
    parser.add_argument("--rows", type=int, default=64, help="samples per minibatch")
    parser.add_argument("--minibatches", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--ent-coef", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    observations = gym.spaces.Box(-1, 1, (args.obs_dim,), np.float32)
    actions = gym.spaces.Discrete(args.actions)
    adapter = PolicyAdapter(build_policy(args.policy, observations, actions), actions, None)
    samples = args.rows * args.minibatches
    buffer = RolloutBuffer(samples // 8, 8, observations, actions, torch.device("cpu"))
    buffer.observations.normal_()
    buffer.actions.random_(0, args.actions)
    buffer.log_probs.fill_(-float(np.log(args.actions)))
    for field in (buffer.advantages, buffer.returns, buffer.values):
        field.normal_()
    config = PPOConfig(
        num_minibatches=args.minibatches, update_epochs=args.epochs, ent_coef=args.ent_coef
    )
    learner = Learner(adapter, config)
    batch = next(iter(next(buffer.minibatches(args.minibatches, 1))))

    def policy_alone() -> None:
        outputs = adapter.policy(batch.observations)
        sum(output.sum() for output in outputs).backward()

    def loss() -> None:
        ppo_loss(adapter, batch, config)[0].backward()

    def clip_and_step() -> None:
        learner.flat.clip_and_step(config.max_grad_norm)

    steps = args.minibatches * args.epochs
    parts = {
        "policy forward + backward (floor)": microseconds(policy_alone, args.calls, args.repeats),
        "PPO loss forward + backward": microseconds(loss, args.calls, args.repeats),
        "gradient clipping + Adam step": microseconds(clip_and_step, args.calls, args.repeats),
        "Learner.update, per minibatch step": microseconds(
            lambda: learner.update(buffer, config.learning_rate),
            max(1, args.calls // steps),
            args.repeats,
        )
        / steps,
    }
    for name, value in parts.items():
        print(f"{name:40s} {value:8.1f} us")
    if args.output:
        record = {"args": vars(args) | {"output": str(args.output)}, "microseconds": parts}
        record["date"] = time.strftime("%Y-%m-%d %H:%M")
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
