"""The PPO loss's gradients for the library's MLP policies, written out instead of taken by
autograd.

A minibatch step of a small MLP (two layers of 64 or 256 on 64-256 rows) is mostly dispatch:
autograd records each op of the forward pass, then replays a node per op, with transposes,
views, detaches and gradient accumulations between the matrix products (~140 ops a step for
``mlp`` on a masked env, of which 11 are the products). Written out, the backward pass is the
products, a bias sum and an activation derivative per layer, with each parameter's gradient
written straight into :class:`~puffertrain.ppo.flat_parameters.FlatParameters`' flat gradient
tensor, which the clip and Adam step then read as they are.

Only the networks :class:`~puffertrain.ppo.known_mlp.KnownMLP` knows are taken (the library's
``mlp``, ``continuous`` and ``separate_mlp``, normalised or not), with Discrete, MultiDiscrete or
Box actions. Anything else (a user's policy, a subclass, recurrence, agent ids, autocast, a
GPU, a frozen parameter) keeps autograd.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from puffertrain.buffer import Minibatch
from puffertrain.config import PPOConfig
from puffertrain.ppo.adapter import (
    PolicyAdapter,
    categorical_score,
    gaussian_score,
    logits_gradient,
)
from puffertrain.ppo.flat_parameters import FlatParameters
from puffertrain.ppo.known_mlp import KnownMLP
from puffertrain.ppo.loss import STATISTICS, normalized, objective_gradients

_ACTIVATION_GRADIENTS = {
    nn.ReLU: lambda grad, output: torch.ops.aten.threshold_backward(grad, output, 0),
    nn.Tanh: torch.ops.aten.tanh_backward,
}
"""The gradient through each known activation, from its output (autograd's own kernels)."""


class MLPGradients:
    """Runs the PPO loss of a minibatch for a :class:`~puffertrain.ppo.known_mlp.KnownMLP`
    policy, as :func:`~puffertrain.ppo.loss.ppo_loss` would, and writes its gradients into
    ``flat.gradients``. Build it with :meth:`of`."""

    def __init__(
        self, adapter: PolicyAdapter, network: KnownMLP, flat: FlatParameters, config: PPOConfig
    ) -> None:
        self.adapter, self.network, self.flat, self.config = adapter, network, flat, config
        gradient_of = dict(zip(map(id, flat.parameters), flat.gradient_views, strict=True))
        self._gradients = {
            id(layer): (gradient_of[id(layer.weight)], gradient_of[id(layer.bias)])
            for layer in network.linear_layers()
        }
        self.log_std_gradient = (
            gradient_of[id(network.log_std)] if network.log_std is not None else None
        )
        self._backward: Any = None

    @classmethod
    def of(
        cls, adapter: PolicyAdapter, flat: FlatParameters, config: PPOConfig
    ) -> MLPGradients | None:
        """One for ``adapter``'s policy if it is a known MLP (its logits head for discrete
        actions, its Gaussian head for Box ones) and every trained parameter is one of its
        layers', on the flat float32 CPU path without autocast; else None."""
        if not isinstance(adapter, PolicyAdapter) or not flat.flat:
            return None
        network = adapter.known_mlp
        if network is None or adapter.autocast_dtype is not None or adapter.takes_agent_ids:
            return None
        if flat.device.type != "cpu" or network.gaussian != adapter.continuous:
            return None
        if any(parameter.dtype != torch.float32 for parameter in flat.parameters):
            return None
        # every trained parameter is written at every step, or the flat tensor keeps stale ones
        trained = set(map(id, flat.parameters))
        if {id(parameter) for parameter in adapter.parameters()} != trained:
            return None
        if {id(parameter) for parameter in network.parameters()} != trained:
            return None
        if not all(parameter.requires_grad for parameter in flat.parameters):
            return None
        return cls(adapter, network, flat, config)

    def __call__(self, batch: Minibatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.forward(batch)

    def forward(self, batch: Minibatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The minibatch's loss and :data:`~puffertrain.ppo.loss.STATISTICS`; keeps what
        :meth:`backward` needs."""
        with torch.no_grad():
            activations = self.network.trunk_activations(self.network.features(batch.observations))
            outputs, values = self.network.heads(activations)
            values = values.reshape(-1)
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
            score,
            log_prob_gradient,
            value_gradient,
            entropy_gradient,
        )
        return loss, dict(zip(STATISTICS, statistics, strict=True))

    def backward(self) -> None:
        """Write the last :meth:`forward`'s gradients into the flat gradient tensor."""
        activations, score, log_prob_gradient, value_gradient, entropy_gradient = self._backward
        self._backward = None
        network = self.network
        with torch.no_grad():
            if network.gaussian:
                output_gradient = self._gaussian_gradients(
                    score, log_prob_gradient, entropy_gradient
                )
            else:
                output_gradient = self._logits_gradient(score, log_prob_gradient, entropy_gradient)
            actor_trunk, critic_trunk = activations[0], activations[-1]
            actor_hidden = self._layer_backward(
                network.actor, None, output_gradient, actor_trunk[-1]
            )
            critic_hidden = self._layer_backward(
                network.critic, None, value_gradient.unsqueeze(-1), critic_trunk[-1]
            )
            if len(network.trunks) == 1:
                self._trunk_backward(0, actor_trunk, actor_hidden.add_(critic_hidden))
            else:
                self._trunk_backward(0, actor_trunk, actor_hidden)
                self._trunk_backward(1, critic_trunk, critic_hidden)

    def _layer_backward(
        self,
        layer: nn.Linear,
        activation: type[nn.Module] | None,
        grad: torch.Tensor,
        inputs: torch.Tensor,
        outputs: torch.Tensor | None = None,
        to_inputs: bool = True,
    ) -> torch.Tensor | None:
        """Write ``layer``'s weight and bias gradients from ``grad`` at its (activated)
        ``outputs``; return the gradient at its ``inputs`` if ``to_inputs``."""
        if activation is not None:
            grad = _ACTIVATION_GRADIENTS[activation](grad, outputs)
        weight_gradient, bias_gradient = self._gradients[id(layer)]
        torch.mm(grad.t(), inputs, out=weight_gradient)
        torch.sum(grad, 0, out=bias_gradient)
        return grad.mm(layer.weight) if to_inputs else None

    def _trunk_backward(
        self, index: int, activations: list[torch.Tensor], grad: torch.Tensor
    ) -> None:
        trunk = self.network.trunks[index]
        for depth in reversed(range(len(trunk))):
            layer, activation = trunk[depth]
            grad = self._layer_backward(
                layer,
                activation,
                grad,
                activations[depth],
                activations[depth + 1],
                to_inputs=depth > 0,
            )

    def _score(
        self, outputs: torch.Tensor, batch: Minibatch
    ) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """Log-probabilities and entropies of the stored actions, as the adapter scores them,
        and what the gradients need."""
        adapter = self.adapter
        if self.network.gaussian:
            std = self.network.log_std.exp().expand_as(outputs)
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
