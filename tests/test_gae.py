"""GAE over the rollout buffer against a direct transcription of the formula."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from puffertrain.buffer import RolloutBuffer


def reference_gae(rewards, values, ends, last_values, gamma, lam):
    steps, envs = rewards.shape
    advantages = np.zeros_like(rewards)
    for env in range(envs):
        running = 0.0
        for t in reversed(range(steps)):
            next_value = last_values[env] if t == steps - 1 else values[t + 1, env]
            mask = 1.0 - ends[t, env]
            delta = rewards[t, env] + gamma * next_value * mask - values[t, env]
            running = delta + gamma * lam * mask * running
            advantages[t, env] = running
    return advantages


def test_gae_matches_reference_with_episode_ends():
    rng = np.random.default_rng(0)
    steps, envs = 16, 3
    buffer = RolloutBuffer(
        steps,
        envs,
        gym.spaces.Box(0, 1, (2,), np.float32),
        gym.spaces.Discrete(2),
        torch.device("cpu"),
    )
    rewards = rng.normal(size=(steps, envs)).astype(np.float32)
    values = rng.normal(size=(steps, envs)).astype(np.float32)
    ends = (rng.random((steps, envs)) < 0.2).astype(np.float32)
    last = rng.normal(size=envs).astype(np.float32)
    buffer.rewards[:] = torch.from_numpy(rewards)
    buffer.values[:] = torch.from_numpy(values)
    buffer.episode_ends[:] = torch.from_numpy(ends)
    buffer.compute_advantages(torch.from_numpy(last), gamma=0.99, gae_lambda=0.95)
    expected = reference_gae(rewards, values, ends, last, 0.99, 0.95)
    np.testing.assert_allclose(buffer.advantages.numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(buffer.returns.numpy(), expected + values, rtol=1e-5, atol=1e-5)


def test_buffer_keeps_uint8_observations():
    buffer = RolloutBuffer(
        4,
        2,
        gym.spaces.Box(0, 255, (4, 84, 84), np.uint8),
        gym.spaces.Discrete(4),
        torch.device("cpu"),
    )
    assert buffer.observations.dtype == torch.uint8
    assert buffer.observations.shape == (4, 2, 4, 84, 84)
