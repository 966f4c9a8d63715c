"""``puffertrain eval``: play whole games with a trained policy, report raw scores, record video."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import gymnasium as gym
import numpy as np
import torch

from puffertrain.config import from_dict, parse_kwargs
from puffertrain.distributed import ONE_RANK
from puffertrain.envs import env_factory, is_atari
from puffertrain.envs.atari import atari_settings, make_wrapped_atari
from puffertrain.envs.flatten import with_flat_observations
from puffertrain.errors import UserError
from puffertrain.policy_loader import build_policy
from puffertrain.ppo import Agent, env_actions
from puffertrain.rollout import to_torch
from puffertrain.trainer.checkpoint import load_checkpoint, resolve_resume
from puffertrain.vector import SerialVectorEnv


@dataclass
class EvalConfig:
    """Play whole games (all lives for Atari) with a checkpoint's policy; print raw scores."""

    checkpoint: Path
    """A run directory (its newest checkpoint) or a checkpoint file."""
    episodes: int = 10
    """Games to play."""
    video: Path | None = None
    """Write the first game to this video file (mp4, gif...)."""
    deterministic: bool = False
    """Take the most likely action instead of sampling."""
    seed: int = 0
    """Env seed for the evaluation games."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where the policy runs."""


def _make_env(env_id: str, env_kwargs: str, record: bool):
    render_mode = "rgb_array" if record else None
    kwargs = parse_kwargs(env_kwargs)
    if is_atari(env_id):
        settings = atari_settings(env_id, kwargs)
        return lambda: make_wrapped_atari(env_id, settings, render_mode), settings["frameskip"]
    if render_mode:
        kwargs["render_mode"] = render_mode
    return partial(with_flat_observations, env_factory(env_id, kwargs)), 1


def evaluate(config: EvalConfig) -> list[float]:
    """Play ``config.episodes`` games; return their raw scores."""
    if config.episodes < 1:
        raise UserError("--episodes must be at least 1")
    _, path = resolve_resume(config.checkpoint, "--checkpoint")
    checkpoint = load_checkpoint(path)
    train_config = from_dict(checkpoint["config"])
    device = ONE_RANK.device(config.device)
    factory, frameskip = _make_env(
        train_config.env, train_config.env_kwargs, config.video is not None
    )
    envs = SerialVectorEnv([factory])
    policy = build_policy(
        train_config.policy,
        envs.policy_observation_space,
        envs.single_action_space,
        train_config.normalize_obs,
        train_config.policy_kwargs,
        envs.agent_names,
    )
    policy.load_state_dict(checkpoint["policy"])
    agent = Agent(policy, envs.single_action_space).to(device).eval()
    agent_ids = torch.arange(envs.num_envs, device=device) if envs.agent_names else None
    torch.manual_seed(config.seed)

    fps = envs.envs[0].metadata.get("render_fps", 60) / frameskip
    obs = envs.reset(config.seed)
    state = agent.initial_state(envs.num_envs, device)
    frames = [_render(envs)] if config.video else []
    scores: list[float] = []
    while len(scores) < config.episodes:
        with torch.no_grad():
            actions, _, _, state = agent.act(
                to_torch(obs, device), state, config.deterministic, agent_ids
            )
        result = envs.step(env_actions(actions, envs.single_action_space))
        obs = result.observations
        ended = torch.as_tensor(result.terminations | result.truncations, device=device)
        if state is not None:  # as in training: zero at every episode end
            state = tuple(part * (~ended).unsqueeze(1) for part in state)
        if config.video and not scores:
            frames.append(_render(envs))
        for episode in result.episodes:
            scores.append(episode.score)
            agents = "".join(
                f", {name} {score:g}" for name, score in (episode.agent_scores or {}).items()
            )
            print(f"game {len(scores)}: score {episode.score:g}{agents}, {episode.length} steps")
    envs.close()

    mean = statistics.fmean(scores)
    std = statistics.pstdev(scores)
    print(
        f"{train_config.env}: {mean:.2f} ± {std:.2f} over {len(scores)} games "
        f"(step {checkpoint['global_step']:,} of {path})"
    )
    if config.video:
        _write_video(config.video, frames, fps)
    return scores


def _render(envs: SerialVectorEnv) -> np.ndarray:
    try:
        return envs.envs[0].render()
    except gym.error.DependencyNotInstalled as error:
        raise UserError(f"--video: this env cannot render here: {error}") from None


def _write_video(path: Path, frames: list[np.ndarray], fps: float) -> None:
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimwrite(path, frames, fps=fps)
    print(f"video of game 1 ({len(frames)} frames) written to {path}")
