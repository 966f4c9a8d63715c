"""Actor and critic heads sized from the action space, shared by every policy in the library.

Discrete and MultiDiscrete actions get one linear layer of logits (one block per dimension);
Box actions get a Gaussian head: a linear mean and a state-independent log-std parameter. The
trainer turns these outputs into distributions; policies never sample.
"""

from __future__ import annotations

import math

import gymnasium as gym
import torch
import torch.nn as nn

from policies.init import layer_init


def action_head_size(action_space: gym.spaces.Space) -> int:
    """Outputs an actor head has for ``action_space``: n logits for Discrete(n), one block of
    logits per dimension for MultiDiscrete, one mean per dimension for Box."""
    if isinstance(action_space, gym.spaces.Discrete):
        return int(action_space.n)
    if isinstance(action_space, gym.spaces.MultiDiscrete):
        return int(action_space.nvec.sum())
    if isinstance(action_space, gym.spaces.Box):
        return math.prod(action_space.shape)
    raise ValueError("needs a Discrete, MultiDiscrete or Box action space")


class GaussianHead(nn.Module):
    """``(mean, std)`` of a diagonal Normal: a linear mean (std 0.01) and a log-std parameter
    that does not depend on the state, starting at ``log_std_init`` (0, std 1, as in CleanRL;
    SB3's policy keyword of the same name)."""

    def __init__(
        self, hidden_size: int, action_space: gym.spaces.Box, log_std_init: float = 0.0
    ) -> None:
        super().__init__()
        size = action_head_size(action_space)
        self.mean = layer_init(nn.Linear(hidden_size, size), std=0.01)
        self.logstd = nn.Parameter(torch.full((1, size), float(log_std_init)))

    def forward(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.mean(hidden)
        return mean, self.logstd.exp().expand_as(mean)


def actor_head(
    hidden_size: int, action_space: gym.spaces.Space, log_std_init: float = 0.0
) -> nn.Module:
    """A logits layer (std 0.01) for discrete actions, a :class:`GaussianHead` (starting at
    ``log_std_init``) for Box."""
    if isinstance(action_space, gym.spaces.Box):
        return GaussianHead(hidden_size, action_space, log_std_init)
    return layer_init(nn.Linear(hidden_size, action_head_size(action_space)), std=0.01)


def actor_critic(
    actor: nn.Module,
    critic: nn.Module,
    hidden: torch.Tensor,
    critic_hidden: torch.Tensor | None = None,
) -> tuple:
    """``(logits, value)`` or ``(mean, std, value)`` from heads made by :func:`actor_head`; the
    critic reads ``critic_hidden`` where given, else ``hidden``."""
    outputs = actor(hidden)
    value = critic(hidden if critic_hidden is None else critic_hidden)
    return (*outputs, value) if isinstance(outputs, tuple) else (outputs, value)


class EncoderHeads(nn.Module):
    """An encoder, then actor and critic heads, with room for a core between them.

    ``encode_observations`` runs ``encoder`` on the observations as floats;
    ``decode_actions`` maps ``head_size`` features to ``(logits, value)`` or
    ``(mean, std, value)``; given ``critic_hidden`` too, the critic reads that instead (a core
    with a separate critic, such as :class:`~policies.recurrent.LSTMWrapper`'s critic LSTM).
    ``forward`` is the two in turn. ``log_std_init``: where the Box actions' log-std starts.
    """

    def __init__(
        self,
        encoder: nn.Module,
        head_size: int,
        action_space: gym.spaces.Space,
        log_std_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.action_space = action_space
        self.encoder = encoder
        self.actor = actor_head(head_size, action_space, log_std_init)
        self.critic = layer_init(nn.Linear(head_size, 1), std=1.0)

    def encode_observations(self, observations: torch.Tensor) -> torch.Tensor:
        return self.encoder(observations.float())

    def decode_actions(
        self, hidden: torch.Tensor, critic_hidden: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        return actor_critic(self.actor, self.critic, hidden, critic_hidden)

    def forward(self, observations: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.decode_actions(self.encode_observations(observations))
