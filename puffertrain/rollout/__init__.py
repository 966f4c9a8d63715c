"""Experience storage between the rollout engine and the PPO update."""

from puffertrain.rollout.buffer import RolloutBuffer, action_storage, to_torch

__all__ = ["RolloutBuffer", "action_storage", "to_torch"]
