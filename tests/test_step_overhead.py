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


def test_the_single_envs_env_time_steps_each_env_and_resets_the_ended_ones(step_overhead):
    import gymnasium as gym

    class Counting(gym.Wrapper):
        steps = resets = 0

        def step(self, action):
            assert not self.over, "stepped past the end of an episode"
            Counting.steps += 1
            result = super().step(action)
            self.over = result[2] or result[3]
            return result

        def reset(self, **kwargs):
            Counting.resets += 1
            self.over = False
            return super().reset(**kwargs)

    envs = [Counting(gym.make("CartPole-v1")) for _ in range(3)]
    one_step = step_overhead.single_envs_step(envs, np.ones(3, dtype=np.int64))
    for _ in range(100):  # always pushing right: an episode ends within ~10 steps
        one_step()
    assert Counting.steps == 300 and Counting.resets > 3 + 10
