"""What ``--normalize-reward`` multiplies rewards by, env by env, under random actions; and
FrozenLake with its goal worth 10, the reward the normaliser gives it, as a plain env.

    python experiments/sparse_reward_scale.py --env FrozenLake-v1 MiniGrid-DoorKey-5x5-v0 Taxi-v4

prints 1 / std of the running discounted return (what a reward is multiplied by before the clip
at 10) after 2,000 and 20,000 steps of 4 envs. ``--env sparse_reward_scale:frozen10``, with
``PYTHONPATH=$PWD/experiments``, trains on the goal-worth-10 FrozenLake.
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import TransformReward

from puffertrain.envs.make import env_factory
from puffertrain.rollout.rewards import RewardNormalizer


def frozen10() -> gym.Env:
    """FrozenLake-v1 (slippery) whose goal pays 10 instead of 1."""
    return TransformReward(gym.make("FrozenLake-v1"), lambda reward: 10.0 * reward)


def scale_under_random_actions(env_id: str, marks: tuple[int, ...], num_envs: int = 4) -> list:
    """The normaliser's multiplier, 1 / std, at each of ``marks`` steps of random actions."""
    envs = gym.vector.SyncVectorEnv(
        [env_factory(env_id)] * num_envs, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
    )
    envs.reset(seed=0)
    envs.action_space.seed(0)
    normalizer = RewardNormalizer(num_envs, gamma=0.99)
    scales = []
    for step in range(1, max(marks) + 1):
        _, rewards, terminated, truncated, _ = envs.step(envs.action_space.sample())
        normalizer(np.asarray(rewards, dtype=float), np.arange(num_envs), terminated | truncated)
        if step in marks:
            scales.append(round(float(1 / np.sqrt(normalizer.var + 1e-8)), 3))
    envs.close()
    return scales


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", nargs="+", default=["FrozenLake-v1"])
    parser.add_argument("--marks", type=int, nargs="+", default=[2000, 20000])
    args = parser.parse_args()
    for env_id in args.env:
        print(env_id, scale_under_random_actions(env_id, tuple(args.marks)), flush=True)


if __name__ == "__main__":
    main()
