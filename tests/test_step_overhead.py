"""experiments/step_overhead.py's numpy floor: its forward is the ``mlp`` policy's, and its step
samples every action, so its cost is the cost of the same work."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture
def step_overhead(experiment_script):
    return experiment_script("step_overhead")


def test_numpy_forward_is_the_policys_and_its_floor_step_samples_each_action(step_overhead):
    from puffertrain.engine import make_engine
    from puffertrain.policy_loader import build_policy

    engine, _ = make_engine("native", "CartPole-v1", 8, {})
    torch.manual_seed(0)
    policy = build_policy("mlp", engine.policy_observation_space, engine.single_action_space)
    forward = step_overhead.numpy_policy(policy)
    observations = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    logits, values = forward(observations)
    with torch.no_grad():
        expected_logits, expected_values = policy(torch.from_numpy(observations))
    np.testing.assert_allclose(logits, expected_logits.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(values, expected_values.numpy(), rtol=1e-5, atol=1e-6)

    engine.close()


def test_numpy_floor_step_samples_from_the_softmax_and_stores_the_log_probability(step_overhead):
    import gymnasium as gym

    vector = gym.make_vec("CartPole-v1", num_envs=64, vectorization_mode="vector_entry_point")
    skewed = np.log(np.array([[1.0, 3.0]], np.float32))  # P(action 1) = 0.75

    def forward(observations):
        return np.repeat(skewed, len(observations), axis=0), np.zeros((len(observations), 1))

    buffers = step_overhead.floor_buffers(64)
    one_step = step_overhead.numpy_floor_step(vector, forward, buffers)
    for _ in range(step_overhead.NUM_STEPS):
        one_step()
    assert 0.73 < buffers["actions"].mean() < 0.77  # 8,192 draws: the bounds are 4 sigma
    expected = np.where(buffers["actions"] == 1, np.log(0.75), np.log(0.25))
    np.testing.assert_allclose(buffers["log_probs"], expected, rtol=1e-5)
    vector.close()
