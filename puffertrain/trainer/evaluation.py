"""Evaluation during training: whole episodes on envs of their own, scored with raw rewards.

The eval envs have no episodic-life signal (an Atari game is one episode) and their own seeds.
Play is greedy unless asked to sample, and sampling draws from a forked RNG, so a run trains
the same parameters with evaluation on or off.
"""

from __future__ import annotations

import io
import math
import statistics
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch

from puffertrain.config import TrainConfig, parse_kwargs
from puffertrain.engine import SerialEngine
from puffertrain.engine.episodes import Episode
from puffertrain.envs.recipe import env_recipe
from puffertrain.errors import UserError
from puffertrain.ppo import PolicyAdapter
from puffertrain.rollout import Rollout

if TYPE_CHECKING:
    from puffertrain.trainer.logger import RunLogger

EVAL_SEED_OFFSET = 1_000_003
"""Eval envs' seeds start this far above the run's, so they never replay a training episode."""
EVAL_STEP_LIMIT = 10_000
"""Steps after which an eval episode of an env with no time limit of its own is truncated: a
greedy policy that loops (CliffWalking's) would otherwise hold training up for ever."""


@dataclass
class EvalResult:
    """One evaluation: one finished episode per eval env, in env order, the env steps it took
    (every env steps until the longest episode ends), and the first env's frames when it was
    recorded."""

    episodes: list[Episode]
    steps: int
    frames: list[np.ndarray] = field(default_factory=list)

    @property
    def returns(self) -> list[float]:
        return [episode.score for episode in self.episodes]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.returns)

    def scalars(self) -> dict[str, float]:
        """The TensorBoard scalars of this evaluation, by tag."""
        return {
            "eval/episodic_return": self.mean,
            "eval/episodic_return_min": min(self.returns),
            "eval/episodic_return_max": max(self.returns),
            "eval/episodic_return_std": float(np.std(self.returns)),  # pstdev fails on nan
            "eval/episodic_length": statistics.fmean(e.length for e in self.episodes),
        }


def frame_renderer(env: gym.Env, flag: str) -> Callable[[], np.ndarray]:
    """``env.render``, once a first frame was drawn: where this machine cannot draw the env's
    frames (MuJoCo without a display or ``MUJOCO_GL``), a ``UserError`` naming ``flag`` now,
    not a traceback in the middle of a run."""
    try:
        with warnings.catch_warnings():  # GLFW warns before MuJoCo fails
            warnings.simplefilter("ignore")
            env.reset(seed=0)  # every play resets with its own seeds
            env.render()
    except Exception as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        hint = "; without a display, set MUJOCO_GL=egl (or osmesa)" if "OpenGL" in reason else ""
        raise UserError(f"{flag}: this env cannot render frames here: {reason}{hint}") from None
    return env.render


