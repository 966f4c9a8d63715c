"""The rollout engine interface every backend implements: rows of envs stepped with
same-step autoreset, synchronously or in async batches."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from puffertrain.distributed import process_cores
from puffertrain.engine.episodes import Episode, EpisodeTracker
from puffertrain.envs.state import SnapshotMismatch
from puffertrain.errors import UserError

if TYPE_CHECKING:
    from puffertrain.engine.env_rows import EnvRows


@dataclass
class StepResult:
    """One step of the rows ``row_ids`` (row ``k`` of every array is row ``row_ids[k]``);
    ``rows`` is ``row_ids`` as an index (:func:`as_rows`: a slice when they are one ascending run).

    Arrays may be the engine's own buffers: read them before the next ``recv``. With same-step
    autoreset, ``observations`` already holds the first observation of the next
    episode where an episode ended; the observation it ended on is in ``final_observations``
    (meaningful only at rows where ``terminations | truncations``). ``alive`` says which rows
    have an agent that acts on its observation (always every row of a single-agent env).
    ``action_masks`` holds each row's mask for its new observation (no columns for an env
    without masks).
    """

    row_ids: np.ndarray
    rows: slice | np.ndarray
    observations: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    final_observations: np.ndarray
    alive: np.ndarray
    episodes: list[Episode]
    action_masks: np.ndarray


class EnvError(UserError):
    """An env raised while stepping or resetting (in this process or a worker)."""


def env_groups(row_ids: np.ndarray, group_size: int) -> range | np.ndarray:
    """The groups (consecutive runs of ``group_size`` rows) that ``row_ids`` is made of."""
    rows = as_rows(row_ids)
    if isinstance(rows, slice):  # one run (every synchronous step): whole groups if aligned
        if rows.start % group_size or len(row_ids) % group_size:
            raise ValueError(f"rows {row_ids.tolist()} are not whole groups of {group_size}")
        return range(rows.start // group_size, rows.stop // group_size)  # ints, no array
    groups = row_ids[::group_size] // group_size
    if not np.array_equal(group_row_ids(groups, group_size), row_ids):
        raise ValueError(f"rows {row_ids.tolist()} are not whole groups of {group_size}")
    return groups


def as_rows(row_ids: np.ndarray) -> slice | np.ndarray:
    """``row_ids`` as an index: a slice (numpy views) when they are one ascending run."""
    first, count = int(row_ids[0]), len(row_ids)
    # strictly increasing ids spanning count - 1 are a run: one comparison, no arange
    # (count_nonzero: a fifth of `.all()`'s cost)
    if int(row_ids[-1]) - first == count - 1 and (
        count < 3 or not np.count_nonzero(row_ids[1:] <= row_ids[:-1])
    ):
        return slice(first, first + count)
    return row_ids


def row_ids_of(rows: slice | np.ndarray) -> np.ndarray:
    """The row ids that :func:`as_rows` gave ``rows`` for."""
    return np.arange(rows.start, rows.stop) if isinstance(rows, slice) else rows


def group_row_ids(groups: list[int], group_size: int) -> np.ndarray:
    """The rows of ``groups``, in that order."""
    return (np.asarray(groups)[:, None] * group_size + np.arange(group_size)).reshape(-1)


class Engine(ABC):
    """Envs stepped with same-step autoreset, synchronously or in async batches.

    Rows come in groups of ``group_size`` consecutive rows that are always sent and received
    together. ``send(actions, row_ids)`` starts stepping some idle groups; ``recv()`` waits for
    ``batch_size`` rows' worth of them (or all that are in flight, if fewer) and returns their
    step. With ``batch_size == num_rows`` this is a synchronous step, which ``step`` wraps.
    """

    name: str
    """The backend's --vec name."""
    num_rows: int
    """Rows of the batch: envs, or envs × agents for a multi-agent env. ``row_ids`` number
    rows, and row ``r`` of a multi-agent env belongs to agent ``r % agents_per_env``."""
    agents_per_env: int = 1
    agent_names: tuple[str, ...] = ()
    """Agent of each row of an env's block (empty for single-agent envs)."""
    batch_size: int
    """Rows returned by one ``recv`` (``num_rows``: synchronous)."""
    group_size: int
    """Rows always stepped together (a divisor of ``batch_size``; whole envs' blocks)."""
    env_threads: int
    """Threads or processes stepping envs beside the trainer's own thread."""
    single_observation_space: gym.spaces.Space
    single_action_space: gym.spaces.Space
    policy_observation_space: gym.spaces.Space
    """The space policies are built for: a Dict/Tuple space whose observations arrive as flat
    byte rows of ``single_observation_space``, or that same space."""
    observations: np.ndarray
    """The current observation of every row (the engine's buffer)."""
    alive: np.ndarray
    """Which rows have an agent acting on its current observation (the engine's buffer)."""
    action_masks: np.ndarray
    """Each row's action mask for its current observation, ``(num_rows, entries)`` bools (the
    engine's buffer; no columns for an env without masks)."""
    tracker: EpisodeTracker

    def policy_threads(self) -> int:
        """Torch threads for policy inference while these envs step: the cores the env threads
        leave free, at least one. Idle env threads spin or wait to be woken, so a policy that
        takes their cores too slows both."""
        return max(1, process_cores() - self.env_threads)

    @abstractmethod
    def reset(self, seed: int) -> np.ndarray:
        """Reset env ``i`` with seed ``seed + i``; return the observations. Every env is then
        idle: nothing is in flight."""

    @abstractmethod
    def send(self, actions: np.ndarray, row_ids: np.ndarray) -> None:
        """Start stepping the idle rows ``row_ids`` (whole groups) with ``actions`` (one per
        row, in the order of ``row_ids``)."""

    @abstractmethod
    def recv(self) -> StepResult:
        """Wait for the next batch of sent rows to finish their step; they become idle."""

    def step(self, actions: np.ndarray) -> StepResult:
        """Step every env with its action (synchronous engines: ``batch_size == num_rows``)."""
        if self.batch_size != self.num_rows:
            raise RuntimeError("step() needs a synchronous engine; use send() and recv()")
        self.send(actions, np.arange(self.num_rows))
        return self.recv()

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Plain-data state: observations, episode counters, env internals if capturable."""

    def load_state_dict(self, state: dict[str, Any], reseed: int) -> bool:
        """Restore :meth:`state_dict`; return False if the envs had to be reset with ``reseed``
        (some env's state could not be captured, or was captured by another engine: a run
        that ``--vec auto`` now puts on an id's own vector env)."""
        snapshots = state["envs"]
        if snapshots is None or any(snapshot is None for snapshot in snapshots):
            self.reset(reseed)
            return False
        try:
            self._restore_envs(snapshots)
        except SnapshotMismatch:
            self.reset(reseed)
            return False
        self.observations[:] = np.frombuffer(
            state["observations"], dtype=self.observations.dtype
        ).reshape(self.observations.shape)
        if "alive" in state:  # checkpoints from before multi-agent envs have every row alive
            self.alive[:] = np.frombuffer(state["alive"], dtype=bool)
        if self.action_masks.size:
            self.action_masks[:] = np.frombuffer(state["action_masks"], dtype=bool).reshape(
                self.action_masks.shape
            )
        self.tracker.load_state_dict(state["tracker"])
        return True

    def _restore_envs(self, snapshots: list[Any]) -> None:
        """Put each env's captured state back (backends that can capture it override this)."""
        raise NotImplementedError

    @abstractmethod
    def close(self) -> None:
        """Release the envs."""

    def _engine_state(self, snapshots: list[Any] | None) -> dict[str, Any]:
        """The state every backend saves: observations, episode counters, env snapshots."""
        state = {
            "observations": self.observations.tobytes(),
            "alive": self.alive.tobytes(),
            "tracker": self.tracker.state_dict(),
            "envs": snapshots,
        }
        if self.action_masks.size:  # (empty bytes pickle as a call, which loading refuses)
            state["action_masks"] = self.action_masks.tobytes()
        return state

    def _step_result(
        self, row_ids: np.ndarray, out: EnvRows, rows: slice | np.ndarray
    ) -> StepResult:
        """Score finished episodes from the step of ``row_ids`` just written to ``out``;
        ``rows`` is ``as_rows(row_ids)``, which each engine knows without deriving it."""
        episodes = self.tracker.update(rows, out.rewards, out.game_over)
        return StepResult(
            row_ids,
            rows,
            out.observations,
            out.rewards,
            out.terminations,
            out.truncations,
            out.final_observations,
            out.alive,
            episodes,
            out.action_masks,
        )
