"""Helpers that size policy heads from gymnasium spaces."""

from __future__ import annotations

import gymnasium as gym


def action_head_size(action_space: gym.spaces.Space) -> int:
    """Number of logits a discrete actor head must output for ``action_space``.

    Discrete(n) needs n logits; MultiDiscrete(nvec) needs one block of logits per dimension.
    """
    if isinstance(action_space, gym.spaces.Discrete):
        return int(action_space.n)
    if isinstance(action_space, gym.spaces.MultiDiscrete):
        return int(action_space.nvec.sum())
    raise ValueError("needs a Discrete or MultiDiscrete action space")
