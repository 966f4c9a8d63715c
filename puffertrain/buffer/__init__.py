"""The experience buffer between the rollout and the PPO update: fixed-size storage, GAE, and
the minibatches the update consumes."""

from puffertrain.buffer.minibatches import Minibatch
from puffertrain.buffer.storage import RolloutBuffer, action_storage, to_torch

__all__ = ["Minibatch", "RolloutBuffer", "action_storage", "to_torch"]
