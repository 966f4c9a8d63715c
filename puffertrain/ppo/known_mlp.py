"""The library's MLP policies seen as their layers, run without ``nn.Module`` calls.

At the rollout's batch sizes (1 to 64 rows) a forward pass of a small MLP is a few
microseconds of math per layer, and each module call around it (the policy, its encoders, the
features, every linear layer and activation, the heads: about 16 for ``separate_mlp``) costs a
few more. For the networks this module knows, the adapter and the update run the same ops
(``addmm`` and the activation, the values ``F.linear`` gives) straight from the layers.

Known: ``mlp`` (``BasicPolicy``), ``continuous`` (``ContinuousPolicy``) and ``separate_mlp``
(``SeparateMLPPolicy``), optionally inside the observation normaliser (``NormalizedPolicy``),
with float Box observations, ReLU or tanh layers, and a logits or Gaussian actor head. Exact
types only: a subclass may change ``forward``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from policies.features import VectorFeatures
from policies.heads import GaussianHead
from policies.mlp import BasicPolicy, ContinuousPolicy, SeparateMLPPolicy
from policies.normalize import NormalizedPolicy

ACTIVATIONS = (nn.ReLU, nn.Tanh)


def linear(layer: nn.Linear, inputs: torch.Tensor) -> torch.Tensor:
    """``layer(inputs)`` for 2-d inputs: the op ``F.linear`` runs."""
    return torch.addmm(layer.bias, inputs, layer.weight.t())


def activate(activation: type[nn.Module], values: torch.Tensor) -> torch.Tensor:
    """``activation`` applied in place to a layer's fresh output."""
    return values.relu_() if activation is nn.ReLU else values.tanh_()


def _trunk_layers(encoder: nn.Module) -> list[tuple[nn.Linear, type[nn.Module]]] | None:
    """``mlp_encoder``'s layers: flat float features, then linear layers each followed by a
    ReLU or tanh; None for any other encoder."""
    if type(encoder) is not nn.Sequential or len(encoder) < 3 or len(encoder) % 2 == 0:
        return None
    features, *rest = list(encoder)
    if type(features) is not VectorFeatures or features.bytes or features.categories is not None:
        return None
    pairs = list(zip(rest[::2], rest[1::2], strict=True))
    known = all(
        type(layer) is nn.Linear and layer.bias is not None and type(act) in ACTIVATIONS
        for layer, act in pairs
    )
    return [(layer, type(act)) for layer, act in pairs] if known else None


class KnownMLP:
    """One of the networks named in the module's docstring, as its layers. Build it with
    :meth:`of`; it reads the modules' parameters at every call, so moving or loading the
    policy keeps it current."""

    def __init__(
        self,
        normalizer: NormalizedPolicy | None,
        trunks: list[list[tuple[nn.Linear, type[nn.Module]]]],
        actor: nn.Module,
        critic: nn.Linear,
    ) -> None:
        self.normalizer = normalizer
        self.trunks = trunks
        """One trunk shared by the heads, or the actor's and the critic's."""
        self.gaussian = type(actor) is GaussianHead
        self.actor: nn.Linear = actor.mean if self.gaussian else actor
        self.log_std: nn.Parameter | None = actor.logstd if self.gaussian else None
        self.critic = critic

    @classmethod
    def of(cls, policy: nn.Module) -> KnownMLP | None:
        """``policy`` as its layers, or None if any part of it is not known."""
        normalizer = None
        if type(policy) is NormalizedPolicy:
            policy, normalizer = policy.policy, policy
        if type(policy) in (BasicPolicy, ContinuousPolicy):
            trunks = [_trunk_layers(policy.encoder)]
        elif type(policy) is SeparateMLPPolicy:
            trunks = [_trunk_layers(policy.actor_encoder), _trunk_layers(policy.critic_encoder)]
        else:
            return None
        actor, critic = policy.actor, policy.critic
        heads_known = type(critic) is nn.Linear and type(actor) in (nn.Linear, GaussianHead)
        if any(trunk is None for trunk in trunks) or not heads_known:
            return None
        return cls(normalizer, trunks, actor, critic)

    def linear_layers(self) -> list[nn.Linear]:
        """Every linear layer: the trunks', then the actor's and the critic's."""
        return [layer for trunk in self.trunks for layer, _ in trunk] + [self.actor, self.critic]

    def parameters(self) -> list[nn.Parameter]:
        """Every parameter the layers and the heads hold."""
        parameters = [p for layer in self.linear_layers() for p in (layer.weight, layer.bias)]
        return parameters if self.log_std is None else [*parameters, self.log_std]

    def features(self, observations: torch.Tensor) -> torch.Tensor:
        """What the first layers read: normalised where the policy normalises, flat, float."""
        if self.normalizer is not None:
            observations = self.normalizer.normalize(observations)
        return observations.reshape(observations.shape[0], -1).float()

    def trunk_activations(self, features: torch.Tensor) -> list[list[torch.Tensor]]:
        """Each trunk's inputs and every layer's output, in order (the last: its hidden)."""
        activations = []
        for trunk in self.trunks:
            outputs = [features]
            for layer, activation in trunk:
                outputs.append(activate(activation, linear(layer, outputs[-1])))
            activations.append(outputs)
        return activations

    def heads(self, activations: list[list[torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        """The actor's logits or mean, and the values shaped ``(batch, 1)``."""
        return linear(self.actor, activations[0][-1]), linear(self.critic, activations[-1][-1])

    def __call__(self, observations: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The policy's ``forward``: ``(logits, value)`` or ``(mean, std, value)``."""
        actor_outputs, values = self.heads(self.trunk_activations(self.features(observations)))
        if self.gaussian:
            return actor_outputs, self.log_std.exp().expand_as(actor_outputs), values
        return actor_outputs, values
