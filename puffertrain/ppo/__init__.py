"""PPO: the policy adapter (outputs → action distributions), the loss and the update."""

from puffertrain.ppo.adapter import PolicyAdapter, env_actions
from puffertrain.ppo.learner import Learner
from puffertrain.ppo.loss import ppo_loss

__all__ = ["Learner", "PolicyAdapter", "env_actions", "ppo_loss"]