def play(
    rollout: Rollout,
    seed: int,
    deterministic: bool,
    render: Callable[[], np.ndarray] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> EvalResult | None:
    """Play one whole episode on each of the rollout's envs (env ``i`` seeded ``seed + i``);
    None if ``should_stop`` says so before they have all ended.

    The envs step together, so the policy acts on one batch per step rather than on one row
    per episode; an env whose episode is over steps on unscored until the last one ends, so
    that every env's episode counts (taking the first K to finish would favour short ones).
    With ``render``, the first env's episode is recorded frame by frame.
    """
    num_envs = len(rollout.engine.envs)
    rows = np.arange(rollout.engine.num_rows)
    first: dict[int, Episode] = {}
    rollout.reset(seed)
    frames = [render()] if render else []
    steps = 0
    with rollout.acting():
        while len(first) < num_envs:
            if should_stop is not None and should_stop():
                rollout.take_episodes()
                return None
            rollout.send(rows, deterministic=deterministic)
            steps += num_envs
            for episode in rollout.receive().episodes:
                first.setdefault(episode.env_index, episode)
            if render and 0 not in first:
                frames.append(render())
    rollout.take_episodes()
    return EvalResult([first[index] for index in range(num_envs)], steps, frames)


class Evaluator:
    """Plays ``--eval-episodes`` whole episodes, one on each of as many envs of its own, every
    ``--eval-interval`` updates while evaluations stay within ``--eval-step-share`` of the
    training's env steps, and remembers how many evaluations ran, the env steps they took and
    the best mean return (saved in checkpoints, so a resumed run evaluates when and on the
    seeds the uninterrupted one would, and keeps the same best)."""

    def __init__(
        self, config: TrainConfig, adapter: PolicyAdapter, device: torch.device, run_dir: Path
    ) -> None:
        self.config, self.device, self.run_dir = config, device, run_dir
        self.record = config.video_interval > 0
        recipe = env_recipe(
            config.env,
            parse_kwargs(config.env_kwargs, "--env-kwargs"),
            render_mode="rgb_array" if self.record else None,
            episodic_life=False,
            step_limit=EVAL_STEP_LIMIT,
        )
        self.frameskip = recipe.frameskip
        self.engine = SerialEngine([recipe.factory] * config.eval_episodes)
        self.render = None
        if self.record:
            self.render = frame_renderer(self.engine.envs[0], "--video-interval")
        self.rollout = Rollout(self.engine, adapter, device)
        self.count = 0
        self.steps = 0  # env steps of every evaluation so far
        self.best = -math.inf
        self.owed = False  # an evaluation due that a stop put off or cut short
        self.told_of_skip = False

    def due(self, iteration: int, global_step: int, logger: RunLogger) -> bool:
        """Whether ``iteration`` evaluates: one of every ``--eval-interval``, unless the
        evaluations so far have stepped more than ``--eval-step-share`` of ``global_step``
        (said once per run, the first time one is skipped)."""
        if not (self.config.eval_interval > 0 and iteration % self.config.eval_interval == 0):
            return False
        share = self.config.eval_step_share
        if share is None or self.steps <= share * global_step:
            return True
        if not self.told_of_skip:
            self.told_of_skip = True
            logger.message(
                f"evaluations so far took {self.steps:,} env steps, more than --eval-step-share "
                f"{share:g} of training's {global_step:,}: the next ones wait until training "
                "catches up"
            )
        return False

    def evaluate(self, should_stop: Callable[[], bool] | None = None) -> EvalResult | None:
        """Play the episodes (None: cut short by ``should_stop``, and not counted); the global
        RNGs are left exactly as they were."""
        config = self.config
        seed = config.seed + EVAL_SEED_OFFSET + self.count * config.eval_episodes
        record = self.record and self.count % config.video_interval == 0
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(seed)
            render = self.render if record else None
            result = play(self.rollout, seed, not config.eval_stochastic, render, should_stop)
        if result is not None:
            self.count += 1
            self.steps += result.steps
        return result

    def run(
        self,
        global_step: int,
        logger: RunLogger,
        save_best: Callable[[], Any],
        should_stop: Callable[[], bool] | None = None,
    ) -> bool:
        """Evaluate and log it; call ``save_best`` when the mean return is the best so far
        (every rank of a torchrun job plays the same episodes with the same parameters, so
        all agree); return whether --stop-at-return is reached. ``should_stop``: whether to
        cut the evaluation short (a stop signal), leaving nothing logged."""
        result = self.evaluate(should_stop)
        self.owed = result is None
        if result is None:
            return False
        logger.evaluation(global_step, result, self.run_dir, self.fps)
        if result.mean > self.best:
            self.best = result.mean
            save_best()
        target = self.config.stop_at_return
        if target is None or result.mean < target:
            return False
        logger.message(
            f"eval mean return {result.mean:g} reached --stop-at-return {target:g} at step "
            f"{global_step:,}"
        )
        return True

    @property
    def fps(self) -> float:
        return self.engine.envs[0].metadata.get("render_fps", 30) / self.frameskip

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "best": self.best, "steps": self.steps, "owed": self.owed}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if state is not None:
            self.count, self.best = int(state["count"]), float(state["best"])
            self.steps = int(state.get("steps", 0))  # checkpoints before the step share: 0
            self.owed = bool(state.get("owed", False))

    def close(self) -> None:
        self.engine.close()


def write_video(path: Path, frames: list[np.ndarray], fps: float) -> bytes:
    """Write ``frames`` as an mp4 at ``path``; return them as GIF bytes (what TensorBoard's
    image tab plays)."""
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimwrite(path, frames, fps=fps, macro_block_size=2)  # no resizing of even sizes
    gif = io.BytesIO()
    imageio.mimwrite(gif, frames, format="GIF", duration=1000 / fps, loop=0)
    return gif.getvalue()
