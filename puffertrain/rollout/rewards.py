"""Reward normalisation: rewards scaled by the running std of each env's discounted return."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from policies.normalize import RunningMeanStd


class RewardNormalizer:
    """Divides rewards by the std of the discounted return, clipped to ±``clip``.

    As SB3's VecNormalize: each env's return is discounted and accumulated step by step, folded
    into running statistics, then zeroed where its episode ended. The mean is not subtracted,
    so the sign of every reward is kept. Works per env, so async batches keep their own
    returns.
    """

    def __init__(
        self, num_envs: int, gamma: float, device: torch.device, clip: float = 10.0
    ) -> None:
        self.gamma, self.clip = gamma, clip
        self.returns = torch.zeros(num_envs, device=device)
        self.return_stats = RunningMeanStd().to(device)

    def __call__(
        self, rewards: torch.Tensor, env_ids: np.ndarray, ended: np.ndarray
    ) -> torch.Tensor:
        """Scaled ``rewards`` of the envs ``env_ids``, whose steps ``ended`` episodes or not."""
        device = self.returns.device
        rows = torch.as_tensor(env_ids, device=device)
        returns = self.returns[rows] * self.gamma + rewards
        self.return_stats.update(returns)
        self.returns[rows] = returns * torch.as_tensor(~ended, device=device)
        scale = torch.rsqrt(self.return_stats.var.float() + 1e-8)
        return (rewards * scale).clamp(-self.clip, self.clip)

    def state_dict(self) -> dict[str, Any]:
        return {"returns": self.returns, "return_stats": self.return_stats.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.returns.copy_(state["returns"])
        self.return_stats.load_state_dict(state["return_stats"])
