"""The PPO objective for one minibatch."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from policies.recurrent import State
from puffertrain.config import PPOConfig
from puffertrain.ppo.agent import Agent


@dataclass
class Minibatch:
    """Rollout data for one minibatch, flattened over steps and envs.

    For a recurrent policy the minibatch is ``B`` sequences of ``T`` steps: ``observations``
    keep their ``[T, B, ...]`` shape, the other fields are flat in ``[T, B]`` order, and
    ``states`` / ``episode_starts[T, B]`` say where each sequence starts from and resets.
    """

    observations: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    values: torch.Tensor
    states: State | None = None
    episode_starts: torch.Tensor | None = None


def ppo_loss(
    agent: Agent, batch: Minibatch, config: PPOConfig
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate + (clipped) value loss − entropy bonus; returns the loss and its parts."""
    new_log_probs, entropy, new_values = agent.evaluate(
        batch.observations, batch.actions, batch.states, batch.episode_starts
    )
    log_ratio = new_log_probs - batch.log_probs
    ratio = log_ratio.exp()

    advantages = batch.advantages
    if config.norm_adv:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    policy_loss = torch.max(
        -advantages * ratio,
        -advantages * ratio.clamp(1 - config.clip_coef, 1 + config.clip_coef),
    ).mean()

    value_error = (new_values - batch.returns) ** 2
    if config.clip_vloss:
        clipped_values = batch.values + (new_values - batch.values).clamp(
            -config.clip_coef, config.clip_coef
        )
        value_error = torch.max(value_error, (clipped_values - batch.returns) ** 2)
    value_loss = 0.5 * value_error.mean()

    entropy_loss = entropy.mean()
    loss = policy_loss - config.ent_coef * entropy_loss + config.vf_coef * value_loss
    with torch.no_grad():
        stats = {
            "policy_loss": policy_loss.detach(),
            "value_loss": value_loss.detach(),
            "entropy": entropy_loss.detach(),
            "old_approx_kl": (-log_ratio).mean(),
            "approx_kl": ((ratio - 1) - log_ratio).mean(),
            "clipfrac": ((ratio - 1.0).abs() > config.clip_coef).float().mean(),
        }
    return loss, stats
