"""experiments/step_overhead.py's numpy floor samples every action from the softmax, so its cost
is the cost of the same work (its forward is the numpy actor's: tests/test_numpy_actor.py)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def step_overhead(experiment_script):
    return experiment_script("step_overhead")


def test_numpy_floor_step_samples_from_the_softmax_and_stores_the_log_probability(step_overhead):
    import gymnasium as gym

    vector = gym.make_vec("CartPole-v1", num_envs=64, vectorization_mode="vector_entry_point")
    skewed = np.log(np.array([[1.0, 3.0]], np.float32))  # P(action 1) = 0.75

    def forward(observations):
        return np.repeat(skewed, len(observations), axis=0), np.zeros(len(observations))

    buffers = step_overhead.floor_buffers(64)
    one_step = step_overhead.numpy_floor_step(vector, forward, buffers)
    for _ in range(step_overhead.NUM_STEPS):
        one_step()
    assert 0.73 < buffers["actions"].mean() < 0.77  # 8,192 draws: the bounds are 4 sigma
    expected = np.where(buffers["actions"] == 1, np.log(0.75), np.log(0.25))
    np.testing.assert_allclose(buffers["log_probs"], expected, rtol=1e-5)
    vector.close()
