"""MLP policies for vector observations: the guide's BasicPolicy and ContinuousPolicy, and an actor
and a critic with nothing shared (SB3's and CleanRL's network)."""

from __future__ import annotations

import gymnasium as gym
import torch
import torch.nn as nn

from policies.features import VectorFeatures
from policies.heads import EncoderHeads, actor_critic, actor_head
from policies.init import layer_init


def mlp_encoder(
    observation_space: gym.spaces.Space, *sizes: int, activation: type[nn.Module] = nn.ReLU
) -> nn.Sequential:
    """:class:`VectorFeatures` (Box values flattened, categories one-hot), then one
    ``activation`` layer per entry of ``sizes`` (orthogonal init)."""
    features = VectorFeatures(observation_space)
    layers: list[nn.Module] = [features]
    width = features.output_size
    for size in sizes:
        layers += [layer_init(nn.Linear(width, size)), activation()]
        width = size
    return nn.Sequential(*layers)


class BasicPolicy(EncoderHeads):
    """The guide's BasicPolicy: MLP encoder (2 × ``hidden_size`` ReLU), actor head (std 0.01),
    critic head (std 1.0); ``forward(obs) -> (logits, value)``, value shaped ``(batch, 1)``.

    Takes any Box observation (flattened, any dtype), and Discrete / MultiDiscrete observations
    one-hot encoded (the guide's sketch reads ``observation_space.shape[0]``, which a Discrete
    does not have) and MultiBinary ones. Discrete and MultiDiscrete actions get logits; a Box
    action space gets the Gaussian head of :class:`ContinuousPolicy`, ``(mean, std, value)``,
    its log-std starting at ``log_std_init`` (SB3's policy keyword).
    """

    def __init__(
        self,
        observation_space: gym.spaces.Space,
        action_space: gym.spaces.Space,
        hidden_size: int = 256,
        log_std_init: float = 0.0,
    ) -> None:
        encoder = mlp_encoder(observation_space, hidden_size, hidden_size)
        super().__init__(encoder, hidden_size, action_space, log_std_init)
        self.observation_space = observation_space


class ContinuousPolicy(BasicPolicy):
    """The guide's ContinuousPolicy: the same MLP encoder, a linear mean (std 0.01), a log-std
    parameter that does not depend on the state, and a critic; ``forward(obs) -> (mean, std,
    value)``. The guide's ``get_action`` squashes the sample with tanh but scores it with the
    unsquashed Normal; here the trainer scores the Normal sample itself and clips only the
    action the env receives to the space's bounds (CleanRL's ppo_continuous_action).
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        action_space: gym.spaces.Box,
        hidden_size: int = 256,
        log_std_init: float = 0.0,
    ) -> None:
        if not isinstance(action_space, gym.spaces.Box):
            raise ValueError("needs a Box action space (mlp takes discrete ones)")
        super().__init__(observation_space, action_space, hidden_size, log_std_init)


class SeparateMLPPolicy(nn.Module):
    """An actor MLP and a critic MLP with no layer in common, 2 × ``hidden_size`` each (tanh
    unless ``activation`` says otherwise):
    the network of SB3's ``MlpPolicy`` and CleanRL ppo.py's ``Agent`` (not in the guide, whose
    policies share one encoder). ``forward(obs) -> (logits, value)``, or ``(mean, std, value)``
    for Box actions, their log-std starting at ``log_std_init``.

    Why it exists: the critic's gradient cannot reshape what the actor reads. On
    MountainCar-v0 with normalised observations the shared ``mlp`` never found the flag while
    this network did on every seed (experiments/RESULTS.md, "The classic-control network").
    """

    def __init__(
        self,
        observation_space: gym.spaces.Space,
        action_space: gym.spaces.Space,
        hidden_size: int = 64,
        activation: type[nn.Module] = nn.Tanh,
        log_std_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.observation_space, self.action_space = observation_space, action_space
        self.actor_encoder = mlp_encoder(
            observation_space, hidden_size, hidden_size, activation=activation
        )
        self.critic_encoder = mlp_encoder(
            observation_space, hidden_size, hidden_size, activation=activation
        )
        self.actor = actor_head(hidden_size, action_space, log_std_init)
        self.critic = layer_init(nn.Linear(hidden_size, 1), std=1.0)

    def forward(self, observations: torch.Tensor) -> tuple[torch.Tensor, ...]:
        observations = observations.float()
        return actor_critic(
            self.actor,
            self.critic,
            self.actor_encoder(observations),
            self.critic_encoder(observations),
        )
