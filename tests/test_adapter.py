"""The action adapter agrees with torch.distributions for every supported action space."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
from torch.distributions import Categorical, Normal

from puffertrain.ppo import PolicyAdapter


class FixedOutputs(nn.Module):
    def __init__(self, *outputs: torch.Tensor) -> None:
        super().__init__()
        self.outputs = outputs

    def forward(self, obs):
        return self.outputs


def test_discrete_log_prob_and_entropy_match_categorical():
    torch.manual_seed(0)
    logits, value = torch.randn(16, 4), torch.randn(16, 1)
    agent = PolicyAdapter(FixedOutputs(logits, value), gym.spaces.Discrete(4))
    actions, log_probs, values, _ = agent.act(torch.zeros(16, 1))
    reference = Categorical(logits=logits)
    torch.testing.assert_close(log_probs, reference.log_prob(actions))
    torch.testing.assert_close(values, value.reshape(-1))
    new_log_probs, entropy, _ = agent.evaluate(torch.zeros(16, 1), actions)
    torch.testing.assert_close(new_log_probs, reference.log_prob(actions))
    torch.testing.assert_close(entropy, reference.entropy())


def test_discrete_sampling_follows_the_probabilities():
    torch.manual_seed(0)
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]])).expand(20000, 3)
    agent = PolicyAdapter(FixedOutputs(logits, torch.zeros(20000, 1)), gym.spaces.Discrete(3))
    actions, _, _, _ = agent.act(torch.zeros(20000, 1))
    frequencies = torch.bincount(actions, minlength=3).float() / 20000
    torch.testing.assert_close(frequencies, torch.tensor([0.7, 0.2, 0.1]), atol=0.02, rtol=0)


def test_multidiscrete_is_a_product_of_categoricals():
    torch.manual_seed(0)
    logits = torch.randn(8, 5)
    agent = PolicyAdapter(FixedOutputs(logits, torch.zeros(8, 1)), gym.spaces.MultiDiscrete([2, 3]))
    actions, log_probs, _, _ = agent.act(torch.zeros(8, 1))
    assert actions.shape == (8, 2)
    first, second = Categorical(logits=logits[:, :2]), Categorical(logits=logits[:, 2:])
    expected = first.log_prob(actions[:, 0]) + second.log_prob(actions[:, 1])
    torch.testing.assert_close(log_probs, expected)
    _, entropy, _ = agent.evaluate(torch.zeros(8, 1), actions)
    torch.testing.assert_close(entropy, first.entropy() + second.entropy())


def test_box_actions_use_a_diagonal_normal_with_mean_std_value_outputs():
    torch.manual_seed(0)
    mean, std = torch.randn(8, 2), torch.rand(8, 2) + 0.1
    space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    agent = PolicyAdapter(FixedOutputs(mean, std, torch.zeros(8, 1)), space)
    actions, log_probs, _, _ = agent.act(torch.zeros(8, 1))
    reference = Normal(mean, std)
    torch.testing.assert_close(log_probs, reference.log_prob(actions).sum(-1))
    _, entropy, _ = agent.evaluate(torch.zeros(8, 1), actions)
    torch.testing.assert_close(entropy, reference.entropy().sum(-1))


def test_box_actions_with_a_log_std_parameter():
    class MeanValue(nn.Module):
        def __init__(self):
            super().__init__()
            self.actor_logstd = nn.Parameter(torch.full((1, 2), -0.5))

        def forward(self, obs):
            return torch.zeros(obs.shape[0], 2), torch.zeros(obs.shape[0], 1)

    agent = PolicyAdapter(MeanValue(), gym.spaces.Box(-1.0, 1.0, (2,), np.float32))
    actions, log_probs, _, _ = agent.act(torch.zeros(4, 1))
    reference = Normal(torch.zeros(4, 2), torch.full((4, 2), float(np.exp(-0.5))))
    torch.testing.assert_close(log_probs, reference.log_prob(actions).sum(-1))


def test_box_actions_from_given_noise_are_scored_like_any_sample():
    # the rollout's colored noise: the action is mean + std * noise, and its log-probability
    # (taken from the noise) is the Normal's, as the update scores it from the action
    torch.manual_seed(1)
    mean, std, noise = torch.randn(16, 3), torch.rand(16, 3) + 0.05, 3 * torch.randn(16, 3)
    space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    agent = PolicyAdapter(FixedOutputs(mean, std, torch.zeros(16, 1)), space)
    actions, log_probs, _, _ = agent.act(torch.zeros(16, 1), noise=noise)
    torch.testing.assert_close(actions, mean + std * noise)
    torch.testing.assert_close(log_probs, Normal(mean, std).log_prob(actions).sum(-1))
    scored, _, _ = agent.evaluate(torch.zeros(16, 1), actions)
    torch.testing.assert_close(log_probs, scored)
    greedy, greedy_log_probs, _, _ = agent.act(torch.zeros(16, 1), deterministic=True)
    torch.testing.assert_close(greedy, mean)
    torch.testing.assert_close(greedy_log_probs, Normal(mean, std).log_prob(mean).sum(-1))


def test_deterministic_actions_are_the_mode():
    logits = torch.tensor([[0.0, 3.0, 1.0]])
    agent = PolicyAdapter(FixedOutputs(logits, torch.zeros(1, 1)), gym.spaces.Discrete(3))
    actions, _, _, _ = agent.act(torch.zeros(1, 1), deterministic=True)
    assert actions.item() == 1


def test_env_actions_clip_box_samples_to_the_bounds_and_shape():
    from puffertrain.ppo import env_actions

    space = gym.spaces.Box(-1.0, 1.0, (2, 1), np.float32)
    array = env_actions(torch.tensor([[3.0, -0.5], [-7.0, 0.25]]), space)
    assert array.shape == (2, 2, 1)
    np.testing.assert_array_equal(array[:, :, 0], [[1.0, -0.5], [-1.0, 0.25]])
    discrete = env_actions(torch.tensor([1, 0]), gym.spaces.Discrete(2))
    np.testing.assert_array_equal(discrete, [1, 0])
