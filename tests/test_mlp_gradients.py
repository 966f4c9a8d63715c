"""The library MLPs act from their layers as their modules do, and their written-out gradients
are autograd's: for each network, action space, mask and loss option, the loss, its statistics
and every parameter's gradient match ``ppo_loss`` + ``backward``. Any other network keeps its
modules and autograd."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn as nn

from policies.mlp import BasicPolicy, mlp_encoder
from puffertrain.buffer import RolloutBuffer
from puffertrain.config import PPOConfig
from puffertrain.policy_loader import build_policy
from puffertrain.ppo.adapter import PolicyAdapter
from puffertrain.ppo.flat_parameters import FlatParameters
from puffertrain.ppo.known_mlp import KnownMLP
from puffertrain.ppo.learner import Learner
from puffertrain.ppo.loss import ppo_loss
from puffertrain.ppo.mlp_gradients import MLPGradients
from tests.user_policy import TinyPolicy

OBSERVATIONS = gym.spaces.Box(-1.0, 1.0, (2, 3), np.float32)  # flattened by the encoder
DISCRETE = gym.spaces.Discrete(7)
MULTI = gym.spaces.MultiDiscrete([3, 4])
BOX = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

CASES = {
    "mlp, Discrete": ("mlp", DISCRETE, {}),
    "mlp, Discrete, masked": ("mlp", DISCRETE, {"masked": True}),
    "mlp, MultiDiscrete, masked": ("mlp", MULTI, {"masked": True}),
    "mlp, no entropy bonus, clipped value loss": (
        "mlp",
        DISCRETE,
        {"ppo": {"ent_coef": 0.0, "clip_vloss": True}},
    ),
    "mlp, dead agents' rows": ("mlp", DISCRETE, {"dead_rows": True}),
    "separate_mlp (tanh), normalised, Discrete": ("separate_mlp", DISCRETE, {"normalize": True}),
    "separate_mlp (tanh), normalised, Box, dead rows": (
        "separate_mlp",
        BOX,
        {"normalize": True, "dead_rows": True},
    ),
    "continuous": ("continuous", BOX, {}),
    "continuous, no entropy bonus, raw advantages": (
        "continuous",
        BOX,
        {"ppo": {"ent_coef": 0.0, "norm_adv": False}},
    ),
}


def _adapter_and_buffer(policy, action_space, masked=False, normalize=False, dead_rows=False):
    torch.manual_seed(0)
    adapter = PolicyAdapter(
        build_policy(policy, OBSERVATIONS, action_space, normalize), action_space
    )
    mask_size = DISCRETE.n if action_space is DISCRETE else int(MULTI.nvec.sum())
    buffer = RolloutBuffer(
        8, 4, OBSERVATIONS, action_space, torch.device("cpu"), mask_size=mask_size if masked else 0
    )
    torch.manual_seed(1)
    buffer.observations.normal_()
    if isinstance(action_space, gym.spaces.Box):
        buffer.actions.normal_()
    else:
        buffer.actions.random_(0, 2)  # legal under the masks below
    if masked:  # actions 0, 1 and 5 of each block allowed
        buffer.action_masks.zero_()
        buffer.action_masks[..., :2] = 1
        buffer.action_masks[..., 5] = 1
    buffer.log_probs.normal_().sub_(2.0)
    for field in (buffer.advantages, buffer.returns, buffer.values):
        field.normal_()
    if normalize:
        adapter.policy.update_normalization(buffer.observations.flatten(0, 1) * 3 + 1)
    return adapter, buffer


def _minibatch(buffer, dead_rows):
    batch = next(iter(next(buffer.minibatches(2, 1))))
    if dead_rows:
        alive = torch.ones_like(batch.log_probs)
        alive[::3] = 0.0
        batch = dataclasses.replace(batch, mask=alive)
    return batch


@pytest.mark.parametrize("case", CASES)
def test_written_gradients_are_autograds(case):
    policy, action_space, options = CASES[case]
    ppo = PPOConfig(**options.get("ppo", {}))
    adapter, buffer = _adapter_and_buffer(
        policy,
        action_space,
        options.get("masked", False),
        options.get("normalize", False),
        options.get("dead_rows", False),
    )
    parameters = list(adapter.parameters())
    flat = FlatParameters(parameters, torch.optim.Adam(parameters, fused=True))
    written = MLPGradients.of(adapter, flat, ppo)
    assert written is not None
    batch = _minibatch(buffer, options.get("dead_rows", False))

    expected_loss, expected_statistics = ppo_loss(adapter, batch, ppo)
    expected_loss.backward()
    loss, statistics = written(batch)
    flat.gradients.fill_(float("nan"))  # every gradient must be written
    written.backward()

    torch.testing.assert_close(loss, expected_loss.detach())
    torch.testing.assert_close(statistics, expected_statistics)
    for parameter, gradient in zip(parameters, flat.gradient_views, strict=True):
        torch.testing.assert_close(gradient, parameter.grad)
        assert gradient.abs().sum() > 0


def _frozen(adapter):
    adapter.policy.critic.bias.requires_grad_(False)
    return adapter


class _Subclass(BasicPolicy):
    def forward(self, observations):
        logits, value = super().forward(observations)
        return logits * 2.0, value


def _gelu_policy():
    policy = BasicPolicy(OBSERVATIONS, DISCRETE)
    policy.encoder = mlp_encoder(OBSERVATIONS, 256, 256, activation=nn.GELU)
    return policy


def _extra_parameter():
    policy = BasicPolicy(OBSERVATIONS, DISCRETE)
    policy.temperature = nn.Parameter(torch.ones(1))  # not one of the layers': never written
    return policy


REFUSED = {
    "a user's policy": lambda: PolicyAdapter(TinyPolicy(OBSERVATIONS, DISCRETE), DISCRETE),
    "a subclass that changes forward": lambda: PolicyAdapter(
        _Subclass(OBSERVATIONS, DISCRETE), DISCRETE
    ),
    "an activation it does not know": lambda: PolicyAdapter(_gelu_policy(), DISCRETE),
    "a recurrent policy": lambda: PolicyAdapter(
        build_policy("lstm", OBSERVATIONS, DISCRETE), DISCRETE
    ),
    "bf16 autocast": lambda: PolicyAdapter(
        BasicPolicy(OBSERVATIONS, DISCRETE), DISCRETE, torch.bfloat16
    ),
    "a parameter outside its layers": lambda: PolicyAdapter(_extra_parameter(), DISCRETE),
    "a frozen parameter": lambda: _frozen(
        PolicyAdapter(BasicPolicy(OBSERVATIONS, DISCRETE), DISCRETE)
    ),
}


@pytest.mark.parametrize("case", REFUSED)
def test_any_other_network_keeps_autograd(case):
    adapter = REFUSED[case]()
    parameters = list(adapter.parameters())
    flat = FlatParameters(parameters, torch.optim.Adam(parameters, fused=True))
    assert MLPGradients.of(adapter, flat, PPOConfig()) is None


def test_parameters_off_the_flat_path_keep_autograd():
    adapter = PolicyAdapter(BasicPolicy(OBSERVATIONS, DISCRETE), DISCRETE)
    parameters = list(adapter.parameters())
    flat = FlatParameters(parameters, torch.optim.Adam(parameters, fused=True), flat=False)
    assert MLPGradients.of(adapter, flat, PPOConfig()) is None


@pytest.mark.parametrize("policy, action_space", [("mlp", MULTI), ("continuous", BOX)])
def test_an_update_with_written_gradients_is_the_autograd_update(policy, action_space):
    """Whole updates (epochs of minibatches, Adam steps) land on the same parameters and
    statistics with the learner's default (written out) as with autograd."""
    config = PPOConfig(num_minibatches=4, update_epochs=3)
    results = []
    for written in (True, False):
        adapter, buffer = _adapter_and_buffer(policy, action_space, masked=action_space is MULTI)
        learner = Learner(adapter, config)
        assert learner.written is not None
        if not written:
            learner.written = None
        torch.manual_seed(2)  # the same minibatch order
        statistics = learner.update(buffer, 3e-4)
        statistics |= learner.update(buffer, 3e-4)
        results.append(
            (torch.cat([p.detach().reshape(-1) for p in adapter.parameters()]), statistics)
        )
    (ours, our_statistics), (theirs, their_statistics) = results
    torch.testing.assert_close(ours, theirs)
    assert our_statistics == pytest.approx(their_statistics, rel=1e-4, abs=1e-6)


