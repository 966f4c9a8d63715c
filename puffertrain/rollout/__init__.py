"""The rollout: an engine stepped by a policy (the one rollout step train, eval and bench share),
and the reward normalisation it applies for learning."""

from puffertrain.rollout.rewards import RewardNormalizer
from puffertrain.rollout.rollout import Rollout

__all__ = ["RewardNormalizer", "Rollout"]
