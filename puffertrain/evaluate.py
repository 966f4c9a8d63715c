"""``puffertrain eval``: play whole games with a trained policy, report raw scores, record video."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import gymnasium as gym
import numpy as np
import torch

from puffertrain.config import from_dict, parse_kwargs
from puffertrain.distributed import ONE_RANK
from puffertrain.engine import SerialEngine
from puffertrain.envs.recipe import env_recipe
from puffertrain.errors import UserError
from puffertrain.policy_loader import build_policy
from puffertrain.ppo import PolicyAdapter
from puffertrain.rollout import Rollout
from puffertrain.trainer.checkpoint import load_checkpoint, resolve_resume


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


def evaluate(config: EvalConfig) -> list[float]:
    """Play ``config.episodes`` games; return their raw scores."""
    if config.episodes < 1:
        raise UserError("--episodes must be at least 1")
    _, path = resolve_resume(config.checkpoint, "--checkpoint")
    checkpoint = load_checkpoint(path)
    train_config = from_dict(checkpoint.config)
    device = ONE_RANK.device(config.device)
    render_mode = "rgb_array" if config.video else None
    recipe = env_recipe(train_config.env, parse_kwargs(train_config.env_kwargs), render_mode)
    engine = SerialEngine([recipe.factory])
    policy = build_policy(
        train_config.policy,
        engine.policy_observation_space,
        engine.single_action_space,
        train_config.normalize_obs,
        train_config.policy_kwargs,
        engine.agent_names,
    )
    policy.load_state_dict(checkpoint.policy)
    adapter = PolicyAdapter(policy, engine.single_action_space).to(device).eval()
    rollout = Rollout(engine, adapter, device)
    torch.manual_seed(config.seed)

    fps = engine.envs[0].metadata.get("render_fps", 60) / recipe.frameskip
    rollout.reset(config.seed)
    frames = [_render(engine)] if config.video else []
    scores: list[float] = []
    all_rows = np.arange(engine.num_rows)
    while len(scores) < config.episodes:
        rollout.send(all_rows, deterministic=config.deterministic)
        result = rollout.receive()
        if config.video and not scores:
            frames.append(_render(engine))
        for episode in result.episodes:
            scores.append(episode.score)
            agents = "".join(
                f", {name} {score:g}" for name, score in (episode.agent_scores or {}).items()
            )
            print(f"game {len(scores)}: score {episode.score:g}{agents}, {episode.length} steps")
    engine.close()

    mean = statistics.fmean(scores)
    std = statistics.pstdev(scores)
    print(
        f"{train_config.env}: {mean:.2f} ± {std:.2f} over {len(scores)} games "
        f"(step {checkpoint.global_step:,} of {path})"
    )
    if config.video:
        _write_video(config.video, frames, fps)
    return scores


def _render(engine: SerialEngine) -> np.ndarray:
    try:
        return engine.envs[0].render()
    except gym.error.DependencyNotInstalled as error:
        raise UserError(f"--video: this env cannot render here: {error}") from None


def _write_video(path: Path, frames: list[np.ndarray], fps: float) -> None:
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimwrite(path, frames, fps=fps)
    print(f"video of game 1 ({len(frames)} frames) written to {path}")
