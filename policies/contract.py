"""The policy contract: what the trainer relies on, so a user's module works like ours.

- A policy is an ``nn.Module`` built as ``Policy(observation_space, action_space, **kwargs)``.
- Feed-forward: ``forward(obs)`` returns ``(logits, value)`` for Discrete and MultiDiscrete
  actions (MultiDiscrete: the dimensions' logits side by side), and ``(mean, std, value)`` or
  ``(mean, value)`` with an ``actor_logstd`` parameter for Box actions. Policies never sample:
  the trainer turns these outputs into distributions.
- Recurrent: ``initial_state(batch, device)``, ``forward_step(obs, state) -> (outputs, state)``
  for one step of a batch of envs, and ``forward_sequence(obs[T, B], state, episode_starts)``
  for whole sequences, the state reset where an episode starts (:func:`is_recurrent`).
- Multi-agent: a policy that needs each row's agent takes ``agent_ids`` (:func:`takes_agent_ids`).

Core code imports these names from here, not from the modules that implement policies.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn as nn

State = tuple[torch.Tensor, ...]
"""A recurrent policy's state: a tuple of ``(batch, ...)`` tensors, one row per env."""


def is_recurrent(policy: nn.Module) -> bool:
    """Whether ``policy`` follows the recurrent contract (``initial_state``, ``forward_step``,
    ``forward_sequence``)."""
    return all(
        callable(getattr(policy, name, None))
        for name in ("initial_state", "forward_step", "forward_sequence")
    )


def takes_agent_ids(policy: nn.Module) -> bool:
    """Whether ``policy`` wants the rows' agent ids (multi-agent envs): its ``takes_agent_ids``
    attribute if it has one (wrappers answer for the policy they wrap), else whether its
    ``forward`` (``forward_step`` for a recurrent policy) has an ``agent_ids`` parameter."""
    flag = getattr(policy, "takes_agent_ids", None)
    if isinstance(flag, bool):
        return flag
    method = policy.forward_step if is_recurrent(policy) else policy.forward
    return "agent_ids" in inspect.signature(method).parameters
