"""The docs' debugging checks and layer_init."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn as nn

from policies import BasicPolicy, layer_init


def test_layer_init_orthogonal_weights_and_constant_bias():
    layer = layer_init(nn.Linear(64, 32), std=2.0, bias_const=0.5)
    weight = layer.weight.detach()
    # Orthogonal rows scaled by std: W Wᵀ = std² I.
    torch.testing.assert_close(weight @ weight.T, 4.0 * torch.eye(32), atol=1e-4, rtol=1e-4)
    assert torch.all(layer.bias == 0.5)


def test_layer_init_works_on_conv_and_returns_the_layer():
    conv = nn.Conv2d(3, 32, kernel_size=8, stride=4)
    assert layer_init(conv) is conv
    flat = conv.weight.detach().reshape(32, -1)
    torch.testing.assert_close(flat @ flat.T, 2.0 * torch.eye(32), atol=1e-4, rtol=1e-4)
    assert torch.all(conv.bias == 0.0)


@pytest.mark.parametrize(
    "action_space, head",
    [(gym.spaces.Discrete(3), 3), (gym.spaces.MultiDiscrete([2, 5]), 7)],
)
def test_basic_policy_shapes(action_space, head):
    space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    policy = BasicPolicy(space, action_space)
    logits, value = policy(torch.randn(32, *space.shape))
    assert logits.shape == (32, head)
    assert value.shape == (32, 1)


def test_basic_policy_every_parameter_gets_a_finite_gradient():
    space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    policy = BasicPolicy(space, gym.spaces.Discrete(2))
    obs = torch.randn(1, 4, requires_grad=True)
    logits, value = policy(obs)
    (logits.sum() + value.sum()).backward()
    for name, parameter in policy.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name


def test_basic_policy_heads_use_documented_init_scales():
    policy = BasicPolicy(gym.spaces.Box(-1, 1, (4,), np.float32), gym.spaces.Discrete(2))
    actor, critic = policy.actor.weight.detach(), policy.critic.weight.detach()
    torch.testing.assert_close(actor @ actor.T, 1e-4 * torch.eye(2), atol=1e-7, rtol=1e-4)
    torch.testing.assert_close(critic @ critic.T, torch.ones(1, 1), atol=1e-5, rtol=1e-4)
