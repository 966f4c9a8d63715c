"""EnvPool backend (``--vec envpool``, the optional ``envpool`` extra): EnvPool's C++ thread
pools for its Atari, MuJoCo and classic-control ids, one pool per async batch."""

from __future__ import annotations

import difflib
import importlib
from typing import Any

import gymnasium as gym
import numpy as np

from puffertrain.engine.env_rows import EnvRows
from puffertrain.engine.vector_batches import VectorBatches
from puffertrain.envs.atari import atari_settings
from puffertrain.envs.make import is_atari
from puffertrain.errors import UserError

# Our Atari recipe's settings (AtariVectorEnv's names) under EnvPool's names; the frame cap
# becomes a step cap below.
_ATARI_NAMES = {
    "repeat_action_probability": "repeat_action_probability",
    "full_action_space": "full_action_space",
    "frameskip": "frame_skip",
    "noop_max": "noop_max",
    "stack_num": "stack_num",
    "img_height": "img_height",
    "img_width": "img_width",
    "grayscale": "gray_scale",
    "use_fire_reset": "use_fire_reset",
}


def import_envpool() -> Any:
    """The ``envpool`` module; one line saying how to get it where it is missing."""
    try:
        return importlib.import_module("envpool")
    except ImportError as error:
        raise UserError(
            f"--vec envpool: EnvPool is not installed ({error}); pip install "
            "'puffertrain[envpool]' (EnvPool has wheels for Linux x86-64 and Python 3.11+)"
        ) from None


def envpool_id(env_id: str) -> str:
    """EnvPool's name for ``env_id``: ALE ids lose the ``ALE/`` namespace and are v5
    (``ALE/Breakout-v5`` and ``BreakoutNoFrameskip-v4`` are both ``Breakout-v5``)."""
    if not is_atari(env_id):
        return env_id
    name = (
        env_id.split("/")[-1]
        .split("-v")[0]
        .removesuffix("NoFrameskip")
        .removesuffix("Deterministic")
    )
    return f"{name}-v5"


def envpool_settings(env_id: str, env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """EnvPool's keyword arguments for ``env_id``: for ALE ids, our Atari recipe (the id's
    registered sticky actions and frame cap, the standard preprocessing, a termination at every
    lost life, raw rewards) in EnvPool's names; other ids pass ``env_kwargs`` through.
    docs/envs.md lists where EnvPool's Atari differs from the recipe."""
    if not is_atari(env_id):
        return dict(env_kwargs)
    settings = atari_settings(env_id, env_kwargs)
    if not settings["maxpool"]:
        raise UserError("--vec envpool: EnvPool always max-pools Atari frames (maxpool: false)")
    kwargs = {ours: settings[name] for name, ours in _ATARI_NAMES.items()}
    # EnvPool draws 1..noop_max no-ops (FIRE counting as one) and crashes on 0
    kwargs["noop_max"] = max(1, kwargs["noop_max"])
    kwargs["max_episode_steps"] = settings["max_num_frames_per_episode"] // settings["frameskip"]
    return dict(kwargs, episodic_life=True, reward_clip=False)


class EnvPoolEngine(VectorBatches):
    """One EnvPool pool per batch, each on its own C++ threads: ``send`` returns at once, so one
    batch steps while the policy acts on another, as on the native ALE engine.

    EnvPool resets an env on the step after its end, ignoring that step's action; this engine
    resets the env within the step that ended it instead (EnvPool's partial ``reset``), so its
    steps are same-step autoreset like every other engine's. On Atari a lost life terminates
    and EnvPool's reset then goes on with the same game after random no-ops and FIRE;
    ``info["terminated"]`` marks the game's end, which closes the episode's score.

    Env ``i`` of batch ``b`` is seeded ``seed + b * batch_size + i``; a pool is rebuilt to
    reseed it. The pools cannot be captured: resume restarts the episodes.
    """

    name = "envpool"

    def __init__(
        self,
        env_id: str,
        env_kwargs: dict[str, Any],
        num_envs: int,
        num_threads: int,
        batch_size: int = 0,
    ) -> None:
        self._envpool = import_envpool()
        self._id = envpool_id(env_id)
        known = self._envpool.list_all_envs()
        if self._id not in known:
            close = difflib.get_close_matches(self._id, known, n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UserError(f"--vec envpool: EnvPool has no env '{self._id}'{hint}")
        self._kwargs = envpool_settings(env_id, env_kwargs)
        batch_size = batch_size or num_envs
        num_batches = num_envs // batch_size
        self._threads = max(1, num_threads // num_batches)
        self.env_threads = self._threads * num_batches
        self._pools = [self._pool(batch_size, batch * batch_size) for batch in range(num_batches)]
        self._fresh_seeds: list[int | None] = [batch * batch_size for batch in range(num_batches)]
        first = self._pools[0]
        if not isinstance(first.observation_space, gym.spaces.Box):
            self.close()
            raise UserError(
                f"--vec envpool: '{self._id}' has {type(first.observation_space).__name__} "
                "observations, which puffertrain flattens only on its own backends; use --vec "
                "serial or multiprocessing"
            )
        super().__init__(num_envs, batch_size, first.observation_space, first.action_space)
        self._env_ids = np.arange(batch_size, dtype=np.int32)

    def _pool(self, size: int, seed: int) -> Any:
        try:
            return self._envpool.make(
                self._id,
                env_type="gymnasium",
                num_envs=size,
                batch_size=size,
                num_threads=self._threads,
                seed=seed,
                **self._kwargs,
            )
        except (TypeError, ValueError, RuntimeError) as error:
            raise UserError(f"--vec envpool: '{self._id}': {error}") from None

    def _reset_batch(self, batch: int, seed: int, out: EnvRows) -> None:
        if self._fresh_seeds[batch] != seed:  # a pool seeds its envs when it is built
            self._pools[batch].close()
            self._pools[batch] = self._pool(self.batch_size, seed)
        self._fresh_seeds[batch] = None
        observations, info = self._pools[batch].reset()
        out.observations[info["env_id"]] = observations

    def _send_batch(self, batch: int, actions: np.ndarray) -> None:
        dtype = self.single_action_space.dtype
        self._pools[batch].send(actions.astype(dtype, copy=False), self._env_ids)

    def _recv_batch(self, batch: int, out: EnvRows) -> None:
        pool = self._pools[batch]
        observations, rewards, terminations, truncations, info = pool.recv()
        rows = info["env_id"]
        out.observations[rows] = observations
        out.rewards[rows] = rewards
        out.terminations[rows] = terminations
        out.truncations[rows] = truncations
        game_over = np.asarray(info.get("terminated", terminations), dtype=bool)
        out.game_over[rows] = truncations | game_over
        ended = out.terminations | out.truncations
        if np.count_nonzero(ended):  # a fifth of `.any()`'s cost
            out.final_observations[ended] = out.observations[ended]
            first, info = pool.reset(np.flatnonzero(ended).astype(np.int32))
            out.observations[info["env_id"]] = first

    def close(self) -> None:
        for pool in self._pools:
            pool.close()
