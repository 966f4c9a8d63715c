"""The PPO update: the optimizer steps over the buffer's minibatches, with gradient clipping
and LR annealing."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from puffertrain.buffer import Minibatch, RolloutBuffer
from puffertrain.buffer.minibatches import as_steps, whole_buffer_in_parts
from puffertrain.config import PPOConfig
from puffertrain.distributed import mean_over_ranks
from puffertrain.errors import UserError
from puffertrain.ppo.adapter import PolicyAdapter
from puffertrain.ppo.flat_parameters import FlatParameters
from puffertrain.ppo.loss import ppo_loss
from puffertrain.ppo.mlp_gradients import MLPGradients

LR_ADAPT_FACTOR = 1.5
"""--adaptive-lr-kl's step: the rate moves by this factor per update (rsl_rl's and rl_games')."""

LossFn = Callable[
    [PolicyAdapter, Minibatch, PPOConfig], tuple[torch.Tensor, dict[str, torch.Tensor]]
]


class Objective(nn.Module):
    """The PPO loss of a minibatch as a module call, which ``DistributedDataParallel`` needs
    to average the gradients of the adapter's parameters over the ranks."""

    def __init__(self, adapter: PolicyAdapter, config: PPOConfig, loss_fn: LossFn) -> None:
        super().__init__()
        self.adapter = adapter
        self.config = config
        self.loss_fn = loss_fn

    def forward(self, batch: Minibatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.loss_fn(self.adapter, batch, self.config)


class Learner:
    """Owns the optimizer and runs one PPO update over a filled rollout buffer.

    ``data_parallel``: this is one rank of a torchrun job; each backward pass averages the
    gradients over the ranks (their minibatches come from their own rollouts), so identical
    parameters stay identical.
    """

    def __init__(
        self,
        adapter: PolicyAdapter,
        config: PPOConfig,
        compile_loss: bool = False,
        data_parallel: bool = False,
    ) -> None:
        self.adapter = adapter
        self.config = config
        # every parameter, frozen ones too, as the optimizer states of existing checkpoints
        # list them; a frozen one gets no gradient, so its steps take the per-parameter path
        self.trained_parameters = list(adapter.parameters())
        # fused: one kernel per parameter instead of ~10 per step; for small policies the
        # dispatch overhead, not the math, is what an optimizer step costs
        self.optimizer = torch.optim.Adam(
            self.trained_parameters,
            lr=config.learning_rate,
            betas=config.adam_betas,
            eps=1e-5,
            fused=True,
        )
        self.flat = FlatParameters(self.trained_parameters, self.optimizer)
        # the library's MLPs take their gradients written out, unless the loss is compiled
        # or averaged over ranks (DistributedDataParallel reduces .grad fields)
        self.written = None
        if not (compile_loss or data_parallel):
            self.written = MLPGradients.of(adapter, self.flat, config)
        objective = Objective(
            adapter, config, torch.compile(ppo_loss) if compile_loss else ppo_loss
        )
        if data_parallel:
            # The constructor copies rank 0's parameters and buffers to all ranks; the trainer
            # keeps buffers (observation statistics) equal, so calls do not broadcast them. A
            # multi-adapter minibatch may miss an adapter, whose parameters then get no gradient.
            device = next(adapter.parameters()).device
            objective = DistributedDataParallel(
                objective,
                device_ids=[device] if device.type == "cuda" else None,
                forward_sync_buffers=False,
                find_unused_parameters=adapter.takes_agent_ids,
            )
        self.objective = objective

    def learning_rate(self, iteration: int, num_iterations: int) -> float:
        """The LR for 1-based ``iteration``: linearly annealed (constant when annealing is off),
        times :attr:`lr_scale`."""
        rate = self.config.learning_rate
        if self.config.anneal_lr:
            rate *= 1.0 - (iteration - 1.0) / num_iterations
        return rate * self.lr_scale

    @property
    def lr_scale(self) -> float:
        """--adaptive-lr-kl's factor on the schedule (1 without it). It is kept in the
        optimizer's parameter group, so the optimizer's checkpoint carries it and a resumed run
        goes on with the same rate (a checkpoint from before it has none: 1)."""
        return self.optimizer.param_groups[0].get("lr_scale", 1.0)

    def _adapt_lr_scale(self, approx_kl: float, ceiling: float) -> None:
        """Lower the next update's rate after one whose mean KL passed ``ceiling``; raise it
        back toward the schedule's after one under half of it (the band between keeps it)."""
        scale = self.lr_scale
        if approx_kl > ceiling:
            scale /= LR_ADAPT_FACTOR
        elif approx_kl < ceiling / 2:
            scale = min(1.0, scale * LR_ADAPT_FACTOR)
        self.optimizer.param_groups[0]["lr_scale"] = scale

    @torch.no_grad()
    def rescore(self, buffer: RolloutBuffer) -> None:
        """Score the stored actions again under the policy as it is now, into the buffer's
        log-probabilities and values: the trainer folds a rollout's observations into a
        feed-forward policy's statistics before its update, and the update's ratios then
        start at 1 and GAE takes the values the update is judged against. In the update's
        minibatch sizes: a whole buffer at once could outgrow the memory the update needs."""
        scores = [
            self.adapter.evaluate(
                data.observations,
                data.actions,
                data.states,
                data.episode_starts,
                data.agent_ids,
                data.action_masks,
            )
            for data in whole_buffer_in_parts(buffer, self.config.num_minibatches)
        ]
        log_probs, _, values = (torch.cat(parts) for parts in zip(*scores, strict=True))
        buffer.log_probs.copy_(as_steps(buffer, log_probs.float()))
        buffer.values.copy_(as_steps(buffer, values.float()))

    def update(self, buffer: RolloutBuffer, learning_rate: float) -> dict[str, float]:
        """Optimise on the buffer; return mean loss statistics (CleanRL's logged values)."""
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate
        history: list[dict[str, torch.Tensor]] = []
        config = self.config
        # SB3's rule: the update ends at the first minibatch on which the policy has already
        # moved more than 1.5 x target_kl from the one that collected the rollout, before its
        # step. An epoch is 32 steps in the continuous preset, which can take the policy many
        # times the target before an end-of-epoch check sees it.
        kl_limit = None if config.target_kl is None else 1.5 * config.target_kl
        steps = 0
        epochs = buffer.minibatches(config.num_minibatches, config.update_epochs)
        for minibatch in itertools.chain.from_iterable(epochs):
            # a loaded checkpoint whose parameters had stepped apart keeps them apart: autograd
            written = self.written if self.flat.stepping_flat else None
            loss, stats = (written or self.objective)(minibatch)
            history.append(stats)
            if kl_limit is not None:
                # the ranks' mean: the KL of the minibatch they make together, as one process
                # would see it; every rank gets the same value, so all stop at the same minibatch
                kl = mean_over_ranks({"approx_kl": float(stats["approx_kl"])})["approx_kl"]
                if kl > kl_limit:
                    break
            if written is not None:
                written.backward()
                self.flat.clip_and_step_written(config.max_grad_norm)
            else:
                self.flat.zero_grad()
                loss.backward()
                self.flat.clip_and_step(config.max_grad_norm)
            steps += 1
        # averaged once at the end: a running sum costs an op per statistic and minibatch
        results = {
            key: float(torch.stack([stats[key] for stats in history]).mean()) for key in history[0]
        }
        if kl_limit is not None:  # how much of the planned update the limit let through
            results["steps_fraction"] = steps / (config.num_minibatches * config.update_epochs)
        values, returns = buffer.values, buffer.returns
        if buffer.alive is not None:  # dead agents' rows predict nothing
            live = buffer.alive.bool()
            values, returns = values[live], returns[live]
        results["explained_variance"] = _explained_variance(values.flatten(), returns.flatten())
        if not all(bool(norm.isfinite()) for norm in torch._foreach_norm(self.trained_parameters)):
            # the same on every rank (their weights are one); stopped before any checkpoint
            # holds the weights, which would rotate the good ones out
            raise UserError(
                "the update turned the policy's weights to nan or inf (it diverged; a smaller "
                "--learning-rate or --max-grad-norm holds it back): nothing of it is saved, "
                "and --resume continues from the newest checkpoint"
            )
        results = mean_over_ranks(results)  # every rank adapts its rate to the same KL
        if config.adaptive_lr_kl is not None:
            self._adapt_lr_scale(results["approx_kl"], config.adaptive_lr_kl)
        return results


def _explained_variance(predicted: torch.Tensor, target: torch.Tensor) -> float:
    variance = target.var()
    if variance == 0:
        return float("nan")
    return float(1.0 - (target - predicted).var() / variance)
