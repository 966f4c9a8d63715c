"""Fixed-size experience buffer, allocated once on the training device: the rollout writes
steps into it, GAE fills in advantages, and the update takes minibatches out."""

from __future__ import annotations

from collections.abc import Iterator

import gymnasium as gym
import numpy as np
import torch

from policies.contract import State
from puffertrain.buffer.minibatches import Minibatch, shuffled_epochs
from puffertrain.engine.base import row_ids_of


def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    if dtype == np.float64:
        return torch.float32
    return torch.from_numpy(np.zeros(1, dtype=dtype)).dtype


def to_torch(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """An env array as a tensor on ``device`` (float64 becomes float32, like the buffer)."""
    tensor = torch.from_numpy(array)
    if tensor.dtype == torch.float64:
        tensor = tensor.float()
    if device.type == "cpu":  # already there: skip the call (microseconds at every step)
        return tensor
    return tensor.to(device, non_blocking=True)


def action_storage(action_space: gym.spaces.Space) -> tuple[tuple[int, ...], torch.dtype]:
    """Per-step shape and dtype of stored actions for ``action_space``."""
    if isinstance(action_space, gym.spaces.Discrete):
        return (), torch.int64
    if isinstance(action_space, gym.spaces.MultiDiscrete):
        return (int(np.prod(action_space.shape)),), torch.int64
    if isinstance(action_space, gym.spaces.Box):
        return (int(np.prod(action_space.shape)),), torch.float32
    raise ValueError(f"unsupported action space {action_space}")


Index = tuple[int, slice] | tuple[int, torch.Tensor] | tuple[torch.Tensor, torch.Tensor]
Steps = np.ndarray | int
"""The step of each row written (one per row), or the one step every row written is at."""
Step = torch.Tensor | np.ndarray
"""A step's values for some rows: tensors, or on the CPU numpy arrays."""


def _host(values: Step) -> np.ndarray:
    """A CPU tensor's numpy view, or the array itself."""
    return values if isinstance(values, np.ndarray) else values.numpy()


class RolloutBuffer:
    """``num_steps × num_rows`` transitions; observations keep the env's dtype (uint8 images).

    Column ``e`` holds row ``e``'s steps in order, whatever order async batches come back in:
    writes go through :meth:`index` with each env's own step number.

    ``episode_ends[t]`` marks that the action at step t ended the episode (terminated or
    truncated). A truncation's bootstrap value is folded into ``rewards[t]`` by the trainer, so
    GAE treats both kinds of end alike.

    For a recurrent policy (``initial_state`` given), each env's column is cut into sequences of
    ``sequence_length`` steps and ``start_states[k]`` holds every env's recurrent state at the
    start of its sequence ``k`` (step ``k * sequence_length``), the state the update starts
    that sequence from.

    For a multi-agent env (``agents_per_env`` given) column ``e`` is agent
    ``e % agents_per_env`` (``agent_ids``), and ``alive[t, e]`` is 1 where that agent acted at
    step t, 0 where it was already done (those steps are masked out of the update).

    For a masked env (``mask_size`` given) ``action_masks[t, e]`` is the action mask row ``e``
    acted under at step t, which the update scores its action with.
    """

    def __init__(
        self,
        num_steps: int,
        num_rows: int,
        observation_space: gym.spaces.Space,
        action_space: gym.spaces.Space,
        device: torch.device,
        initial_state: State | None = None,
        sequence_length: int = 0,
        agents_per_env: int = 0,
        mask_size: int = 0,
    ) -> None:
        self.num_steps, self.num_rows = num_steps, num_rows
        self.sequence_length = sequence_length or num_steps
        if num_steps % self.sequence_length:
            raise ValueError(f"sequence length {sequence_length} does not divide {num_steps}")
        num_sequences = num_steps // self.sequence_length
        self.start_states: State | None = None
        if initial_state is not None:
            self.start_states = tuple(
                torch.zeros((num_sequences, *part.shape), dtype=part.dtype, device=device)
                for part in initial_state
            )
        shape = (num_steps, num_rows)
        obs_dtype = _torch_dtype(observation_space.dtype)
        action_shape, action_dtype = action_storage(action_space)
        self.observations = torch.zeros(
            (*shape, *observation_space.shape), dtype=obs_dtype, device=device
        )
        self.actions = torch.zeros((*shape, *action_shape), dtype=action_dtype, device=device)
        self.log_probs = torch.zeros(shape, device=device)
        self.rewards = torch.zeros(shape, device=device)
        self.episode_ends = torch.zeros(shape, device=device)
        self.values = torch.zeros(shape, device=device)
        self.advantages = torch.zeros(shape, device=device)
        self.returns = torch.zeros(shape, device=device)
        self.action_masks: torch.Tensor | None = None
        if mask_size:
            self.action_masks = torch.zeros((*shape, mask_size), dtype=torch.bool, device=device)
        self.alive: torch.Tensor | None = None
        self.agent_ids: torch.Tensor | None = None
        if agents_per_env:
            self.alive = torch.ones(shape, device=device)
            columns = torch.arange(num_rows, device=device) % agents_per_env
            self.agent_ids = columns.expand(num_steps, num_rows)
        # On the CPU each step is written through numpy views of the same memory: indexing a
        # numpy array costs a fraction of a tensor's, and a rollout step makes six writes.
        self._host: dict[str, np.ndarray] | None = None
        if device.type == "cpu":
            names = ("observations", "actions", "log_probs", "values", "rewards", "episode_ends")
            self._host = {name: getattr(self, name).numpy() for name in names}
            if self.alive is not None:
                self._host["alive"] = self.alive.numpy()
            if self.action_masks is not None:
                self._host["action_masks"] = self.action_masks.numpy()

    def index(self, steps: Steps, rows: slice | np.ndarray) -> Index:
        """Where step ``steps[k]`` of the ``k``-th row of ``rows`` (row ids, or a slice of them
        as :func:`~puffertrain.engine.base.as_rows` gives) goes, or step ``steps`` of every
        row: a basic index (views) when the rows are one ascending run at the same step, else
        index tensors."""
        if isinstance(steps, int) and isinstance(rows, slice):
            return steps, rows
        if isinstance(rows, slice) and (steps == steps[0]).all():
            return int(steps[0]), rows
        device = self.rewards.device
        row_ids = torch.as_tensor(row_ids_of(rows), device=device)
        if isinstance(steps, int):
            return steps, row_ids
        return torch.as_tensor(steps, device=device), row_ids

    def _host_index(
        self, steps: Steps, rows: slice | np.ndarray
    ) -> tuple[int, slice | np.ndarray] | tuple[np.ndarray, np.ndarray]:
        """:meth:`index` for the numpy views."""
        if isinstance(steps, int):
            return steps, rows
        if isinstance(rows, slice) and (steps == steps[0]).all():
            return int(steps[0]), rows
        return steps, row_ids_of(rows)

    def store_step(
        self,
        steps: Steps,
        rows: slice | np.ndarray,
        observations: Step,
        actions: Step,
        log_probs: Step,
        values: Step,
        start_state: State | None,
        alive: np.ndarray,
        action_mask: Step | None = None,
    ) -> None:
        """Record what the policy did at step ``steps[k]`` of the ``k``-th row of ``rows`` (see
        :meth:`index`): the observation it acted on, its action, log-probability and value,
        the state it acted from, whether the row's agent was alive, and the action mask it
        acted under. On the CPU the values may be numpy arrays (the numpy actor's)."""
        if start_state is not None:
            self.store_start_states(steps, row_ids_of(rows), start_state)
        if self._host is not None:
            index = self._host_index(steps, rows)
            host = self._host
            if "alive" in host:
                host["alive"][index] = alive
            if "action_masks" in host:
                host["action_masks"][index] = _host(action_mask)
            host["observations"][index] = _host(observations)
            host["actions"][index] = _host(actions)
            host["log_probs"][index] = _host(log_probs)
            host["values"][index] = _host(values)
            return
        index = self.index(steps, rows)
        if self.action_masks is not None:
            self.action_masks[index] = action_mask
        if self.alive is not None:
            self.alive[index] = to_torch(alive, self.rewards.device).float()
        self.observations[index] = observations
        self.actions[index] = actions
        self.log_probs[index] = log_probs
        self.values[index] = values

    def store_outcome(
        self, steps: Steps, rows: slice | np.ndarray, rewards: np.ndarray, ended: np.ndarray
    ) -> None:
        """Record the reward and episode end of step ``steps[k]`` of the ``k``-th row of
        ``rows`` (see :meth:`index`)."""
        if self._host is not None:
            index = self._host_index(steps, rows)
            self._host["rewards"][index] = rewards
            self._host["episode_ends"][index] = ended
            return
        index = self.index(steps, rows)
        self.rewards[index] = to_torch(rewards, self.rewards.device)
        # as floats: a batch of scattered rows indexes with tensors, and index_put won't cast
        self.episode_ends[index] = to_torch(ended, self.rewards.device).float()

    def store_start_states(self, steps: Steps, row_ids: np.ndarray, state: State) -> None:
        """Keep ``state`` (rows for ``row_ids``, about to take step ``steps``) where a step
        starts a sequence."""
        steps = np.broadcast_to(steps, row_ids.shape)
        starts = steps % self.sequence_length == 0
        if self.start_states is None or not starts.any():
            return
        device = self.rewards.device
        sequence = torch.as_tensor(steps[starts] // self.sequence_length, device=device)
        envs = torch.as_tensor(row_ids[starts], device=device)
        rows = torch.as_tensor(np.flatnonzero(starts), device=device)
        for stored, part in zip(self.start_states, state, strict=True):
            stored[sequence, envs] = part[rows]

    def compute_advantages(
        self, last_values: torch.Tensor, gamma: float, gae_lambda: float
    ) -> None:
        """GAE(λ) in place; returns = advantages + values.

        The TD errors of every step are computed at once; only the backward recursion
        ``A[t] = δ[t] + γλ (1 - done[t]) A[t+1]`` runs per step, one fused op each.
        """
        not_done = 1.0 - self.episode_ends
        next_values = torch.cat((self.values[1:], last_values.unsqueeze(0)))
        deltas = self.rewards + gamma * next_values * not_done - self.values
        decay = (gamma * gae_lambda) * not_done
        self.advantages[-1] = deltas[-1]
        for t in reversed(range(self.num_steps - 1)):
            torch.addcmul(deltas[t], decay[t], self.advantages[t + 1], out=self.advantages[t])
        torch.add(self.advantages, self.values, out=self.returns)

    def minibatches(self, num_minibatches: int, epochs: int) -> Iterator[Iterator[Minibatch]]:
        """``epochs`` shuffled passes of ``num_minibatches`` minibatches each (see
        :func:`~puffertrain.buffer.minibatches.shuffled_epochs`)."""
        return shuffled_epochs(self, num_minibatches, epochs)
