"""Turn a policy's raw outputs into actions, log-probabilities, entropies and values.

Policies only produce distribution parameters (the policy contract); this adapter samples and
scores actions for Discrete, MultiDiscrete and Box action spaces, without the overhead of
``torch.distributions`` in the hot loop. With an autocast dtype (``--precision bf16``) the
policy runs under ``torch.autocast`` and its outputs are turned back to float32 here, so every
log-probability, entropy and value the loss sees is float32.

A masked env's actions are masked here, in one place (:func:`mask_logits`): sampling, greedy
actions, the update's log-probabilities and the entropy (over the valid actions) all read the
masked logits.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from policies.contract import State, is_recurrent, takes_agent_ids
from puffertrain.ppo.known_mlp import KnownMLP

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class PolicyAdapter(nn.Module):
    """Wraps any policy following the contract: ``forward(obs) -> (logits, value)`` for
    Discrete/MultiDiscrete actions, ``(mean, std, value)`` or ``(mean, value)`` with an
    ``actor_logstd`` parameter for Box actions.

    A recurrent policy (``initial_state``, ``forward_step``, ``forward_sequence``) produces the
    same outputs one step at a time from a per-env state, which :meth:`act` and :meth:`value`
    take and return; :meth:`evaluate` then scores whole ``[T, B]`` sequences.

    Every method takes the rows' ``agent_ids`` (multi-agent envs) and hands them to a policy
    that takes them (:func:`~policies.contract.takes_agent_ids`).
    """

    def __init__(
        self,
        policy: nn.Module,
        action_space: gym.spaces.Space,
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.policy = policy
        self.autocast_dtype = autocast_dtype
        self.continuous = isinstance(action_space, gym.spaces.Box)
        if isinstance(action_space, gym.spaces.Discrete):
            self.nvec: list[int] = [int(action_space.n)]
        elif isinstance(action_space, gym.spaces.MultiDiscrete):
            self.nvec = [int(n) for n in action_space.nvec.reshape(-1)]
        elif not self.continuous:
            raise ValueError(f"unsupported action space {action_space}")
        self.multi_discrete = isinstance(action_space, gym.spaces.MultiDiscrete)
        self.recurrent = is_recurrent(policy)
        self.takes_agent_ids = takes_agent_ids(policy)
        # what masked logits become, as a tensor: torch.where wraps a Python float in a new
        # tensor at every call, which takes it ~1.7x as long at rollout batch sizes
        fill = torch.tensor(torch.finfo(torch.float32).min)
        self.register_buffer("masked_logit", fill, persistent=False)
        # the library's MLPs run from their layers, without a module call per layer
        self.known_mlp = KnownMLP.of(policy)

    def initial_state(self, batch_size: int, device: torch.device) -> State | None:
        """Zero recurrent state for ``batch_size`` envs (None for a feed-forward policy)."""
        return self.policy.initial_state(batch_size, device) if self.recurrent else None

    def autocast(self, device: torch.device) -> AbstractContextManager:
        """The precision context of every policy call on ``device`` (none in fp32: entering a
        disabled autocast region costs microseconds at every rollout step)."""
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(device.type, dtype=self.autocast_dtype)

    def _agent_kwargs(self, agent_ids: torch.Tensor | None) -> dict[str, torch.Tensor]:
        return {"agent_ids": agent_ids} if agent_ids is not None and self.takes_agent_ids else {}

    def _step(
        self, obs: torch.Tensor, state: State | None, agent_ids: torch.Tensor | None
    ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor, State | None]:
        kwargs = self._agent_kwargs(agent_ids)
        with self.autocast(obs.device):
            if self.recurrent:
                outputs, state = self.policy.forward_step(obs, state, **kwargs)
                state = tuple(part.float() for part in state)
            else:
                outputs = self._forward(obs, kwargs)
        return (*self.distribution_parameters(outputs), state)

    def _forward(self, obs: torch.Tensor, kwargs: dict) -> tuple[torch.Tensor, ...]:
        """A feed-forward policy's outputs; a known MLP's from its layers, outside autocast
        (whose casts the module path takes)."""
        if self.known_mlp is not None and self.autocast_dtype is None:
            return self.known_mlp(obs)
        return self.policy(obs, **kwargs)

    def distribution_parameters(
        self, outputs: tuple[torch.Tensor, ...]
    ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """A policy's raw outputs as ``((logits,) or (mean, std), value)`` in float32, the
        value flat: what sampling, scoring and export read."""
        outputs = tuple(output.float() for output in outputs)  # no-ops in fp32
        value = outputs[-1].reshape(-1)
        if not self.continuous:
            return (outputs[0],), value
        if len(outputs) == 3:
            return (outputs[0], outputs[1].expand_as(outputs[0])), value
        mean = outputs[0]
        return (mean, self.policy.actor_logstd.exp().expand_as(mean)), value

    def _split(self, logits: torch.Tensor) -> list[torch.Tensor]:
        return list(torch.split(logits, self.nvec, dim=-1))

    def act(
        self,
        obs: torch.Tensor,
        state: State | None = None,
        deterministic: bool = False,
        agent_ids: torch.Tensor | None = None,
        action_mask: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, State | None]:
        """Sample actions (only ones ``action_mask`` allows, where given); return
        ``(actions, log_probs, values, next state)``. Continuous actions are ``mean + std *
        noise``, with standard-normal ``noise`` drawn here unless given (colored noise)."""
        params, value, state = self._step(obs, state, agent_ids)
        if self.continuous:
            mean, std = params
            if deterministic:
                return mean, _normal_log_prob(mean, std, mean), value, state
            if noise is None:
                noise = torch.randn_like(mean)
            action = torch.addcmul(mean, std, noise)
            return action, _log_prob_of_noise(noise, std), value, state
        logits = mask_logits(params[0], action_mask, self.masked_logit)
        if not self.multi_discrete:  # one Discrete: no split, no stacking
            action, log_prob = _sample_categorical(logits, deterministic)
            return action, log_prob, value, state
        actions, log_probs = zip(
            *(_sample_categorical(block, deterministic) for block in self._split(logits)),
            strict=True,
        )
        log_prob = torch.stack(log_probs, dim=-1).sum(-1)
        return torch.stack(actions, dim=-1), log_prob, value, state

    def evaluate(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        states: State | None = None,
        episode_starts: torch.Tensor | None = None,
        agent_ids: torch.Tensor | None = None,
        action_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Score stored actions under the masks they were sampled with; return
        ``(log_probs, entropies, values)`` (entropies over the valid actions).

        Recurrent policies take ``obs[T, B, ...]`` sequences starting from ``states`` with
        ``episode_starts[T, B]`` (and ``agent_ids[T, B]``); ``actions``, ``action_mask`` and
        the results are flat in ``[T, B]`` order.
        """
        kwargs = self._agent_kwargs(agent_ids)
        with self.autocast(obs.device):
            if self.recurrent:
                outputs = self.policy.forward_sequence(obs, states, episode_starts, **kwargs)
            else:
                outputs = self._forward(obs, kwargs)
        params, value = self.distribution_parameters(outputs)
        if self.continuous:
            return (*gaussian_score(*params, actions), value)
        if not self.multi_discrete:  # one Discrete: no split, no sums over blocks
            return (*_score_categorical(params[0], actions, action_mask, self.masked_logit), value)
        masks = [None] * len(self.nvec) if action_mask is None else self._split(action_mask)
        scores = [
            _score_categorical(block, actions[:, dim], mask, self.masked_logit)
            for dim, (block, mask) in enumerate(zip(self._split(params[0]), masks, strict=True))
        ]
        log_probs, entropies = zip(*scores, strict=True)
        return sum(log_probs), sum(entropies), value

    def value(
        self,
        obs: torch.Tensor,
        state: State | None = None,
        agent_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """State values, shape ``(batch,)`` (a recurrent policy's state is not advanced)."""
        return self._step(obs, state, agent_ids)[1]


def mask_logits(
    logits: torch.Tensor, action_mask: torch.Tensor | None, fill: torch.Tensor | None = None
) -> torch.Tensor:
    """``logits`` with the actions ``action_mask`` forbids (False entries) set to the dtype's
    most negative finite value (``fill``, a 0-d tensor of it, where the caller keeps one):
    their probability is exactly 0, and unlike ``-inf`` no ``0 * inf`` turns the entropy or its
    gradient into NaN (bf16, ``torch.compile``)."""
    if action_mask is None:
        return logits
    same_dtype = fill is not None and fill.dtype == logits.dtype  # a float32 min is -inf in bf16
    most_negative = fill if same_dtype else torch.finfo(logits.dtype).min
    return torch.where(action_mask, logits, most_negative)  # one op


def env_actions(actions: torch.Tensor | np.ndarray, action_space: gym.spaces.Space) -> np.ndarray:
    """Sampled actions (a tensor, or the numpy actor's array) as the env takes them: on the
    CPU, Box actions clipped to the bounds, rounded for an integer Box and shaped like the
    space (the buffer keeps the unclipped sample for the log-probability), discrete ones
    shifted by the space's ``start`` (the policy's logits index 0 to n - 1)."""
    array = actions if isinstance(actions, np.ndarray) else actions.cpu().numpy()
    if isinstance(action_space, gym.spaces.Box):  # np.clip's own Python wrapper costs more
        array = np.minimum(np.maximum(array, action_space.low.ravel()), action_space.high.ravel())
        array = array.reshape((-1, *action_space.shape))
        if action_space.dtype.kind in "iu":  # an integer Box takes whole numbers
            array = np.rint(array).astype(action_space.dtype)
    elif isinstance(action_space, gym.spaces.Discrete):
        if action_space.start:
            array = array + action_space.start
    elif isinstance(action_space, gym.spaces.MultiDiscrete) and action_space.start.any():
        array = array + action_space.start.reshape(-1)
    return array


def _sample_categorical(
    logits: torch.Tensor, deterministic: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """An action of the categorical ``logits`` (its mode if ``deterministic``) and its
    log-probability. Sampling is Gumbel-max, a few ops where ``torch.multinomial`` takes
    about three times as long at rollout batch sizes."""
    log_p = F.log_softmax(logits, dim=-1)
    if deterministic:
        action = log_p.argmax(dim=-1)
    else:
        action = (log_p - torch.empty_like(log_p).exponential_().log_()).argmax(dim=-1)
    return action, log_p.gather(-1, action.unsqueeze(-1)).squeeze(-1)


def _score_categorical(
    logits: torch.Tensor,
    actions: torch.Tensor,
    action_mask: torch.Tensor | None,
    fill: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The log-probabilities of ``actions`` under the categorical ``logits`` (masked with
    ``action_mask``, where given) and its entropy."""
    return CategoricalScore.apply(logits, actions, action_mask, fill)


class CategoricalScore(torch.autograd.Function):
    """``(log p(actions), entropy)`` of categorical logits, masked by :func:`mask_logits` where
    a mask is given, with the gradient written out: ``d log p_a / dz = onehot(a) - p`` and
    ``dH / dz = -p (log p + H)``. Autograd through the same math replays eight ops backward;
    this is three to five on 64-row minibatches. Masked logits (the dtype's most negative
    value) have ``p = 0`` and a finite ``log p``, so their gradient is exactly 0 without the
    mask's own backward op (``actions`` are ones the mask allows)."""

    @staticmethod
    def forward(
        ctx: Any,
        logits: torch.Tensor,
        actions: torch.Tensor,
        action_mask: torch.Tensor | None,
        fill: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        log_prob, entropy, saved = categorical_score(logits, actions, action_mask, fill)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(*saved)
        return log_prob, entropy

    @staticmethod
    def backward(
        ctx: Any, grad_log_prob: torch.Tensor | None, grad_entropy: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, None, None, None]:
        return logits_gradient(ctx.saved_tensors, grad_log_prob, grad_entropy), None, None, None


def categorical_score(
    logits: torch.Tensor,
    actions: torch.Tensor,
    action_mask: torch.Tensor | None,
    fill: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
    """:class:`CategoricalScore`'s values, and what :func:`logits_gradient` takes."""
    log_p = F.log_softmax(mask_logits(logits, action_mask, fill), dim=-1)
    p = log_p.exp()
    index = actions.long().unsqueeze(-1)
    entropy = -(p * log_p).sum(-1)
    return log_p.gather(-1, index).squeeze(-1), entropy, (p, log_p, entropy, index)


def logits_gradient(
    saved: tuple[torch.Tensor, ...],
    grad_log_prob: torch.Tensor | None,
    grad_entropy: torch.Tensor | float | None,
) -> torch.Tensor | None:
    """The gradient with respect to the logits of :func:`categorical_score` (``saved``), given
    the gradients of each row's log-probability and entropy (one float for every row)."""
    p, log_p, entropy, index = saved
    grad = None
    if grad_log_prob is not None:
        scale = grad_log_prob.unsqueeze(-1)
        grad = (p * scale).neg_().scatter_add_(-1, index, scale)
    if grad_entropy is not None:
        if isinstance(grad_entropy, torch.Tensor):
            grad_entropy = grad_entropy.unsqueeze(-1)
        from_entropy = (log_p + entropy.unsqueeze(-1)).mul_(p).mul_(grad_entropy)
        grad = from_entropy.neg_() if grad is None else grad.sub_(from_entropy)
    return grad


def gaussian_score(
    mean: torch.Tensor, std: torch.Tensor, actions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The log-probabilities of ``actions`` under the diagonal Normal ``(mean, std)`` and its
    entropy."""
    return _normal_log_prob(mean, std, actions), (0.5 + _LOG_SQRT_2PI + std.log()).sum(-1)


def _normal_log_prob(mean: torch.Tensor, std: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    return (-((action - mean) ** 2) / (2 * std**2) - std.log() - _LOG_SQRT_2PI).sum(-1)


def _log_prob_of_noise(noise: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """The log-probability of ``mean + std * noise``, from the standard-normal ``noise`` it
    was drawn with: the same value as :func:`_normal_log_prob` up to float rounding, in 4 ops
    instead of 10 (a rollout step's batch-1 ops are microseconds of dispatch each)."""
    return -_LOG_SQRT_2PI * noise.shape[-1] - std.log().addcmul_(noise, noise, value=0.5).sum(-1)
