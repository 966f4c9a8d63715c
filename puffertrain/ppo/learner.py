"""The PPO update: epochs of shuffled minibatches, gradient clipping, LR annealing."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from puffertrain.config import PPOConfig
from puffertrain.ppo.agent import Agent
from puffertrain.ppo.loss import Minibatch, ppo_loss
from puffertrain.rollout import RolloutBuffer

LossFn = Callable[[Agent, Minibatch, PPOConfig], tuple[torch.Tensor, dict[str, torch.Tensor]]]


class Learner:
    """Owns the optimizer and runs one PPO update over a filled rollout buffer."""

    def __init__(self, agent: Agent, config: PPOConfig, compile_loss: bool = False) -> None:
        self.agent = agent
        self.config = config
        self.optimizer = torch.optim.Adam(agent.parameters(), lr=config.learning_rate, eps=1e-5)
        self.loss_fn: LossFn = torch.compile(ppo_loss) if compile_loss else ppo_loss

    def learning_rate(self, iteration: int, num_iterations: int) -> float:
        """Linearly annealed LR for 1-based ``iteration`` (constant when annealing is off)."""
        if not self.config.anneal_lr:
            return self.config.learning_rate
        return self.config.learning_rate * (1.0 - (iteration - 1.0) / num_iterations)

    def update(self, buffer: RolloutBuffer, learning_rate: float) -> dict[str, float]:
        """Optimise on the buffer; return mean loss statistics (CleanRL's logged values)."""
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate
        flat = Minibatch(
            observations=buffer.observations.flatten(0, 1),
            actions=buffer.actions.flatten(0, 1),
            log_probs=buffer.log_probs.flatten(),
            advantages=buffer.advantages.flatten(),
            returns=buffer.returns.flatten(),
            values=buffer.values.flatten(),
        )
        batch_size = flat.log_probs.shape[0]
        minibatch_size = batch_size // self.config.num_minibatches
        totals: dict[str, torch.Tensor] = {}
        count = 0
        for _ in range(self.config.update_epochs):
            order = torch.randperm(batch_size, device=flat.log_probs.device)
            for start in range(0, batch_size - minibatch_size + 1, minibatch_size):
                index = order[start : start + minibatch_size]
                minibatch = Minibatch(*(getattr(flat, f)[index] for f in _FIELDS))
                loss, stats = self.loss_fn(self.agent, minibatch, self.config)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(self.agent.parameters(), self.config.max_grad_norm)
                self.optimizer.step()
                for key, value in stats.items():
                    totals[key] = totals.get(key, 0.0) + value
                count += 1
            if self.config.target_kl is not None and stats["approx_kl"] > self.config.target_kl:
                break
        results = {key: float(value) / count for key, value in totals.items()}
        results["explained_variance"] = _explained_variance(flat.values, flat.returns)
        return results


_FIELDS = ("observations", "actions", "log_probs", "advantages", "returns", "values")


def _explained_variance(predicted: torch.Tensor, target: torch.Tensor) -> float:
    variance = target.var()
    if variance == 0:
        return float("nan")
    return float(1.0 - (target - predicted).var() / variance)
