"""The PPO loss's gradients for the library's MLP policies, written out instead of taken by
autograd.

A minibatch step of a small MLP (two layers of 64 or 256 on 64-256 rows) is mostly dispatch:
autograd records each op of the forward pass, then replays a node per op, with transposes,
views, detaches and gradient accumulations between the matrix products (~140 ops a step for
``mlp`` on a masked env, of which 11 are the products). Written out, the backward pass is the
products, a bias sum and an activation derivative per layer, with each parameter's gradient
written straight into :class:`~puffertrain.ppo.flat_parameters.FlatParameters`' flat gradient
tensor, which the clip and Adam step then read as they are.

Only networks whose every layer this module knows are taken: ``mlp`` (``BasicPolicy``),
``continuous`` (``ContinuousPolicy``) and ``separate_mlp`` (``SeparateMLPPolicy``), optionally
inside the observation normaliser (``NormalizedPolicy``), with float Box observations, ReLU or
tanh layers and Discrete, MultiDiscrete or Box actions. Anything else (a user's policy, a
subclass, recurrence, agent ids, autocast, a GPU) keeps autograd.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from policies.features import VectorFeatures
from policies.heads import GaussianHead
from policies.mlp import BasicPolicy, ContinuousPolicy, SeparateMLPPolicy
from policies.normalize import NormalizedPolicy
from puffertrain.buffer import Minibatch
from puffertrain.config import PPOConfig
from puffertrain.ppo.adapter import (
    PolicyAdapter,
    categorical_score,
    gaussian_score,
    logits_gradient,
)
from puffertrain.ppo.flat_parameters import FlatParameters
from puffertrain.ppo.loss import STATISTICS, normalized, objective_gradients

_ACTIVATION_GRADIENTS = {
    nn.ReLU: lambda grad, output: torch.ops.aten.threshold_backward(grad, output, 0),
    nn.Tanh: torch.ops.aten.tanh_backward,
}
"""The gradient through each known activation, from its output (autograd's own kernels)."""


@dataclass
class _Layer:
    """One linear layer with its activation (None for a head), and where its gradients go."""

    linear: nn.Linear
    activation: type[nn.Module] | None
    weight_gradient: torch.Tensor
    bias_gradient: torch.Tensor

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        outputs = torch.addmm(self.linear.bias, inputs, self.linear.weight.t())
        if self.activation is nn.ReLU:
            return outputs.relu_()
        if self.activation is nn.Tanh:
            return outputs.tanh_()
        return outputs

    def backward(
        self, grad: torch.Tensor, inputs: torch.Tensor, outputs: torch.Tensor, to_inputs: bool
    ) -> torch.Tensor | None:
        """Write the weight's and bias's gradients from ``grad`` (at the layer's output);
        return the gradient at its inputs if ``to_inputs``."""
        if self.activation is not None:
            grad = _ACTIVATION_GRADIENTS[self.activation](grad, outputs)
        torch.mm(grad.t(), inputs, out=self.weight_gradient)
        torch.sum(grad, 0, out=self.bias_gradient)
        return grad.mm(self.linear.weight) if to_inputs else None


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
        type(linear) is nn.Linear and linear.bias is not None and type(act) in _ACTIVATION_GRADIENTS
        for linear, act in pairs
    )
    return [(linear, type(act)) for linear, act in pairs] if known else None


