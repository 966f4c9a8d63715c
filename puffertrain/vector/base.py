"""The rollout engine interface every backend implements, and episode bookkeeping."""

from __future__ import annotations

import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from puffertrain.errors import UserError


@dataclass(frozen=True)
class Episode:
    """A finished episode (for Atari: a whole game), scored with raw, unclipped rewards."""

    env_index: int
    score: float
    length: int


@dataclass
class StepResult:
    """One step of every env. Arrays are the engine's own buffers: read them before the next step.

    With same-step autoreset, ``observations`` already holds the first observation of the next
    episode where an episode ended; the observation it ended on is in ``final_observations``
    (meaningful only at rows where ``terminations | truncations``).
    """

    observations: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    final_observations: np.ndarray
    episodes: list[Episode]


class EnvError(UserError):
    """An env raised while stepping or resetting (in this process or a worker)."""


@dataclass
class EnvRows:
    """Where a group of envs writes its step results: rows of the engine's arrays."""

    observations: np.ndarray
    final_observations: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    game_over: np.ndarray


def step_envs(envs: Sequence[gym.Env], actions: np.ndarray, rows: EnvRows, first: int) -> None:
    """Step each env with its action and write the results in place, with same-step autoreset.

    An env may end an episode for bootstrapping while its score goes on (an Atari life loss):
    it says so with ``info["game_over"] = False``. ``first`` is the first env's global index,
    used to name an env that raises.
    """
    for index, env in enumerate(envs):
        try:
            obs, reward, terminated, truncated, info = env.step(actions[index])
            ended = terminated or truncated
            if ended:
                rows.final_observations[index] = obs
                obs, _ = env.reset()
        except Exception:
            raise EnvError(
                f"env {first + index} raised:\n{traceback.format_exc().rstrip()}"
            ) from None
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
            message = traceback.format_exc().rstrip()
            raise EnvError(f"env {first + index} failed to build:\n{message}") from None
    return envs


def reset_envs(envs: Sequence[gym.Env], seeds: Sequence[int], observations: np.ndarray) -> None:
    """Reset env ``i`` with ``seeds[i]``, writing its first observation into row ``i``."""
    for index, (env, seed) in enumerate(zip(envs, seeds, strict=True)):
        observations[index], _ = env.reset(seed=int(seed))


class EpisodeTracker:
    """Running score and length of each env's current episode."""

    def __init__(self, num_envs: int) -> None:
        self.scores = np.zeros(num_envs, dtype=np.float64)
        self.lengths = np.zeros(num_envs, dtype=np.int64)

    def update(self, rewards: np.ndarray, episode_over: np.ndarray) -> list[Episode]:
        """Add one step; return the episodes that ``episode_over`` closes, and restart them."""
        self.scores += rewards
        self.lengths += 1
        finished = [
            Episode(int(i), float(self.scores[i]), int(self.lengths[i]))
            for i in np.flatnonzero(episode_over)
        ]
        self.scores[episode_over] = 0.0
        self.lengths[episode_over] = 0
        return finished

    def state_dict(self) -> dict[str, Any]:
        return {"scores": self.scores.tolist(), "lengths": self.lengths.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scores[:] = state["scores"]
        self.lengths[:] = state["lengths"]


class VectorEnv(ABC):
    """A batch of envs stepped together with same-step autoreset."""

    name: str
    """The backend's --vec name."""
    num_envs: int
    single_observation_space: gym.spaces.Space
    single_action_space: gym.spaces.Space
    policy_observation_space: gym.spaces.Space
    """The space policies are built for: a Dict/Tuple space whose observations arrive as flat
    byte rows of ``single_observation_space``, or that same space."""
    observations: np.ndarray
    """The current observation of every env (the engine's buffer)."""
    tracker: EpisodeTracker

    @abstractmethod
    def reset(self, seed: int) -> np.ndarray:
        """Reset env ``i`` with seed ``seed + i``; return the observations."""

    @abstractmethod
    def step(self, actions: np.ndarray) -> StepResult:
        """Step every env with its action."""

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
            "tracker": self.tracker.state_dict(),
            "envs": snapshots,
        }

    def _step_result(self, rows: EnvRows) -> StepResult:
        """Score finished episodes from the step just written to ``rows``; wrap it up."""
        episodes = self.tracker.update(rows.rewards, rows.game_over)
        return StepResult(
            rows.observations,
            rows.rewards,
            rows.terminations,
            rows.truncations,
            rows.final_observations,
            episodes,
        )
