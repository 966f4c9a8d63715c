"""Stepping a list of envs in this process, writing each step into rows of shared arrays.

Every engine that runs gymnasium envs itself (serial, and each multiprocessing worker) steps
them through these functions, so same-step autoreset and episode ends mean the same everywhere.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from puffertrain.engine.base import EnvError
from puffertrain.envs.masks import MASK_KEY, unexpected_mask
from puffertrain.envs.multiagent import AgentRows
from puffertrain.errors import UserError


@dataclass
class EnvRows:
    """Where a group of envs writes its step results: rows of the engine's arrays (one row per
    env, or per agent of a multi-agent env). ``action_masks`` holds each row's mask for its
    current observation (no columns for an env without masks)."""

    observations: np.ndarray
    final_observations: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    game_over: np.ndarray
    alive: np.ndarray
    action_masks: np.ndarray

    @classmethod
    def allocate(cls, num_rows: int, space: gym.spaces.Space, mask_size: int = 0) -> EnvRows:
        """Arrays for ``num_rows`` rows with observations of ``space`` and masks of
        ``mask_size`` entries (zero, every row alive)."""
        observations = np.zeros((num_rows, *space.shape), dtype=space.dtype)
        return cls(
            observations=observations,
            final_observations=np.zeros_like(observations),
            rewards=np.zeros(num_rows, dtype=np.float32),
            terminations=np.zeros(num_rows, dtype=bool),
            truncations=np.zeros(num_rows, dtype=bool),
            game_over=np.zeros(num_rows, dtype=bool),
            alive=np.ones(num_rows, dtype=bool),
            action_masks=np.zeros((num_rows, mask_size), dtype=bool),
        )

    def select(self, rows: slice | np.ndarray) -> EnvRows:
        """The same fields at ``rows`` (views for a slice, copies for an index array)."""
        return EnvRows(**{name: array[rows] for name, array in vars(self).items()})


def agents_per_env(envs: Sequence[gym.Env | AgentRows]) -> int:
    """Rows each env fills: its agents for PettingZoo envs, else 1."""
    return envs[0].num_agents if envs and isinstance(envs[0], AgentRows) else 1


def _env_error(what: str) -> EnvError:
    return EnvError(f"{what}:\n{traceback.format_exc().rstrip()}")


def _misfit(obs: Any, reward: Any, rows: EnvRows) -> str:
    """What an env's step returned that its rows cannot hold: a reward that is not one number,
    or an observation of another shape than its space's."""
    if np.ndim(reward) or not isinstance(reward, (int, float, np.number, np.bool_)):
        return f"its step returned the reward {reward!r}; a reward is one number (a float)"
    return _misfit_observation(obs, rows, "step")


def _misfit_observation(obs: Any, rows: EnvRows, call: str) -> str:
    return (
        f"its {call} returned an observation of shape {np.shape(obs)}, where its observation "
        f"space holds {rows.observations.shape[1:]}"
    )


def step_envs(envs: Sequence[gym.Env], actions: np.ndarray, rows: EnvRows, first: int) -> None:
    """Step each env with its action and write the results in place, with same-step autoreset.

    An env may end an episode for bootstrapping while its score goes on (an Atari life loss):
    it says so with ``info["game_over"] = False``. ``first`` is the first env's global index,
    used to name an env that raises. Multi-agent envs take and fill a block of rows each.
    Masked envs (``rows.action_masks`` has columns) give the mask of each new observation in
    ``info["action_mask"]``; an env without masks must never give one.
    """
    if envs and isinstance(envs[0], AgentRows):
        agents = envs[0].num_agents
        for index, env in enumerate(envs):
            block = slice(index * agents, (index + 1) * agents)
            try:
                env.step_rows(actions[block], rows.select(block))
            except UserError as error:  # a broken mask: the message says it all
                raise EnvError(f"env {first + index}: {error}") from None
            except Exception:
                raise _env_error(f"env {first + index} raised") from None
        return
    masked = rows.action_masks.shape[1] > 0
    for index, env in enumerate(envs):
        try:
            obs, reward, terminated, truncated, info = env.step(actions[index])
            ended = terminated or truncated
            if ended:
                rows.final_observations[index] = obs
                obs, info = env.reset()
            if masked:
                rows.action_masks[index] = info[MASK_KEY]
            elif MASK_KEY in info:
                raise unexpected_mask()
        except UserError as error:
            raise EnvError(f"env {first + index}: {error}") from None
        except Exception:
            raise _env_error(f"env {first + index} raised") from None
        try:
            rows.observations[index] = obs
            if reward is None:  # numpy would store it as nan
                raise TypeError
            rows.rewards[index] = reward
        except (ValueError, TypeError):
            raise EnvError(f"env {first + index}: {_misfit(obs, reward, rows)}") from None
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
                obs, info = env.reset(seed=int(seed))
                if rows.action_masks.shape[1]:
                    rows.action_masks[index] = info[MASK_KEY]
        except UserError as error:
            raise EnvError(f"env {first + index}: {error}") from None
        except Exception:
            raise _env_error(f"env {first + index} raised on reset") from None
        if not isinstance(env, AgentRows):
            try:
                rows.observations[index] = obs
            except (ValueError, TypeError):
                misfit = _misfit_observation(obs, rows, "reset")
                raise EnvError(f"env {first + index}: {misfit}") from None
