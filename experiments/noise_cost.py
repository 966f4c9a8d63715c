"""What exploration noise alone earns on a body: the reward per step, its control and
staying-up parts, and the episode length of an untrained Gaussian policy (mean 0, std
``sigma``, actions clipped to the bounds), the policy PPO starts from, for each env and std.

    python experiments/noise_cost.py [--env ID ...] [--sigma S ...] [--steps N]

Where the noise's control cost outweighs the reward for staying up (Ant-v5 at std 1), the
quickest way to stop paying it is to fall, and PPO learns to end episodes early; the MuJoCo
preset then starts the actions lower (puffertrain/envs/noise_cost.py; experiments/RESULTS.md,
"MuJoCo: white noise, and a starting std").
"""

from __future__ import annotations

import argparse
import math

import gymnasium as gym

from puffertrain.envs.noise_cost import noise_cost

ENVS = ("Ant-v5", "HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Humanoid-v5")
SIGMAS = (1.0, math.exp(-1), math.exp(-2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", nargs="+", default=ENVS)
    parser.add_argument("--sigma", nargs="+", type=float, default=SIGMAS)
    parser.add_argument("--steps", type=int, default=20_000)
    args = parser.parse_args()
    print("| env | std | reward per step | control | staying up | episode length |")
    print("|---|---|---|---|---|---|")
    for env_id in args.env:
        for sigma in args.sigma:
            env = gym.make(env_id)
            cost = noise_cost(env, sigma, args.steps)
            env.close()
            print(
                f"| {env_id} | {sigma:.3f} | {cost.reward:.2f} | {cost.control:.2f} | "
                f"{cost.survive:.2f} | {cost.episode_length:.0f} |"
            )


if __name__ == "__main__":
    main()
