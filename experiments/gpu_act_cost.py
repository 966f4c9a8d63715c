"""What one rollout action costs on a GPU, by part and batch size: the Atari preset's CNN.

    python experiments/gpu_act_cost.py [--batches 4 8 16 32 64 128] [--calls 300] [--output F]

The rollout acts on each batch of envs the engine returns: the frames go to the GPU, the
policy samples, the actions come back to the host for the envs. Per call, median over
``--calls`` (each call waits for the GPU, as the rollout's copy back does):

- copy in: the batch's uint8 frames (4 × 84 × 84 each) to the GPU;
- act fp32 / act bf16: ``PolicyAdapter.act`` on frames already there, in fp32 and under bf16
  autocast (the preset's precision on a GPU), actions copied back;
- step fp32 / step bf16: all three, as ``Rollout.send`` does them;
- µs per env: step bf16 divided by the batch.

A GPU's forward costs about the same at any small batch (launches, not arithmetic), so the
µs per env falls with the batch: that decides how many envs each async batch should hold.
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

from puffertrain.buffer import to_torch
from puffertrain.policy_loader import build_policy
from puffertrain.ppo import PolicyAdapter, env_actions

OBSERVATION_SPACE = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
ACTION_SPACE = gym.spaces.Discrete(4)


def median_us(call: Callable[[], object], calls: int, device: torch.device) -> float:
    """Median microseconds of ``call``, each waited for on ``device``."""
    for _ in range(20):  # warm up: cuDNN picks its kernels per shape
        call()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def measure(batch: int, calls: int, device: torch.device) -> dict[str, float]:
    policy = build_policy("cnn", OBSERVATION_SPACE, ACTION_SPACE).to(device)
    fp32 = PolicyAdapter(policy, ACTION_SPACE)
    bf16 = PolicyAdapter(policy, ACTION_SPACE, autocast_dtype=torch.bfloat16)
    frames = np.random.default_rng(0).integers(0, 255, (batch, 4, 84, 84), dtype=np.uint8)
    on_gpu = to_torch(frames, device)

    def act(adapter: PolicyAdapter, obs: torch.Tensor) -> np.ndarray:
        with torch.no_grad(), adapter.autocast(device):
            return env_actions(adapter.act(obs)[0], ACTION_SPACE)

    row = {
        "batch": float(batch),
        "copy_in_us": median_us(lambda: to_torch(frames, device), calls, device),
        "act_fp32_us": median_us(lambda: act(fp32, on_gpu), calls, device),
        "act_bf16_us": median_us(lambda: act(bf16, on_gpu), calls, device),
        "step_fp32_us": median_us(lambda: act(fp32, to_torch(frames, device)), calls, device),
        "step_bf16_us": median_us(lambda: act(bf16, to_torch(frames, device)), calls, device),
    }
    row["us_per_env_bf16"] = row["step_bf16_us"] / batch
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[4, 8, 16, 32, 64, 128])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--output", type=Path)
    parser.add_argument("--device", default="cuda", help="cpu only to try the script out")
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(name, "torch", torch.__version__)
    rows = [measure(batch, args.calls, device) for batch in args.batches]
    columns = list(rows[0])
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join(f"{row[c]:,.1f}" for c in columns))
    if args.output:
        args.output.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
