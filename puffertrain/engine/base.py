"""The rollout engine interface every backend implements, and episode bookkeeping."""

from __future__ import annotations

import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from puffertrain.distributed import process_cores
from puffertrain.envs.multiagent import AgentRows
from puffertrain.errors import UserError


@dataclass(frozen=True)
class Episode:
    """A finished episode (for Atari: a whole game), scored with raw, unclipped rewards.

    For a multi-agent env, ``score`` is the mean of ``agent_scores`` (each agent's own return,
    by agent name) and ``env_index`` numbers the env, not the row."""

    env_index: int
    score: float
    length: int
    agent_scores: dict[str, float] | None = None


@dataclass
class StepResult:
    """One step of the envs ``env_ids`` (row ``k`` of every array is env ``env_ids[k]``).

    Arrays may be the engine's own buffers: read them before the next ``recv``. With same-step
    autoreset, ``observations`` already holds the first observation of the next
    episode where an episode ended; the observation it ended on is in ``final_observations``
    (meaningful only at rows where ``terminations | truncations``). ``alive`` says which rows
    have an agent that acts on its observation (always every row of a single-agent env).
    """

    env_ids: np.ndarray
    observations: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    final_observations: np.ndarray
    alive: np.ndarray
    episodes: list[Episode]


class EnvError(UserError):
    """An env raised while stepping or resetting (in this process or a worker)."""


@dataclass
class EnvRows:
    """Where a group of envs writes its step results: rows of the engine's arrays (one row per
    env, or per agent of a multi-agent env)."""

    observations: np.ndarray
    final_observations: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    game_over: np.ndarray
    alive: np.ndarray

    @classmethod
    def allocate(cls, num_rows: int, space: gym.spaces.Space) -> EnvRows:
        """Arrays for ``num_rows`` rows with observations of ``space`` (zero, every row alive)."""
        observations = np.zeros((num_rows, *space.shape), dtype=space.dtype)
        return cls(
            observations=observations,
            final_observations=np.zeros_like(observations),
            rewards=np.zeros(num_rows, dtype=np.float32),
            terminations=np.zeros(num_rows, dtype=bool),
            truncations=np.zeros(num_rows, dtype=bool),
            game_over=np.zeros(num_rows, dtype=bool),
            alive=np.ones(num_rows, dtype=bool),
        )

    def select(self, rows: slice | np.ndarray) -> EnvRows:
        """The same fields at ``rows`` (views for a slice, copies for an index array)."""
        return EnvRows(**{name: array[rows] for name, array in vars(self).items()})


def agents_per_env(envs: Sequence[gym.Env | AgentRows]) -> int:
    """Rows each env fills: its agents for PettingZoo envs, else 1."""
    return envs[0].num_agents if envs and isinstance(envs[0], AgentRows) else 1


def _env_error(what: str) -> EnvError:
    return EnvError(f"{what}:\n{traceback.format_exc().rstrip()}")


def step_envs(envs: Sequence[gym.Env], actions: np.ndarray, rows: EnvRows, first: int) -> None:
    """Step each env with its action and write the results in place, with same-step autoreset.

    An env may end an episode for bootstrapping while its score goes on (an Atari life loss):
    it says so with ``info["game_over"] = False``. ``first`` is the first env's global index,
    used to name an env that raises. Multi-agent envs take and fill a block of rows each.
    """
    if envs and isinstance(envs[0], AgentRows):
        agents = envs[0].num_agents
        for index, env in enumerate(envs):
            block = slice(index * agents, (index + 1) * agents)
            try:
                env.step_rows(actions[block], rows.select(block))
            except Exception:
                raise _env_error(f"env {first + index} raised") from None
        return
    for index, env in enumerate(envs):
        try:
            obs, reward, terminated, truncated, info = env.step(actions[index])
            ended = terminated or truncated
            if ended:
                rows.final_observations[index] = obs
                obs, _ = env.reset()
        except Exception:
            raise _env_error(f"env {first + index} raised") from None
        rows.observations[index] = obs
        rows.rewards[index] = reward
        rows.terminations[index] = terminated
        rows.truncations[index] = truncated
        rows.game_over[index] = ended and info.get("game_over", True)


