"""The PPO objective for one minibatch.

The clipped surrogate, the value loss and the entropy bonus are one autograd function whose
gradients with respect to the log-probabilities, values and entropies are written out: for a
small policy each op autograd records and replays costs more dispatch than math, and the loss
had about as many ops as the policy's own forward and backward.
"""

from __future__ import annotations

from typing import Any

import torch

from puffertrain.buffer import Minibatch
from puffertrain.config import PPOConfig
from puffertrain.ppo.adapter import PolicyAdapter

# the statistics the loss returns, in the order the objective returns them
STATISTICS = ("policy_loss", "value_loss", "entropy", "old_approx_kl", "approx_kl", "clipfrac")


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The mean of ``values`` over the entries where ``mask`` is 1 (all of them when None)."""
    if mask is None:
        return values.mean()
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def normalized(advantages: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Advantages shifted and scaled to mean 0 and (sample) std 1 over the masked-in entries."""
    if mask is None:
        std, mean = torch.std_mean(advantages)  # one reduction where .mean() and .std() take two
        return (advantages - mean) / (std + 1e-8)
    centred = advantages - masked_mean(advantages, mask)
    count = mask.sum()
    variance = (centred**2 * mask).sum() / (count - 1).clamp(min=1.0)
    return centred / (variance.sqrt() + 1e-8)


def objective_gradients(
    new_log_probs: torch.Tensor,
    entropy: torch.Tensor,
    new_values: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    old_values: torch.Tensor,
    mask: torch.Tensor | None,
    config: PPOConfig,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], torch.Tensor, torch.Tensor, Any]:
    """CleanRL's PPO loss of one minibatch from the policy's new log-probabilities, entropies
    and values: ``-mean(min(A r, A clip(r))) + vf_coef * 0.5 * mean(value error²) - ent_coef *
    mean(entropy)``, the value error optionally CleanRL's clipped one (the larger of the two).
    Means are over the rows ``mask`` keeps (all when None).

    Returns the loss, the :data:`STATISTICS` (0-d tensors: no constant tensor is built, which
    on a GPU would be a host-to-device copy that waits for the queue at every minibatch) and
    the loss's gradients with respect to each row's log-probability, value and entropy, taken
    as autograd would through ``min``, ``max`` and ``clamp`` (the branch that is taken carries
    the gradient). The entropy's is a float when every row counts, None when ``ent_coef`` is 0.
    """
    clip = config.clip_coef
    log_ratio = new_log_probs - old_log_probs
    ratio = log_ratio.exp()
    unclipped = advantages * ratio
    surrogate = torch.minimum(unclipped, advantages * ratio.clamp(1 - clip, 1 + clip))
    # where the unclipped term is the smaller (or equal: inside the clip range) it carries
    # the gradient d(A r)/d(log r) = A r; elsewhere the clamp stops it
    surrogate_gradient = torch.where(unclipped <= surrogate, unclipped, 0.0)

    error = new_values - returns
    squared_error = error.square()
    if config.clip_vloss:
        moved = new_values - old_values
        clipped_error = old_values + moved.clamp(-clip, clip) - returns
        clipped_squared = clipped_error.square()
        error = torch.where(
            squared_error >= clipped_squared, error, clipped_error * (moved.abs() <= clip)
        )
        squared_error = torch.maximum(squared_error, clipped_squared)

    ratio_change = ratio - 1.0
    rows = torch.stack(
        [
            surrogate,
            squared_error,
            entropy,
            log_ratio,
            ratio_change - log_ratio,
            (ratio_change.abs() > clip).to(ratio.dtype),
        ]
    )
    # sums and one scale, because a mean costs 3x a sum at this size
    if mask is None:
        weights = 1.0 / new_log_probs.numel()
        means = rows.sum(1) * weights
    else:
        weights = mask / mask.sum().clamp(min=1.0)
        means = (rows * weights).sum(1)
    surrogate_mean, squared_mean, entropy_mean, log_ratio_mean, kl, clipfrac = means.unbind()
    policy_loss, value_loss = -surrogate_mean, 0.5 * squared_mean
    loss = policy_loss + config.vf_coef * value_loss
    if config.ent_coef:
        loss = loss - config.ent_coef * entropy_mean
    statistics = (policy_loss, value_loss, entropy_mean, -log_ratio_mean, kl, clipfrac)
    entropy_gradient = weights * -config.ent_coef if config.ent_coef else None
    return (
        loss,
        statistics,
        surrogate_gradient.mul_(-weights),
        error.mul_(weights * config.vf_coef),
        entropy_gradient,
    )


class ClippedObjective(torch.autograd.Function):
    """:func:`objective_gradients` as one autograd function: for a small policy each op
    autograd records and replays costs more dispatch than math. Returns the loss and the
    :data:`STATISTICS`; the forward pass computes the gradients too, so the backward pass is a
    multiply per input, and none reaches the entropies when ``ent_coef`` is 0."""

    @staticmethod
    def forward(ctx: Any, *inputs: Any) -> tuple[torch.Tensor, ...]:
        """``inputs``: :func:`objective_gradients`' arguments, in its order."""
        loss, statistics, log_prob_gradient, value_gradient, entropy_gradient = objective_gradients(
            *inputs
        )
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(log_prob_gradient, value_gradient)
        ctx.entropy_gradient = entropy_gradient  # each row's (a float when every row counts)
        ctx.mark_non_differentiable(*statistics)
        return loss, *statistics

    @staticmethod
    def backward(
        ctx: Any, grad_loss: torch.Tensor | None, *_grad_statistics: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, ...]:
        if grad_loss is None:
            return (None,) * 9
        log_prob_gradient, value_gradient = ctx.saved_tensors
        entropy_gradient = None
        if ctx.entropy_gradient is not None and ctx.needs_input_grad[1]:
            entropy_gradient = (grad_loss * ctx.entropy_gradient).expand_as(log_prob_gradient)
        return (
            log_prob_gradient * grad_loss,
            entropy_gradient,
            value_gradient * grad_loss,
            *(None,) * 6,
        )


def ppo_loss(
    adapter: PolicyAdapter, batch: Minibatch, config: PPOConfig
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate + (clipped) value loss − entropy bonus; returns the loss and its parts."""
    new_log_probs, entropy, new_values = adapter.evaluate(
        batch.observations,
        batch.actions,
        batch.states,
        batch.episode_starts,
        batch.agent_ids,
        batch.action_masks,
    )
    advantages = normalized(batch.advantages, batch.mask) if config.norm_adv else batch.advantages
    loss, *statistics = ClippedObjective.apply(
        new_log_probs,
        entropy,
        new_values,
        batch.log_probs,
        advantages,
        batch.returns,
        batch.values,
        batch.mask,
        config,
    )
    return loss, dict(zip(STATISTICS, statistics, strict=True))
