"""A user's own policy, loaded with --policy tests.user_policy:TinyPolicy."""

from __future__ import annotations

import torch
import torch.nn as nn

from policies import layer_init
from policies.flatten import unflatten_observations
from policies.recurrent import LSTMWrapper


class TinyPolicy(nn.Module):
    def __init__(self, observation_space, action_space):
        super().__init__()
        self.body = nn.Sequential(layer_init(nn.Linear(observation_space.shape[0], 16)), nn.Tanh())
        self.actor = layer_init(nn.Linear(16, action_space.n), std=0.01)
        self.critic = layer_init(nn.Linear(16, 1), std=1.0)

    def forward(self, obs):
        hidden = self.body(obs)
        return self.actor(hidden), self.critic(hidden)


class DictReader(nn.Module):
    """Reads tests.envs:dict_env's flat rows back with unflatten_observations."""

    def __init__(self, observation_space, action_space):
        super().__init__()
        self.observation_space = observation_space
        self.body = nn.Sequential(layer_init(nn.Linear(16 + 3 + 1 + 2, 32)), nn.Tanh())
        self.actor = layer_init(nn.Linear(32, action_space.n), std=0.01)
        self.critic = layer_init(nn.Linear(32, 1), std=1.0)

    def forward(self, flat):
        obs = unflatten_observations(flat, self.observation_space)
        features = torch.cat(
            [
                obs["image"].flatten(1).float() / 255,
                obs["vector"],
                obs["extra"][0].unsqueeze(-1).float(),
                obs["extra"][1].float(),
            ],
            dim=-1,
        )
        hidden = self.body(features)
        return self.actor(hidden), self.critic(hidden)


class _TinyBody(nn.Module):
    def __init__(self, observation_space, action_space):
        super().__init__()
        self.encoder = nn.Sequential(
            layer_init(nn.Linear(observation_space.shape[0], 16)), nn.Tanh()
        )
        self.mean = layer_init(nn.Linear(16, action_space.shape[0]), std=0.01)
        self.actor_logstd = nn.Parameter(torch.zeros(1, action_space.shape[0]))
        self.critic = layer_init(nn.Linear(16, 1), std=1.0)

    def encode_observations(self, obs):
        return self.encoder(obs)

    def decode_actions(self, hidden):
        return (
            self.mean(hidden),
            self.actor_logstd.exp().expand(len(hidden), -1),
            self.critic(hidden),
        )


class TinyRecurrent(LSTMWrapper):
    """A user's recurrent policy for Box actions, built on the library's LSTMWrapper."""

    def __init__(self, observation_space, action_space):
        super().__init__(_TinyBody(observation_space, action_space), 16, 16)


class GuideRecurrentAsWritten(nn.Module):
    """The policies guide's RecurrentPolicy as written: forward takes and returns the state."""

    def __init__(self, observation_space, action_space):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(observation_space.shape[0], 16), nn.ReLU())
        self.lstm = nn.LSTM(16, 16)
        self.actor = nn.Linear(16, action_space.n)
        self.critic = nn.Linear(16, 1)

    def forward(self, observations, state=None):
        hidden, state = self.lstm(self.encoder(observations).unsqueeze(0), state)
        return self.actor(hidden[0]), self.critic(hidden[0]), state


class GuideOptimizedLSTMAsWritten(nn.Module):
    """The policies guide's OptimizedLSTMPolicy as written: encode and decode, no forward."""

    def __init__(self, observation_space, action_space):
        super().__init__()
        self.encoder = nn.Linear(observation_space.shape[0], 16)
        self.actor = nn.Linear(16, action_space.n)

    def encode_observations(self, observations, state):
        return self.encoder(observations), state

    def decode_actions(self, hidden, lookup, state):
        return self.actor(hidden), None


class ThreeOutputsForDiscreteActions(TinyPolicy):
    """Returns a third tensor, which for Discrete actions would be read as the value."""

    def forward(self, obs):
        logits, value = super().forward(obs)
        return logits, value, value.detach() * 0