def build_envs(factories: Sequence[Callable[[], gym.Env]], first: int) -> list[gym.Env]:
    """Build the envs; ``EnvError`` naming the env (``first`` is its global index) on failure."""
    envs = []
    for index, factory in enumerate(factories):
        try:
            envs.append(factory())
        except UserError:
            raise
        except Exception:
            raise _env_error(f"env {first + index} failed to build") from None
    return envs


def reset_envs(
    envs: Sequence[gym.Env], seeds: Sequence[int], rows: EnvRows, first: int = 0
) -> None:
    """Reset env ``i`` with ``seeds[i]``, writing its first observation into its row (or its
    block of rows, one per agent); ``EnvError`` naming the env (``first`` is the first env's
    global index) if one raises."""
    agents = agents_per_env(envs)
    for index, (env, seed) in enumerate(zip(envs, seeds, strict=True)):
        try:
            if isinstance(env, AgentRows):
                block = slice(index * agents, (index + 1) * agents)
                env.reset_rows(int(seed), rows.select(block))
            else:
                rows.observations[index], _ = env.reset(seed=int(seed))
        except Exception:
            raise _env_error(f"env {first + index} raised on reset") from None


class EpisodeTracker:
    """Running score and length of each row's current episode.

    With ``agent_names``, rows come in blocks of one per agent; an episode closes for the whole
    block (every row of the env is ``episode_over`` at once) and reports each agent's score.
    """

    def __init__(self, num_rows: int, agent_names: Sequence[str] = ()) -> None:
        self.scores = np.zeros(num_rows, dtype=np.float64)
        self.lengths = np.zeros(num_rows, dtype=np.int64)
        self.agent_names = tuple(agent_names)

    def update(
        self, env_ids: np.ndarray, rewards: np.ndarray, episode_over: np.ndarray
    ) -> list[Episode]:
        """Add one step of the rows ``env_ids``; return the episodes that ``episode_over``
        closes, and restart them."""
        self.scores[env_ids] += rewards
        self.lengths[env_ids] += 1
        ended = env_ids[episode_over]
        if self.agent_names:
            finished = [self._agents_episode(int(row)) for row in ended[:: len(self.agent_names)]]
        else:
            finished = [Episode(int(i), float(self.scores[i]), int(self.lengths[i])) for i in ended]
        self.scores[ended] = 0.0
        self.lengths[ended] = 0
        return finished

    def _agents_episode(self, first_row: int) -> Episode:
        block = self.scores[first_row : first_row + len(self.agent_names)]
        return Episode(
            first_row // len(self.agent_names),
            float(block.mean()),
            int(self.lengths[first_row]),
            dict(zip(self.agent_names, block.tolist(), strict=True)),
        )

    def state_dict(self) -> dict[str, Any]:
        return {"scores": self.scores.tolist(), "lengths": self.lengths.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scores[:] = state["scores"]
        self.lengths[:] = state["lengths"]


def env_groups(env_ids: np.ndarray, group_size: int) -> np.ndarray:
    """The groups (consecutive runs of ``group_size`` envs) that ``env_ids`` is made of."""
    groups = env_ids[::group_size] // group_size
    if not np.array_equal(group_env_ids(groups, group_size), env_ids):
        raise ValueError(f"env ids {env_ids.tolist()} are not whole groups of {group_size}")
    return groups


def as_rows(env_ids: np.ndarray) -> slice | np.ndarray:
    """``env_ids`` as an index: a slice (numpy views) when they are one ascending run."""
    first = int(env_ids[0])
    if np.array_equal(env_ids, np.arange(first, first + len(env_ids))):
        return slice(first, first + len(env_ids))
    return env_ids


def group_env_ids(groups: list[int], group_size: int) -> np.ndarray:
    """The envs of ``groups``, in that order."""
    return (np.asarray(groups)[:, None] * group_size + np.arange(group_size)).reshape(-1)


class VectorEnv(ABC):
    """Envs stepped with same-step autoreset, synchronously or in async batches.

    Envs come in groups of ``group_size`` consecutive envs that are always sent and received
    together. ``send(actions, env_ids)`` starts stepping some idle groups; ``recv()`` waits for
    ``batch_size`` envs' worth of them (or all that are in flight, if fewer) and returns their
    step. With ``batch_size == num_envs`` this is a synchronous step, which ``step`` wraps.
    """

    name: str
    """The backend's --vec name."""
    num_envs: int
    """Rows of the batch: envs, or envs × agents for a multi-agent env. ``env_ids`` number
    rows, and row ``r`` of a multi-agent env belongs to agent ``r % agents_per_env``."""
    agents_per_env: int = 1
    agent_names: tuple[str, ...] = ()
    """Agent of each row of an env's block (empty for single-agent envs)."""
    batch_size: int
    """Rows returned by one ``recv`` (``num_envs``: synchronous)."""
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
    tracker: EpisodeTracker

    def policy_threads(self) -> int:
        """Torch threads for policy inference while these envs step: the cores the env threads
        leave free, at least one. Idle env threads spin or wait to be woken, so a policy that
        takes their cores too slows both (measured in experiments/RESULTS.md)."""
        return max(1, process_cores() - self.env_threads)

    @abstractmethod
    def reset(self, seed: int) -> np.ndarray:
        """Reset env ``i`` with seed ``seed + i``; return the observations. Every env is then
        idle: nothing is in flight."""

    @abstractmethod
    def send(self, actions: np.ndarray, env_ids: np.ndarray) -> None:
        """Start stepping the idle envs ``env_ids`` (whole groups) with ``actions`` (one row per
        env, in the order of ``env_ids``)."""

    @abstractmethod
    def recv(self) -> StepResult:
        """Wait for the next batch of sent envs to finish their step; they become idle."""

    def step(self, actions: np.ndarray) -> StepResult:
        """Step every env with its action (synchronous engines: ``batch_size == num_envs``)."""
        if self.batch_size != self.num_envs:
            raise RuntimeError("step() needs a synchronous engine; use send() and recv()")
        self.send(actions, np.arange(self.num_envs))
        return self.recv()

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Plain-data state: observations, episode counters, env internals if capturable."""

    def load_state_dict(self, state: dict[str, Any], reseed: int) -> bool:
        """Restore :meth:`state_dict`; return False if the envs had to be reset with ``reseed``
        (some env's state could not be captured)."""
        snapshots = state["envs"]
        if snapshots is None or any(snapshot is None for snapshot in snapshots):
            self.reset(reseed)
            return False
        self._restore_envs(snapshots)
        self.observations[:] = np.frombuffer(
            state["observations"], dtype=self.observations.dtype
        ).reshape(self.observations.shape)
        if "alive" in state:  # checkpoints from before multi-agent envs have every row alive
            self.alive[:] = np.frombuffer(state["alive"], dtype=bool)
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
        return {
            "observations": self.observations.tobytes(),
            "alive": self.alive.tobytes(),
            "tracker": self.tracker.state_dict(),
            "envs": snapshots,
        }

    def _step_result(self, env_ids: np.ndarray, rows: EnvRows) -> StepResult:
        """Score finished episodes from the step of ``env_ids`` just written to ``rows``."""
        episodes = self.tracker.update(env_ids, rows.rewards, rows.game_over)
        return StepResult(
            env_ids,
            rows.observations,
            rows.rewards,
            rows.terminations,
            rows.truncations,
            rows.final_observations,
            rows.alive,
            episodes,
        )
