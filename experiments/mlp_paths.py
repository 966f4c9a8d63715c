"""The library MLPs' own paths against the generic ones, in one process, in turn (A B / B A):
acting from the layers (``KnownMLP``) against the modules, and the update's written-out
gradients (``MLPGradients``) against autograd.

    PYTHONPATH=$PWD python experiments/mlp_paths.py [--rounds 8] [--output F]

Three workloads, their flags resolved as ``python -m puffertrain`` resolves them (preset, then
flags): the masked Selection env's ``mlp`` (2 x 256 ReLU, 8 envs, 16 x 10 minibatches of 64),
CartPole-v1's ``separate_mlp`` (2 x 64 tanh, normalised, 8 envs, 20 passes of 256 rows) and
HalfCheetah-v5's ``continuous`` at 1 env (2 x 256, normalised, 32 x 10 minibatches of 64).
Acting: ``PolicyAdapter.act`` on one batch of the workload's envs, µs per call. Update:
``Learner.update`` on a buffer of random data, µs per minibatch step. One torch thread (the
trainer's choice for these). Reported: each side's median and the median of the paired ratios
(own path / generic path).
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

from puffertrain.buffer import RolloutBuffer
from puffertrain.cli import parse_train_args
from puffertrain.policy_loader import build_policy
from puffertrain.ppo import PolicyAdapter
from puffertrain.ppo.learner import Learner

BOX = gym.spaces.Box
SELECTION = '{"n": 16, "legal": 2, "length": 16, "mask": "info"}'
WORKLOADS = {
    "masked Selection, mlp": (
        [
            *("--env", "tests.masked_envs:Selection", "--env-kwargs", SELECTION),
            *("--policy", "mlp", "--num-envs", "8", "--num-steps", "128"),
        ],
        BOX(0.0, 1.0, (32,), np.float32),
        gym.spaces.Discrete(16),
    ),
    "CartPole-v1, separate_mlp": (
        ["--env", "CartPole-v1"],
        BOX(-5.0, 5.0, (4,), np.float32),
        gym.spaces.Discrete(2),
    ),
    "HalfCheetah-v5 at 1 env, continuous": (
        ["--env", "HalfCheetah-v5", "--num-envs", "1", "--num-steps", "2048"],
        BOX(-5.0, 5.0, (17,), np.float32),
        BOX(-1.0, 1.0, (6,), np.float32),
    ),
}
"""Each workload's flags (resolved as ``python -m puffertrain`` resolves them) and the spaces
of its env."""


def _paired(
    own: Callable[[], float], generic: Callable[[], float], rounds: int
) -> dict[str, float]:
    """Both timed in turn, ``rounds`` times; medians and the median paired ratio."""
    times: dict[str, list[float]] = {"own": [], "generic": []}
    for index in range(rounds):
        order = (("own", own), ("generic", generic))
        for name, run in order if index % 2 == 0 else order[::-1]:
            times[name].append(run())
    ratios = [a / b for a, b in zip(times["own"], times["generic"], strict=True)]
    return {
        "own_us": statistics.median(times["own"]),
        "generic_us": statistics.median(times["generic"]),
        "paired_ratio": statistics.median(ratios),
        "ratios": ratios,
    }


def measure(flags: list[str], observations, actions, rounds: int) -> dict[str, dict]:
    config, _ = parse_train_args(flags)
    torch.manual_seed(0)
    adapter = PolicyAdapter(
        build_policy(config.policy, observations, actions, config.normalize_obs), actions
    )
    network = adapter.known_mlp
    mask_size = actions.n if "Selection" in flags[1] else 0
    buffer = RolloutBuffer(
        config.num_steps,
        config.num_envs,
        observations,
        actions,
        torch.device("cpu"),
        mask_size=mask_size,
    )
    buffer.observations.uniform_()
    if mask_size:
        buffer.action_masks.zero_()
        buffer.action_masks[..., :2] = 1
    elif isinstance(actions, BOX):
        buffer.actions.normal_()
    else:
        buffer.actions.random_(0, 2)
    for field in (buffer.advantages, buffer.returns, buffer.values):
        field.normal_()
    if config.normalize_obs:
        adapter.policy.update_normalization(buffer.observations.flatten(0, 1))
    batch = buffer.observations[0]
    masks = buffer.action_masks[0].bool() if mask_size else None

    def act(known: bool) -> float:
        adapter.known_mlp = network if known else None
        calls, start = 1000, time.perf_counter()
        with torch.no_grad():
            for _ in range(calls):
                adapter.act(batch, action_mask=masks)
        return (time.perf_counter() - start) / calls * 1e6

    learner = Learner(adapter, config.ppo)
    written = learner.written
    steps = config.ppo.num_minibatches * config.ppo.update_epochs

    def update(own: bool) -> float:
        learner.written = written if own else None
        start = time.perf_counter()
        learner.update(buffer, 1e-4)
        learner.update(buffer, 1e-4)
        return (time.perf_counter() - start) / (2 * steps) * 1e6

    for own in (True, False):  # warm up both
        act(own)
        update(own)
    return {
        "act": _paired(lambda: act(True), lambda: act(False), rounds),
        "update": _paired(lambda: update(True), lambda: update(False), rounds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {}
    for name, (flags, observations, actions) in WORKLOADS.items():
        results[name] = measure(flags, observations, actions, args.rounds)
        for part, row in results[name].items():
            print(
                f"{name}, {part}: own {row['own_us']:.1f} µs, generic {row['generic_us']:.1f} "
                f"µs, paired {row['paired_ratio']:.3f}",
                flush=True,
            )
    if args.output:
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        args.output.write_text(json.dumps({"date": stamp, "runs": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
