"""Is a trained HalfCheetah running on its back? For each run directory, play one greedy
episode of its newest checkpoint and print the return and the share of steps whose torso pitch
is past 90 degrees (upside down).

    python experiments/cheetah_posture.py RUN_DIR [RUN_DIR ...]

Runs of the continuous preset that end near 1,500-2,000 are the ones on their backs
(experiments/RESULTS.md, "MuJoCo: a cheetah on its back").
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from puffertrain.trainer.restore import restore

PITCH = 2
"""HalfCheetah's ``qpos`` entry for the torso's rotation about the y axis (``rooty``)."""


def posture(run_dir: Path, seed: int = 0) -> tuple[float, float, int]:
    """Greedy return, share of steps upside down, and the checkpoint's step, over one episode
    of the env the run trained on."""
    restored = restore(run_dir, "RUN_DIR")
    restored.engine.close()
    policy = restored.policy.eval()
    env = gym.make(restored.config.env)
    observation, _ = env.reset(seed=seed)
    upside_down, total, steps, done = 0, 0.0, 0, False
    with torch.no_grad():
        while not done:
            mean = policy(torch.as_tensor(observation, dtype=torch.float32)[None])[0][0]
            action = np.clip(mean.numpy(), env.action_space.low, env.action_space.high)
            observation, reward, terminated, truncated, _ = env.step(action)
            pitch = math.remainder(float(env.unwrapped.data.qpos[PITCH]), 2 * math.pi)
            upside_down += abs(pitch) > math.pi / 2
            total, steps, done = total + float(reward), steps + 1, terminated or truncated
    env.close()
    return total, upside_down / steps, restored.checkpoint.global_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", type=Path)
    for run_dir in parser.parse_args().run_dirs:
        total, share, step = posture(run_dir)
        print(f"{run_dir}: greedy return {total:,.0f}, upside down {share:.0%} (step {step:,})")


if __name__ == "__main__":
    main()
