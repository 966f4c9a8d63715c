"""What exploration noise alone earns on a body: the reward per step and the episode length of
an untrained Gaussian policy (mean 0, std ``sigma``, actions clipped to the bounds), the policy
PPO starts from, for each env and starting std.

    python experiments/noise_cost.py [--env ID ...] [--sigma S ...] [--episodes N]

Where the noise's control cost outweighs the reward for staying alive (Ant-v5 at std 1), the
quickest way to stop paying it is to fall, and PPO learns to end episodes early
(experiments/RESULTS.md, "MuJoCo: white noise, and a starting std").
"""

from __future__ import annotations

import argparse
import math

import gymnasium as gym
import numpy as np

ENVS = ("Ant-v5", "HalfCheetah-v5", "Hopper-v5", "Walker2d-v5")
SIGMAS = (1.0, math.exp(-1), math.exp(-2))


def noise_returns(
    env_id: str, sigma: float, episodes: int, max_steps: int
) -> tuple[float, float, float]:
    """Mean reward per step, mean control reward per step (0 where the env reports none) and
    mean episode length, over ``episodes`` episodes cut at ``max_steps``."""
    env = gym.make(env_id)
    rng = np.random.default_rng(0)
    per_step, control, lengths = [], [], []
    for episode in range(episodes):
        env.reset(seed=episode)
        total, cost, steps, done = 0.0, 0.0, 0, False
        while not done and steps < max_steps:
            noise = rng.normal(0.0, sigma, env.action_space.shape)
            action = np.clip(noise, env.action_space.low, env.action_space.high)
            _, reward, terminated, truncated, info = env.step(action)
            total, cost = total + float(reward), cost + float(info.get("reward_ctrl", 0.0))
            steps, done = steps + 1, terminated or truncated
        per_step.append(total / steps)
        control.append(cost / steps)
        lengths.append(steps)
    env.close()
    return float(np.mean(per_step)), float(np.mean(control)), float(np.mean(lengths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", nargs="+", default=ENVS)
    parser.add_argument("--sigma", nargs="+", type=float, default=SIGMAS)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--max-steps", type=int, default=1000)
    args = parser.parse_args()
    print("| env | std | reward per step | control reward per step | episode length |")
    print("|---|---|---|---|---|")
    for env_id in args.env:
        for sigma in args.sigma:
            reward, control, length = noise_returns(env_id, sigma, args.episodes, args.max_steps)
            print(f"| {env_id} | {sigma:.3f} | {reward:.2f} | {control:.2f} | {length:.0f} |")


if __name__ == "__main__":
    main()
