"""Atari (ALE) ids: the standard preprocessing, natively or as gymnasium wrappers.

The recipe: noop reset ≤ 30, frameskip 4 with a max-pool over the last two frames, 84×84
grayscale, a 4-frame stack, FIRE on reset, and a termination signal at every lost life while
the game goes on (for bootstrapping; the score keeps counting until game over). Rewards stay
raw here: the trainer clips them for learning only.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from puffertrain.envs.make import register_ale
from puffertrain.errors import UserError

# Preprocessing settings of ale_py.vector_env.AtariVectorEnv that --env-kwargs may override.
NATIVE_SETTINGS = {
    "repeat_action_probability",
    "full_action_space",
    "max_num_frames_per_episode",
    "frameskip",
    "noop_max",
    "stack_num",
    "img_height",
    "img_width",
    "grayscale",
    "maxpool",
    "use_fire_reset",
}


def atari_settings(env_id: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The id's registered settings (v5: sticky actions 0.25, 108k frames) plus the standard
    preprocessing, with ``overrides`` on top. Keys are AtariVectorEnv's argument names."""
    unknown = set(overrides) - NATIVE_SETTINGS
    if unknown:
        # AtariVectorEnv has no game modes nor RAM observations, and the recipe is the same on
        # every backend (the runs compare): an env of one's own leaves the recipe
        raise UserError(
            f"--env-kwargs: the Atari recipe (84×84 frames, on every --vec) takes no "
            f"{', '.join(sorted(unknown))}; it takes {', '.join(sorted(NATIVE_SETTINGS))}. "
            f"For other settings (a game mode, RAM observations) give a function of your own: "
            f"--env mymodule:make_env, where make_env returns gym.make('{env_id}', ...)"
        )
    registered = gym.registry[env_id].kwargs
    frameskip = registered.get("frameskip", 4)
    settings = {
        "game": registered["game"],
        "repeat_action_probability": registered.get("repeat_action_probability", 0.25),
        "full_action_space": registered.get("full_action_space", False),
        "max_num_frames_per_episode": registered.get("max_num_frames_per_episode", 108_000),
        # NoFrameskip ids (1) and random-skip v4 ids ((2, 5)) get the recipe's fixed skip of 4.
        "frameskip": frameskip if isinstance(frameskip, int) and frameskip > 1 else 4,
        "noop_max": 30,
        "stack_num": 4,
        "img_height": 84,
        "img_width": 84,
        "grayscale": True,
        "maxpool": True,
        "use_fire_reset": True,
    }
    settings.update(overrides)
    return settings


class FireReset(gym.Wrapper):
    """Press FIRE after every reset in games that need it to start (Breakout's ball)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        meanings = env.unwrapped.get_action_meanings()
        self.fire = meanings.index("FIRE") if "FIRE" in meanings else None

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        if self.fire is not None:
            obs, _, terminated, truncated, info = self.env.step(self.fire)
            if terminated or truncated:
                obs, info = self.env.reset()
        return obs, info


class LifeLossSignal(gym.Wrapper):
    """Terminate at every lost life, but only reset the game when it is really over.

    ``info["game_over"]`` tells the rollout engine whether the episode's score is complete; a
    reset after a lost life returns the current observation and the game goes on.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.lives = 0
        self.game_over = True
        self.last_obs: Any = None

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        lives = self.env.unwrapped.ale.lives()
        self.game_over = terminated or truncated
        lost_life = 0 < lives < self.lives
        self.lives, self.last_obs = lives, obs
        info["game_over"] = self.game_over
        return obs, reward, terminated or lost_life, truncated, info

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        if not self.game_over:
            return self.last_obs, {"game_over": False}
        obs, info = self.env.reset(**kwargs)
        self.lives, self.last_obs = self.env.unwrapped.ale.lives(), obs
        return obs, info


def make_wrapped_atari(
    env_id: str,
    settings: dict[str, Any],
    render_mode: str | None = None,
    episodic_life: bool = True,
) -> gym.Env:
    """One env with the recipe built from gymnasium wrappers (the reference path);
    ``episodic_life=False`` leaves out the termination at every lost life (evaluation)."""
    register_ale()  # also in worker processes, which start with an empty registry
    env = gym.make(
        env_id,
        render_mode=render_mode,
        frameskip=1,
        repeat_action_probability=settings["repeat_action_probability"],
        full_action_space=settings["full_action_space"],
        max_num_frames_per_episode=settings["max_num_frames_per_episode"],
    )
    env = gym.wrappers.AtariPreprocessing(
        env,
        noop_max=settings["noop_max"],
        frame_skip=settings["frameskip"],
        screen_size=(settings["img_width"], settings["img_height"]),
        grayscale_obs=settings["grayscale"],
        scale_obs=False,
    )
    if settings["use_fire_reset"]:
        env = FireReset(env)
    env = gym.wrappers.FrameStackObservation(env, settings["stack_num"])
    return LifeLossSignal(env) if episodic_life else env
