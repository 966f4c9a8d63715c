"""The PPO update: epochs of shuffled minibatches, gradient clipping, LR annealing.

Feed-forward policies get minibatches of single transitions; recurrent policies get minibatches
of whole env sequences, each with its stored start state and its episode starts.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from puffertrain.config import PPOConfig
from puffertrain.distributed import any_rank, mean_over_ranks
from puffertrain.ppo.agent import Agent
from puffertrain.ppo.loss import Minibatch, ppo_loss
from puffertrain.rollout import RolloutBuffer

LossFn = Callable[[Agent, Minibatch, PPOConfig], tuple[torch.Tensor, dict[str, torch.Tensor]]]


class Objective(nn.Module):
    """The PPO loss of a minibatch as a module call, which ``DistributedDataParallel`` needs
    to average the gradients of the agent's parameters over the ranks."""

    def __init__(self, agent: Agent, config: PPOConfig, loss_fn: LossFn) -> None:
        super().__init__()
        self.agent = agent
        self.config = config
        self.loss_fn = loss_fn

    def forward(self, batch: Minibatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.loss_fn(self.agent, batch, self.config)


class Learner:
    """Owns the optimizer and runs one PPO update over a filled rollout buffer.

    ``data_parallel``: this is one rank of a torchrun job; each backward pass averages the
    gradients over the ranks (their minibatches come from their own rollouts), so identical
    parameters stay identical.
    """

    def __init__(
        self,
        agent: Agent,
        config: PPOConfig,
        compile_loss: bool = False,
        data_parallel: bool = False,
    ) -> None:
        self.agent = agent
        self.config = config
        # fused: one kernel per parameter instead of ~10 per step (measured 1.4× faster
        # minibatch steps for a small MLP, where dispatch overhead dominates)
        self.optimizer = torch.optim.Adam(
            agent.parameters(), lr=config.learning_rate, eps=1e-5, fused=True
        )
        objective = Objective(agent, config, torch.compile(ppo_loss) if compile_loss else ppo_loss)
        if data_parallel:
            # The constructor copies rank 0's parameters and buffers to all ranks; the trainer
            # keeps buffers (observation statistics) equal, so calls do not broadcast them. A
            # multi-agent minibatch may miss an agent, whose parameters then get no gradient.
            device = next(agent.parameters()).device
            objective = DistributedDataParallel(
                objective,
                device_ids=[device] if device.type == "cuda" else None,
                forward_sync_buffers=False,
                find_unused_parameters=agent.takes_agent_ids,
            )
        self.objective = objective

    def learning_rate(self, iteration: int, num_iterations: int) -> float:
        """Linearly annealed LR for 1-based ``iteration`` (constant when annealing is off)."""
        if not self.config.anneal_lr:
            return self.config.learning_rate
        return self.config.learning_rate * (1.0 - (iteration - 1.0) / num_iterations)

    def update(self, buffer: RolloutBuffer, learning_rate: float) -> dict[str, float]:
        """Optimise on the buffer; return mean loss statistics (CleanRL's logged values)."""
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate
        recurrent = buffer.start_states is not None
        data = sequences(buffer) if recurrent else transitions(buffer)
        select = _columns if recurrent else _rows
        num_samples = data.log_probs.shape[1 if recurrent else 0]  # sequences or transitions
        minibatch_size = num_samples // self.config.num_minibatches
        totals: dict[str, torch.Tensor] = {}
        count = 0
        for _ in range(self.config.update_epochs):
            order = torch.randperm(num_samples, device=data.log_probs.device)
            for start in range(0, num_samples - minibatch_size + 1, minibatch_size):
                minibatch = select(data, order[start : start + minibatch_size])
                loss, stats = self.objective(minibatch)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(self.agent.parameters(), self.config.max_grad_norm)
                self.optimizer.step()
                for key, value in stats.items():
                    totals[key] = totals.get(key, 0.0) + value
                count += 1
            if self.config.target_kl is not None:  # every rank stops after the same epoch
                (too_far,) = any_rank(float(stats["approx_kl"]) > self.config.target_kl)
                if too_far:
                    break
        results = {key: float(value) / count for key, value in totals.items()}
        values, returns = buffer.values, buffer.returns
        if buffer.alive is not None:  # dead agents' rows predict nothing
            live = buffer.alive.bool()
            values, returns = values[live], returns[live]
        results["explained_variance"] = _explained_variance(values.flatten(), returns.flatten())
        return mean_over_ranks(results)


_FIELDS = ("observations", "actions", "log_probs", "advantages", "returns", "values")


def _optional(tensor: torch.Tensor | None, pick: Callable[[torch.Tensor], torch.Tensor]):
    return None if tensor is None else pick(tensor)


def transitions(buffer: RolloutBuffer) -> Minibatch:
    """The whole buffer as one batch of transitions, flat over steps and envs."""
    return Minibatch(
        *(getattr(buffer, field).flatten(0, 1) for field in _FIELDS),
        agent_ids=_optional(buffer.agent_ids, lambda ids: ids.flatten(0, 1)),
        mask=_optional(buffer.alive, lambda alive: alive.flatten(0, 1)),
    )


def _rows(data: Minibatch, index: torch.Tensor) -> Minibatch:
    """Transitions ``index``. ``index_select`` copies whole rows: for a minibatch of 256
    Atari frame stacks it took 0.1 ms where ``tensor[index]`` took 2.1 ms (2 threads)."""
    return Minibatch(
        *(getattr(data, field).index_select(0, index) for field in _FIELDS),
        agent_ids=_optional(data.agent_ids, lambda ids: ids.index_select(0, index)),
        mask=_optional(data.mask, lambda mask: mask.index_select(0, index)),
    )


def sequences(buffer: RolloutBuffer) -> Minibatch:
    """The buffer as ``[L, S]`` sequences of ``L = sequence_length`` steps: column
    ``k * num_envs + e`` is env e's k-th sequence, with the state stored at its start."""
    length, num_envs = buffer.sequence_length, buffer.num_envs
    count = buffer.num_steps // length

    def columns(tensor: torch.Tensor) -> torch.Tensor:
        rest = tensor.shape[2:]
        by_sequence = tensor.reshape(count, length, num_envs, *rest).transpose(0, 1)
        return by_sequence.reshape(length, count * num_envs, *rest)

    episode_starts = torch.zeros_like(buffer.episode_ends, dtype=torch.bool)
    episode_starts[1:] = buffer.episode_ends[:-1].bool()
    return Minibatch(
        *(columns(getattr(buffer, field)) for field in _FIELDS),
        states=tuple(part.flatten(0, 1) for part in buffer.start_states),
        episode_starts=columns(episode_starts),
        agent_ids=_optional(buffer.agent_ids, columns),
        mask=_optional(buffer.alive, columns),
    )


def _columns(data: Minibatch, index: torch.Tensor) -> Minibatch:
    """Sequences ``index``: observations, episode starts and agent ids stay ``[T, B, ...]``,
    the rest flat in that order."""
    flat = [getattr(data, field).index_select(1, index).flatten(0, 1) for field in _FIELDS[1:]]
    return Minibatch(
        data.observations.index_select(1, index),
        *flat,
        states=tuple(part.index_select(0, index) for part in data.states),
        episode_starts=data.episode_starts.index_select(1, index),
        agent_ids=_optional(data.agent_ids, lambda ids: ids.index_select(1, index)),
        mask=_optional(data.mask, lambda mask: mask.index_select(1, index).flatten(0, 1)),
    )


def _explained_variance(predicted: torch.Tensor, target: torch.Tensor) -> float:
    variance = target.var()
    if variance == 0:
        return float("nan")
    return float(1.0 - (target - predicted).var() / variance)
