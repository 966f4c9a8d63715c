"""Reward normalisation: rewards scaled by the running std of each env's discounted return."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from policies.normalize import merge_moments


class RewardNormalizer:
    """Divides rewards by the std of the discounted return, clipped to ±``clip``.

    As SB3's VecNormalize: each env's return is discounted and accumulated step by step, folded
    into running statistics, then zeroed where its episode ended. The mean is not subtracted,
    so the sign of every reward is kept. Works per env, so async batches keep their own
    returns. Runs in numpy on the env's arrays: a handful of torch ops on a few numbers cost
    more than the step of a small env.
    """

    def __init__(self, num_envs: int, gamma: float, clip: float = 10.0) -> None:
        self.gamma, self.clip = gamma, clip
        self.returns = np.zeros(num_envs)
        self.mean, self.var, self.count = 0.0, 1.0, 0.0

    def __call__(
        self,
        rewards: np.ndarray,
        env_ids: np.ndarray,
        ended: np.ndarray,
        acting: np.ndarray | None = None,
    ) -> np.ndarray:
        """Scaled ``rewards`` of the envs ``env_ids``, whose steps ``ended`` episodes or not;
        only the ``acting`` rows (default: all; not a dead agent's) count in the statistics."""
        returns = self.returns[env_ids] * self.gamma + rewards
        counted = returns if acting is None else returns[acting]
        finite = True
        if counted.size:
            # the batch's moments as a sum and a dot product: ndarray.mean and .var cost ~10 µs
            # of Python per call, more than a small env's step
            batch_mean = float(np.add.reduce(counted)) / counted.size
            finite = math.isfinite(batch_mean)
        if counted.size and finite:  # a nan or inf would spoil the statistics of every env
            deviations = counted - batch_mean
            batch_var = float(deviations @ deviations) / counted.size
            self.mean, self.var, self.count = merge_moments(
                self.mean, self.var, self.count, batch_mean, batch_var, counted.size
            )
        self.returns[env_ids] = np.where(ended, 0.0, returns)
        scaled = rewards * (1.0 / math.sqrt(self.var + 1e-8))
        scaled = np.minimum(np.maximum(scaled, -self.clip), self.clip)  # np.clip, no wrapper
        # the clip would make an inf ±clip: the env's nan or inf go on as they are, for the
        # rollout's check to name the env
        return scaled if finite else np.where(np.isfinite(rewards), scaled, rewards)

    def state_dict(self, with_returns: bool = True) -> dict[str, Any]:
        """The statistics, and each env's running return (zeros if ``with_returns`` is false:
        for a checkpoint whose episodes restart on resume)."""
        returns = self.returns.copy() if with_returns else np.zeros_like(self.returns)
        moments = torch.tensor([self.mean, self.var, self.count], dtype=torch.float64)
        return {"returns": torch.from_numpy(returns), "moments": moments}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.returns[:] = state["returns"].numpy()
        self.mean, self.var, self.count = (float(x) for x in state["moments"])