class MLPGradients:
    """Runs the PPO loss of a minibatch for one of the MLP policies named in the module's
    docstring, as :func:`~puffertrain.ppo.loss.ppo_loss` would, and writes its gradients into
    ``flat.gradients``. Build it with :meth:`of`."""

    def __init__(
        self,
        adapter: PolicyAdapter,
        flat: FlatParameters,
        config: PPOConfig,
        normalizer: NormalizedPolicy | None,
        trunks: list[list[tuple[nn.Linear, type[nn.Module]]]],
        actor: nn.Module,
        critic: nn.Linear,
    ) -> None:
        self.adapter, self.flat, self.config = adapter, flat, config
        self.normalizer = normalizer
        gradient_of = dict(zip(map(id, flat.parameters), flat.gradient_views, strict=True))

        def layer(linear: nn.Linear, activation: type[nn.Module] | None) -> _Layer:
            return _Layer(
                linear, activation, gradient_of[id(linear.weight)], gradient_of[id(linear.bias)]
            )

        self.trunks = [[layer(linear, act) for linear, act in trunk] for trunk in trunks]
        self.gaussian = type(actor) is GaussianHead
        self.actor = layer(actor.mean if self.gaussian else actor, None)
        self.log_std = actor.logstd if self.gaussian else None
        self.log_std_gradient = gradient_of[id(actor.logstd)] if self.gaussian else None
        self.critic = layer(critic, None)
        self._backward: Any = None

    @classmethod
    def of(
        cls, adapter: PolicyAdapter, flat: FlatParameters, config: PPOConfig
    ) -> MLPGradients | None:
        """One for ``adapter``'s policy if its every layer is known and every trained
        parameter is one of them, on the flat float32 CPU path without autocast; else None."""
        if not isinstance(adapter, PolicyAdapter) or not flat.flat:
            return None
        if adapter.autocast_dtype is not None or adapter.recurrent:
            return None
        if adapter.takes_agent_ids or flat.device.type != "cpu":
            return None
        if any(parameter.dtype != torch.float32 for parameter in flat.parameters):
            return None
        policy, normalizer = adapter.policy, None
        if type(policy) is NormalizedPolicy:
            policy, normalizer = policy.policy, policy
        if type(policy) in (BasicPolicy, ContinuousPolicy):
            trunks = [_trunk_layers(policy.encoder)]
        elif type(policy) is SeparateMLPPolicy:
            trunks = [_trunk_layers(policy.actor_encoder), _trunk_layers(policy.critic_encoder)]
        else:
            return None
        actor, critic = policy.actor, policy.critic
        heads_known = type(critic) is nn.Linear and (
            type(actor) is GaussianHead or (type(actor) is nn.Linear and not adapter.continuous)
        )
        if any(trunk is None for trunk in trunks) or not heads_known:
            return None
        # every trained parameter is written at every step, or the flat tensor keeps stale ones
        if {id(parameter) for parameter in adapter.parameters()} != set(map(id, flat.parameters)):
            return None
        if not all(parameter.requires_grad for parameter in flat.parameters):
            return None
        return cls(adapter, flat, config, normalizer, trunks, actor, critic)

    def __call__(self, batch: Minibatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.forward(batch)

    def forward(self, batch: Minibatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The minibatch's loss and :data:`~puffertrain.ppo.loss.STATISTICS`; keeps what
        :meth:`backward` needs."""
        with torch.no_grad():
            observations = batch.observations
            if self.normalizer is not None:
                observations = self.normalizer.normalize(observations)
            observations = observations.reshape(observations.shape[0], -1).float()
            activations = [self._trunk_forward(trunk, observations) for trunk in self.trunks]
            actor_hidden, critic_hidden = activations[0][-1], activations[-1][-1]
            outputs = self.actor.forward(actor_hidden)
            values = self.critic.forward(critic_hidden).reshape(-1)
            log_probs, entropy, score = self._score(outputs, batch)
            advantages = batch.advantages
            if self.config.norm_adv:
                advantages = normalized(advantages, batch.mask)
            loss, statistics, log_prob_gradient, value_gradient, entropy_gradient = (
                objective_gradients(
                    log_probs,
                    entropy,
                    values,
                    batch.log_probs,
                    advantages,
                    batch.returns,
                    batch.values,
                    batch.mask,
                    self.config,
                )
            )
        self._backward = (
            activations,
            outputs,
            score,
            log_prob_gradient,
            value_gradient,
            entropy_gradient,
        )
        return loss, dict(zip(STATISTICS, statistics, strict=True))

    def backward(self) -> None:
        """Write the last :meth:`forward`'s gradients into the flat gradient tensor."""
        activations, outputs, score, log_prob_gradient, value_gradient, entropy_gradient = (
            self._backward
        )
        self._backward = None
        with torch.no_grad():
            if self.gaussian:
                output_gradient = self._gaussian_gradients(
                    score, log_prob_gradient, entropy_gradient
                )
            else:
                output_gradient = self._logits_gradient(score, log_prob_gradient, entropy_gradient)
            value_gradient = value_gradient.unsqueeze(-1)
            actor_trunk, critic_trunk = activations[0], activations[-1]
            actor_hidden = self.actor.backward(output_gradient, actor_trunk[-1], outputs, True)
            critic_hidden = self.critic.backward(value_gradient, critic_trunk[-1], None, True)
            if len(self.trunks) == 1:
                self._trunk_backward(self.trunks[0], actor_trunk, actor_hidden.add_(critic_hidden))
            else:
                self._trunk_backward(self.trunks[0], actor_trunk, actor_hidden)
                self._trunk_backward(self.trunks[1], critic_trunk, critic_hidden)

    @staticmethod
    def _trunk_forward(trunk: list[_Layer], observations: torch.Tensor) -> list[torch.Tensor]:
        activations = [observations]
        for layer in trunk:
            activations.append(layer.forward(activations[-1]))
        return activations

    @staticmethod
    def _trunk_backward(
        trunk: list[_Layer], activations: list[torch.Tensor], grad: torch.Tensor
    ) -> None:
        for index in reversed(range(len(trunk))):
            grad = trunk[index].backward(
                grad, activations[index], activations[index + 1], to_inputs=index > 0
            )

    def _score(
        self, outputs: torch.Tensor, batch: Minibatch
    ) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """Log-probabilities and entropies of the stored actions, as the adapter scores them,
        and what the gradients need."""
        adapter = self.adapter
        if self.gaussian:
            std = self.log_std.exp().expand_as(outputs)
            log_probs, entropy = gaussian_score(outputs, std, batch.actions)
            return log_probs, entropy, (batch.actions - outputs, std.square())
        if not adapter.multi_discrete:
            return categorical_score(
                outputs, batch.actions, batch.action_masks, adapter.masked_logit
            )
        masks = [None] * len(adapter.nvec)
        if batch.action_masks is not None:
            masks = adapter._split(batch.action_masks)
        scores = [
            categorical_score(block, batch.actions[:, dim], mask, adapter.masked_logit)
            for dim, (block, mask) in enumerate(zip(adapter._split(outputs), masks, strict=True))
        ]
        return sum(s[0] for s in scores), sum(s[1] for s in scores), [s[2] for s in scores]

    def _logits_gradient(
        self, score: Any, log_prob_gradient: torch.Tensor, entropy_gradient: Any
    ) -> torch.Tensor:
        if not self.adapter.multi_discrete:
            return logits_gradient(score, log_prob_gradient, entropy_gradient)
        blocks = [logits_gradient(saved, log_prob_gradient, entropy_gradient) for saved in score]
        return torch.cat(blocks, dim=-1)

    def _gaussian_gradients(
        self, score: Any, log_prob_gradient: torch.Tensor, entropy_gradient: Any
    ) -> torch.Tensor:
        """The mean's gradient; the log-std's is written into the flat gradient tensor."""
        difference, variance = score
        scale = log_prob_gradient.unsqueeze(-1)
        mean_gradient = difference / variance * scale
        # d log p / d log std = (a - mean)^2 / std^2 - 1 per dimension; dH / d log std = 1
        log_std_gradient = (difference.square() / variance - 1.0).mul_(scale).sum(0, keepdim=True)
        if entropy_gradient is not None:
            rows = log_prob_gradient.numel()
            total = (
                entropy_gradient.sum()
                if isinstance(entropy_gradient, torch.Tensor)
                else entropy_gradient * rows
            )
            log_std_gradient.add_(total)
        self.log_std_gradient.copy_(log_std_gradient)
        return mean_gradient
