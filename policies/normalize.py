"""Observation normalisation by running statistics, applied inside the policy.

The guide's NormalizedPolicy replaces its mean and std with the latest batch's (so they jump
with every batch) and divides by the std of whatever came last; here the statistics cover
every observation seen, merged batch by batch, and are saved with the policy's weights.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
import torch.nn as nn

from policies.contract import State, is_recurrent, takes_agent_ids
from policies.mlp import BasicPolicy


def can_normalize(observation_space: gym.spaces.Space) -> bool:
    """Whether observations of this space can be normalised: a float Box."""
    return isinstance(observation_space, gym.spaces.Box) and observation_space.dtype.kind == "f"


def merge_moments(
    mean: Any, var: Any, count: Any, batch_mean: Any, batch_var: Any, batch_count: Any
) -> tuple[Any, Any, Any]:
    """Mean, population variance and count of two sample sets merged, from each set's own
    (the parallel formula of Chan et al.). Plain arithmetic: works on floats, numpy arrays and
    tensors alike."""
    total = count + batch_count
    delta = batch_mean - mean
    sum_squares = var * count + batch_var * batch_count + delta**2 * count * batch_count / total
    return mean + delta * batch_count / total, sum_squares / total, total


class RunningMeanStd(nn.Module):
    """Mean and (population) variance of every sample passed to :meth:`update`, exact in
    float64: each batch is merged with the parallel-variance formula of Chan et al."""

    def __init__(self, shape: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.shape = tuple(shape)
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        # normalize()'s float32 shift and scale, the statistics (objects and versions) they
        # were computed from
        self._affine: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None)
        self._affine_for: tuple[torch.Tensor | None, ...] = (None, None, None)
        self._affine_versions: tuple[float, ...] = ()

    @torch.no_grad()
    def update(self, samples: torch.Tensor) -> None:
        """Fold in ``samples`` of shape ``(..., *shape)`` (all leading dims are samples)."""
        batch = samples.detach().reshape(-1, *self.shape).to(self.mean)
        n = batch.shape[0]
        if n == 0:
            return
        merged = merge_moments(
            self.mean, self.var, self.count, batch.mean(0), batch.var(0, correction=0), n
        )
        for stored, value in zip((self.mean, self.var, self.count), merged, strict=True):
            stored.copy_(value)

    def normalize(self, x: torch.Tensor, clip: float = 10.0, eps: float = 1e-8) -> torch.Tensor:
        """``(x - mean) / sqrt(var + eps)`` clipped to ``±clip``, in float32; ``x`` unchanged
        until the first :meth:`update` (there is nothing to normalise by yet)."""
        x = x.float()
        if torch.compiler.is_compiling() or torch.jit.is_tracing():  # one graph, no branch
            shift, scale = self.mean.float(), torch.rsqrt(self.var.float() + eps)
            normalized = ((x - shift) * scale).clamp(-clip, clip)
            return torch.where(self.count > 0, normalized, x)
        shift, scale = self.float32_affine(eps)
        if shift is None:
            return x
        return ((x - shift) * scale).clamp(-clip, clip)

    def float32_affine(self, eps: float = 1e-8) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The float32 ``mean`` and ``rsqrt(var + eps)`` (None before the first update), kept
        until the statistics change: casting and combining them at every call was 6 of the 9
        ops of a batch-1 normalisation, each a few microseconds of dispatch. An in-place write
        to a statistic (update, load_state_dict) bumps its version counter and ``.to()``
        replaces it, so either makes this recompute."""
        stats = (self.mean, self.var, self.count)
        versions = (eps, *(stat._version for stat in stats))
        kept_for = self._affine_for
        if versions != self._affine_versions or any(
            kept is not stat for kept, stat in zip(kept_for, stats, strict=True)
        ):
            with torch.no_grad(), torch.inference_mode(False):
                if self.count > 0:
                    self._affine = (self.mean.float(), torch.rsqrt(self.var.float() + eps))
                else:
                    self._affine = (None, None)
            self._affine_for, self._affine_versions = stats, versions
        return self._affine


class NormalizedPolicy(nn.Module):
    """``policy`` run on observations normalised by their running mean and variance (clipped to
    ±``clip``; the first rollout, before any statistics, sees them raw). The trainer calls
    :meth:`update_normalization` with each rollout's observations before the update on them,
    and scores the rollout's actions again under the new statistics (after it, for a recurrent
    policy, whose stored start states come from the statistics it acted with).

    Built as the guide's ``NormalizedPolicy(observation_space, action_space)`` it wraps a
    :class:`~policies.mlp.BasicPolicy`; ``policy=`` wraps any feed-forward policy (use
    :func:`normalize_observations` for recurrent ones). Needs a float Box observation space.
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        action_space: gym.spaces.Space,
        policy: nn.Module | None = None,
        clip: float = 10.0,
    ) -> None:
        super().__init__()
        if not can_normalize(observation_space):
            raise ValueError("observation normalisation needs a float Box observation space")
        if policy is None:
            policy = BasicPolicy(observation_space, action_space)
        if is_recurrent(policy) and not is_recurrent(self):
            raise ValueError("wrap a recurrent policy with normalize_observations()")
        self.policy = policy
        self.clip = clip
        self.obs_rms = RunningMeanStd(observation_space.shape)

    @property
    def takes_agent_ids(self) -> bool:
        return takes_agent_ids(self.policy)

    @property
    def actor_logstd(self) -> torch.Tensor:
        """The wrapped policy's log-std parameter, for policies that return ``(mean, value)``."""
        return self.policy.actor_logstd

    def update_normalization(self, observations: torch.Tensor) -> None:
        """Fold a batch of raw observations into the running statistics."""
        self.obs_rms.update(observations)

    def normalize(self, observations: torch.Tensor) -> torch.Tensor:
        return self.obs_rms.normalize(observations, self.clip)

    def forward(self, observations: torch.Tensor, *args, **kwargs) -> tuple:
        return self.policy(self.normalize(observations), *args, **kwargs)


class NormalizedRecurrentPolicy(NormalizedPolicy):
    """:class:`NormalizedPolicy` for a recurrent policy: both its step and sequence paths."""

    def initial_state(self, batch_size: int, device: torch.device | str = "cpu") -> State:
        return self.policy.initial_state(batch_size, device)

    def forward_step(self, observations: torch.Tensor, state: State, **agent_ids) -> tuple:
        return self.policy.forward_step(self.normalize(observations), state, **agent_ids)

    def forward_sequence(
        self,
        observations: torch.Tensor,
        state: State,
        episode_starts: torch.Tensor,
        **agent_ids,
    ) -> tuple[torch.Tensor, ...]:
        return self.policy.forward_sequence(
            self.normalize(observations), state, episode_starts, **agent_ids
        )


def normalize_observations(
    policy: nn.Module, observation_space: gym.spaces.Box, action_space: gym.spaces.Space
) -> NormalizedPolicy:
    """Wrap ``policy`` (feed-forward or recurrent) in observation normalisation."""
    wrapper = NormalizedRecurrentPolicy if is_recurrent(policy) else NormalizedPolicy
    return wrapper(observation_space, action_space, policy)
