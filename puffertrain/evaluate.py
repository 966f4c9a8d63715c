"""``puffertrain eval``: play whole games with a trained policy, report raw scores, record video."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from puffertrain.distributed import ONE_RANK
from puffertrain.errors import UserError
from puffertrain.ppo import PolicyAdapter
from puffertrain.rollout import Rollout
from puffertrain.trainer.evaluation import EVAL_STEP_LIMIT, frame_renderer, play
from puffertrain.trainer.restore import restore


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


VIDEO_SUFFIXES = frozenset({".mp4", ".gif", ".mkv", ".avi", ".mov"})
"""What ``--video`` writes (imageio's formats for a list of frames, with its ffmpeg plugin)."""


def evaluate(config: EvalConfig) -> list[float]:
    """Play ``config.episodes`` games, game ``i`` on its own env seeded ``--seed`` + i; return
    their raw scores."""
    if config.episodes < 1:
        raise UserError("--episodes must be at least 1")
    if config.video is not None and config.video.suffix.lower() not in VIDEO_SUFFIXES:
        raise UserError(
            f"--video {config.video}: name a video file ({', '.join(sorted(VIDEO_SUFFIXES))})"
        )
    render_mode = "rgb_array" if config.video else None
    restored = restore(
        config.checkpoint, "--checkpoint", render_mode, config.episodes, EVAL_STEP_LIMIT
    )
    engine, checkpoint, train_config = restored.engine, restored.checkpoint, restored.config
    device = ONE_RANK.device(config.device)
    adapter = PolicyAdapter(restored.policy, engine.single_action_space).to(device).eval()
    torch.manual_seed(config.seed)
    render = frame_renderer(engine.envs[0], "--video") if config.video else None
    with torch.no_grad():
        result = play(Rollout(engine, adapter, device), config.seed, config.deterministic, render)
    engine.close()
    for game, episode in enumerate(result.episodes, 1):
        agents = "".join(
            f", {name} {score:g}" for name, score in (episode.agent_scores or {}).items()
        )
        print(f"game {game}: score {episode.score:g}{agents}, {episode.length} steps")

    scores = result.returns
    print(
        f"{train_config.env}: {result.mean:.2f} ± {statistics.pstdev(scores):.2f} over "
        f"{len(scores)} games (step {checkpoint.global_step:,} of {restored.path})"
    )
    if config.video:
        fps = engine.envs[0].metadata.get("render_fps", 60) / restored.recipe.frameskip
        _write_video(config.video, result.frames, fps)
    return scores


def _write_video(path: Path, frames: list[np.ndarray], fps: float) -> None:
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimwrite(path, frames, fps=fps)
    print(f"video of game 1 ({len(frames)} frames) written to {path}")
