"""The PPO update: the optimizer steps over the buffer's minibatches, with gradient clipping
and LR annealing."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.adam import adam

from puffertrain.buffer import Minibatch, RolloutBuffer
from puffertrain.config import PPOConfig
from puffertrain.distributed import mean_over_ranks
from puffertrain.ppo.adapter import PolicyAdapter
from puffertrain.ppo.loss import ppo_loss

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
        # a list, not the generator: walking the module tree at every clip costs ~15 us
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
            loss, stats = self.objective(minibatch)
            history.append(stats)
            if kl_limit is not None:
                # the ranks' mean: the KL of the minibatch they make together, as one process
                # would see it; every rank gets the same value, so all stop at the same minibatch
                kl = mean_over_ranks({"approx_kl": float(stats["approx_kl"])})["approx_kl"]
                if kl > kl_limit:
                    break
            for parameter in self.trained_parameters:  # zero_grad(set_to_none), minus its hooks
                parameter.grad = None
            loss.backward()
            clip_grad_norm(self.trained_parameters, config.max_grad_norm)
            adam_step(self.optimizer, self.trained_parameters)
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
        results = mean_over_ranks(results)  # every rank adapts its rate to the same KL
        if config.adaptive_lr_kl is not None:
            self._adapt_lr_scale(results["approx_kl"], config.adaptive_lr_kl)
        return results


def clip_grad_norm(parameters: list[nn.Parameter], max_norm: float) -> torch.Tensor:
    """``nn.utils.clip_grad_norm_`` (2-norm) in four foreach ops: on the CPU torch's own walks
    the gradients one op at a time, about a tenth of a small policy's update step. The same
    math in the same order, so the result is bitwise the same. Returns the norm before
    clipping."""
    grads = [parameter.grad for parameter in parameters if parameter.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    torch._foreach_mul_(grads, torch.clamp(max_norm / (total + 1e-6), max=1.0))
    return total


def adam_step(optimizer: torch.optim.Adam, parameters: list[nn.Parameter]) -> None:
    """``optimizer.step()`` for the learner's one-group fused Adam through torch's functional
    ``adam`` on the optimizer's own state: the same kernel on the same tensors, minus the
    method's per-call bookkeeping (hooks, state checks, grouping), which costs a small
    policy's step ~40 us, nearly the kernel's own time. The first step creates the state."""
    state = optimizer.state
    with_grad = [parameter for parameter in parameters if parameter.grad is not None]
    if not with_grad or any(parameter not in state for parameter in with_grad):
        optimizer.step()
        return
    (group,) = optimizer.param_groups
    moments = [state[parameter] for parameter in with_grad]
    beta1, beta2 = group["betas"]
    with torch.no_grad():
        adam(
            with_grad,
            [parameter.grad for parameter in with_grad],
            [moment["exp_avg"] for moment in moments],
            [moment["exp_avg_sq"] for moment in moments],
            [],
            [moment["step"] for moment in moments],
            fused=True,
            amsgrad=False,
            beta1=beta1,
            beta2=beta2,
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=group["maximize"],
        )


def _explained_variance(predicted: torch.Tensor, target: torch.Tensor) -> float:
    variance = target.var()
    if variance == 0:
        return float("nan")
    return float(1.0 - (target - predicted).var() / variance)
