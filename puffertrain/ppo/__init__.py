"""PPO: action sampling, the loss and the update."""

from puffertrain.ppo.agent import Agent, env_actions
from puffertrain.ppo.learner import Learner
from puffertrain.ppo.loss import Minibatch, ppo_loss

__all__ = ["Agent", "Learner", "Minibatch", "env_actions", "ppo_loss"]
