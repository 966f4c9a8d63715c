"""The PPO objective for one minibatch."""

from __future__ import annotations

import torch

from puffertrain.buffer import Minibatch
from puffertrain.config import PPOConfig
from puffertrain.ppo.adapter import PolicyAdapter


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The mean of ``values`` over the entries where ``mask`` is 1 (all of them when None)."""
    if mask is None:
        return values.mean()
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def normalized(advantages: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Advantages shifted and scaled to mean 0 and (sample) std 1 over the masked-in entries."""
    if mask is None:
        return (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    centred = advantages - masked_mean(advantages, mask)
    count = mask.sum()
    variance = (centred**2 * mask).sum() / (count - 1).clamp(min=1.0)
    return centred / (variance.sqrt() + 1e-8)


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
    mask = batch.mask
    log_ratio = new_log_probs - batch.log_probs
    ratio = log_ratio.exp()

    advantages = normalized(batch.advantages, mask) if config.norm_adv else batch.advantages
    # the clipped surrogate is the smaller of the two objectives; its negation is the loss
    surrogate = torch.min(
        advantages * ratio, advantages * ratio.clamp(1 - config.clip_coef, 1 + config.clip_coef)
    )
    policy_loss = -masked_mean(surrogate, mask)

    value_error = (new_values - batch.returns) ** 2
    if config.clip_vloss:
        clipped_values = batch.values + (new_values - batch.values).clamp(
            -config.clip_coef, config.clip_coef
        )
        value_error = torch.max(value_error, (clipped_values - batch.returns) ** 2)
    value_loss = 0.5 * masked_mean(value_error, mask)

    entropy_loss = masked_mean(entropy, mask)
    loss = policy_loss + config.vf_coef * value_loss
    if config.ent_coef:  # without a bonus, no backward pass through the entropy
        loss = loss - config.ent_coef * entropy_loss
    with torch.no_grad():
        ratio_change = ratio - 1.0
        stats = {
            "policy_loss": policy_loss.detach(),
            "value_loss": value_loss.detach(),
            "entropy": entropy_loss.detach(),
            "old_approx_kl": -masked_mean(log_ratio, mask),
            "approx_kl": masked_mean(ratio_change - log_ratio, mask),
            "clipfrac": masked_mean((ratio_change.abs() > config.clip_coef).float(), mask),
        }
    return loss, stats
