"""The guide's debugging checks, made to fail loudly and to cover recurrent policies.

The guide's sketches print their findings and call ``policy(obs)`` only; these raise
``AssertionError`` with the problem and, for a recurrent policy, check both the rollout path
(``forward_step``) and the update path (``forward_sequence``).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn

from policies.contract import is_recurrent
from policies.flatten import flatten_observation, travels_as_bytes
from policies.heads import action_head_size


def sample_observations(observation_space: gym.spaces.Space, batch_size: int) -> torch.Tensor:
    """``batch_size`` observations drawn from the space as a policy receives them: any space but
    a Box flattened to byte rows, float64 turned into float32."""
    samples = [observation_space.sample() for _ in range(batch_size)]
    if travels_as_bytes(observation_space):
        samples = [flatten_observation(sample, observation_space) for sample in samples]
    batch = np.stack(samples)
    return torch.as_tensor(batch.astype(np.float32) if batch.dtype == np.float64 else batch)


def _outputs(policy: nn.Module, observations: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
    """The policy's outputs on ``observations[T, B, ...]``: for a recurrent policy the step
    path on the first step and the sequence path on all (with an episode start inside); for a
    feed-forward policy one call on all rows."""
    steps, batch = observations.shape[:2]
    if not is_recurrent(policy):
        return [policy(observations.flatten(0, 1))]
    state = policy.initial_state(batch, observations.device)
    step_outputs, _ = policy.forward_step(observations[0], state)
    starts = torch.zeros(steps, batch, dtype=torch.bool)
    starts[steps // 2, 0] = True
    return [step_outputs, policy.forward_sequence(observations, state, starts)]


def check_output_shapes(
    policy: nn.Module,
    observation_space: gym.spaces.Box,
    action_space: gym.spaces.Space,
    batch_size: int = 32,
) -> None:
    """Every output has one row per observation; logits (or means) have the action space's
    size and the value one column."""
    steps = 3
    observations = sample_observations(observation_space, steps * batch_size)
    observations = observations.view(steps, batch_size, *observations.shape[1:])
    head = action_head_size(action_space)
    for outputs in _outputs(policy, observations):
        rows = outputs[0].shape[0]
        assert rows in (batch_size, steps * batch_size), f"{rows} output rows"
        assert outputs[0].shape == (rows, head), (
            f"first output {tuple(outputs[0].shape)}, expected {(rows, head)}"
        )
        assert outputs[-1].shape == (rows, 1), (
            f"value {tuple(outputs[-1].shape)}, expected {(rows, 1)}"
        )


def check_gradients(
    policy: nn.Module, observation_space: gym.spaces.Box, batch_size: int = 4
) -> None:
    """A loss on every output gives every parameter a finite, non-missing gradient."""
    policy.zero_grad(set_to_none=True)
    steps = 3
    observations = sample_observations(observation_space, steps * batch_size)
    observations = observations.view(steps, batch_size, *observations.shape[1:])
    loss = sum(
        output.float().sum() for outputs in _outputs(policy, observations) for output in outputs
    )
    loss.backward()
    for name, parameter in policy.named_parameters():
        assert parameter.grad is not None, f"no gradient for {name}"
        assert torch.isfinite(parameter.grad).all(), f"non-finite gradient for {name}"