@pytest.mark.parametrize(
    "policy, action_space, normalize",
    [
        ("mlp", DISCRETE, False),
        ("mlp", MULTI, True),
        ("separate_mlp", DISCRETE, True),
        ("separate_mlp", BOX, False),
        ("continuous", BOX, True),
    ],
)
def test_the_known_mlp_acts_as_the_policys_modules(policy, action_space, normalize):
    """The adapter acts from a known MLP's layers: the same outputs as the modules' forward,
    bit for bit, at the rollout's batch sizes."""
    adapter, buffer = _adapter_and_buffer(policy, action_space, normalize=normalize)
    assert isinstance(adapter.known_mlp, KnownMLP)
    for rows in (1, 8):
        observations = buffer.observations[0, :1].expand(rows, -1, -1).contiguous()
        with torch.no_grad():
            expected = adapter.policy(observations)
            outputs = adapter.known_mlp(observations)
        assert len(outputs) == len(expected)
        for output, reference in zip(outputs, expected, strict=True):
            assert torch.equal(output, reference)


def test_other_policies_act_through_their_modules():
    assert PolicyAdapter(TinyPolicy(OBSERVATIONS, DISCRETE), DISCRETE).known_mlp is None
    assert PolicyAdapter(_Subclass(OBSERVATIONS, DISCRETE), DISCRETE).known_mlp is None
    assert PolicyAdapter(_gelu_policy(), DISCRETE).known_mlp is None
