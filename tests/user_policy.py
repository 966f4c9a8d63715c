"""A user's own policy, loaded with --policy tests.user_policy:TinyPolicy."""

from __future__ import annotations

import torch.nn as nn

from policies import layer_init


class TinyPolicy(nn.Module):
    def __init__(self, observation_space, action_space):
        super().__init__()
        self.body = nn.Sequential(layer_init(nn.Linear(observation_space.shape[0], 16)), nn.Tanh())
        self.actor = layer_init(nn.Linear(16, action_space.n), std=0.01)
        self.critic = layer_init(nn.Linear(16, 1), std=1.0)

    def forward(self, obs):
        hidden = self.body(obs)
        return self.actor(hidden), self.critic(hidden)
