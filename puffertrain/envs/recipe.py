"""How an env id becomes the env every engine, ``eval`` and ``bench`` build: the one place that
chooses between the Atari recipe and a plain (flattened) env."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np

from puffertrain.envs.atari import atari_settings, make_wrapped_atari
from puffertrain.envs.flatten import with_flat_observations
from puffertrain.envs.make import EnvFactory, env_factory, is_atari
from puffertrain.envs.masks import MaskSource, find_mask_source, has_mask_entry
from puffertrain.envs.minigrid import with_grid_code_bounds
from puffertrain.envs.multiagent import is_parallel_env
from puffertrain.errors import UserError


@dataclass(frozen=True)
class EnvRecipe:
    """``factory`` builds one env as the engines take it (Atari preprocessing, or Dict/Tuple
    observations flattened and PettingZoo agents as rows). ``atari`` holds the ALE settings an
    ALE id's native engine is built from (None for other ids); ``frameskip`` is the frames
    each step advances, for a video's frame rate."""

    factory: EnvFactory
    atari: dict[str, Any] | None
    frameskip: int


def env_recipe(
    env_id: str,
    env_kwargs: dict[str, Any],
    render_mode: str | None = None,
    episodic_life: bool = True,
    step_limit: int | None = None,
) -> EnvRecipe:
    """The recipe of ``env_id`` with ``env_kwargs``; ``render_mode`` for videos.
    ``episodic_life=False`` (evaluation): an Atari life loss does not end an episode.
    ``step_limit`` (evaluation): episodes of an env with no time limit of its own are truncated
    after this many steps (ALE games end at their own frame limit)."""
    if is_atari(env_id):
        settings = atari_settings(env_id, env_kwargs)
        factory = partial(make_wrapped_atari, env_id, settings, render_mode, episodic_life)
        return EnvRecipe(factory, settings, settings["frameskip"])
    kwargs = dict(env_kwargs, render_mode=render_mode) if render_mode else env_kwargs
    factory = partial(_built, env_factory(env_id, kwargs))
    if step_limit is not None:  # under the flattening, which must stay the outer layer
        factory = partial(_time_limited, factory, step_limit)
    masks = probe_mask_source(factory)
    factory = partial(with_flat_observations, factory, masks)
    return EnvRecipe(factory, None, 1)


def _built(factory: EnvFactory) -> Any:
    """The env ``factory`` builds, a MiniGrid env with its image's real bounds declared, and
    MultiBinary actions taken as the MultiDiscrete of 2s they are."""
    env = with_grid_code_bounds(factory())
    if isinstance(env, gym.Env) and isinstance(env.action_space, gym.spaces.MultiBinary):
        return BinaryActions(env)
    return env


class BinaryActions(gym.ActionWrapper):
    """A MultiBinary(shape) action space as MultiDiscrete([2] * n): the policy gives a pair of
    logits per bit, as SB3's independent Bernoullis give one, and the env gets its 0/1 array."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.shape = env.action_space.shape
        self.action_space = gym.spaces.MultiDiscrete([2] * math.prod(self.shape))

    def action(self, action: Any) -> np.ndarray:
        return np.asarray(action, dtype=np.int8).reshape(self.shape)


def _time_limited(factory: EnvFactory, step_limit: int) -> Any:
    """The env ``factory`` builds, truncated after ``step_limit`` steps if it has no limit."""
    env = factory()
    spec = getattr(env, "spec", None)
    if isinstance(env, gym.Env) and (spec is None or spec.max_episode_steps is None):
        return gym.wrappers.TimeLimit(env, step_limit)
    return env


def probe_mask_source(factory: EnvFactory) -> MaskSource | None:
    """Where the env's action masks come from, decided once for the run from one env built
    (and reset, to see an info mask) here. None where it gives no masks, or fails to build or
    reset: the engine then reports that failure, naming the env. ``UserError`` for a mask no
    action space can take (see :func:`~puffertrain.envs.masks.find_mask_source`)."""
    try:
        env = factory()
    except UserError:
        raise
    except Exception:
        return None
    try:
        if is_parallel_env(env):
            agent = env.possible_agents[0]
            observation_space, action_space = env.observation_space(agent), env.action_space(agent)
            infos = {} if has_mask_entry(observation_space) else env.reset()[1]
            info = infos.get(agent, {}) if isinstance(infos, dict) else {}
        else:
            observation_space, action_space = env.observation_space, env.action_space
            info = {} if has_mask_entry(observation_space) else env.reset()[1]
        return find_mask_source(observation_space, info, action_space)
    except UserError:
        raise
    except Exception:
        return None
    finally:
        env.close()
