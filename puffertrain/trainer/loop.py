"""The training loop: collect a rollout, compute GAE, update, log, checkpoint."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from puffertrain.config import TrainConfig, to_dict
from puffertrain.errors import UserError
from puffertrain.policy_loader import build_policy
from puffertrain.ppo import Agent, Learner, env_actions
from puffertrain.rollout import RolloutBuffer, to_torch
from puffertrain.trainer.checkpoint import (
    checkpoint_path,
    prune_checkpoints,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from puffertrain.trainer.logger import RunLogger
from puffertrain.trainer.signals import StopRequest
from puffertrain.trainer.timing import PhaseTimer
from puffertrain.vector import EnvError, engine_from


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    return torch.device(name)


class Trainer:
    """One PPO run: owns the envs, the agent, the learner and the run directory."""

    def __init__(
        self, config: TrainConfig, run_dir: Path, checkpoint: dict[str, Any] | None
    ) -> None:
        self.config = config
        self.run_dir = run_dir
        self.device = resolve_device(config.device)
        random.seed(config.seed)
        np.random.seed(config.seed)
        torch.manual_seed(config.seed)

        self.envs, self.backend_reason = engine_from(config)
        observation_space = self.envs.single_observation_space
        self.action_space = self.envs.single_action_space
        policy = build_policy(config.policy, self.envs.policy_observation_space, self.action_space)
        self.agent = Agent(policy, self.action_space).to(self.device)
        self.learner = Learner(self.agent, config.ppo, compile_loss=config.compile)
        self.buffer = RolloutBuffer(
            config.num_steps, config.num_envs, observation_space, self.action_space, self.device
        )
        self.global_step = 0
        self.iteration = 0
        self.timer = PhaseTimer()
        if checkpoint is None:
            self.next_obs = self.envs.reset(config.seed)
        else:
            self._load(checkpoint)

    def collect_rollout(self, logger: RunLogger) -> None:
        """Fill the buffer with num_steps steps of every env."""
        buffer, gamma = self.buffer, self.config.ppo.gamma
        for step in range(self.config.num_steps):
            obs = buffer.observations[step]
            obs.copy_(to_torch(self.next_obs, self.device))
            with self.timer.phase("inference"), torch.no_grad():
                actions, log_probs, values = self.agent.act(obs)
                buffer.actions[step] = actions
                buffer.log_probs[step] = log_probs
                buffer.values[step] = values
                actions_for_envs = env_actions(actions, self.action_space)

            with self.timer.phase("env"):
                result = self.envs.step(actions_for_envs)
            self.global_step += self.config.num_envs
            rewards = to_torch(result.rewards, self.device)
            if self.config.clip_rewards:
                rewards = rewards.sign()
            truncated = result.truncations & ~result.terminations
            if truncated.any():  # bootstrap a time-limit end from the observation it ended on
                final = to_torch(result.final_observations[truncated], self.device)
                with self.timer.phase("inference"), torch.no_grad():
                    rewards[torch.from_numpy(truncated).to(self.device)] += (
                        gamma * self.agent.value(final)
                    )
            buffer.rewards[step] = rewards
            buffer.episode_ends[step] = to_torch(
                result.terminations | result.truncations, self.device
            )
            for episode in result.episodes:
                logger.episode(self.global_step, episode)
            self.next_obs = result.observations

    def train(self) -> None:
        """Run until --total-timesteps or a stop signal, checkpointing along the way."""
        config = self.config
        purge_step = self.global_step + 1 if self.iteration else None
        logger = RunLogger(
            self.run_dir,
            to_dict(config),
            config.num_iterations * config.batch_size,
            self.global_step,
            purge_step,
        )
        try:
            with logger, StopRequest(logger.console) as stop:
                self._iterate(logger, stop)
                logger.message(f"wall time: {self.timer.summary()}")
        finally:
            self.envs.close()

    def _iterate(self, logger: RunLogger, stop: StopRequest) -> None:
        config = self.config
        while self.iteration < config.num_iterations:
            self.iteration += 1
            learning_rate = self.learner.learning_rate(self.iteration, config.num_iterations)
            start_step = self.global_step
            try:
                self.collect_rollout(logger)
            except EnvError as error:  # keep the last update's model; episodes restart
                self.global_step, self.iteration = start_step, self.iteration - 1
                path = self.save(with_envs=False)
                raise EnvError(
                    f"{error}\ncheckpoint {path} saved; --resume {self.run_dir} continues "
                    "with new episodes"
                ) from None
            with self.timer.phase("update"):
                with torch.no_grad():
                    last_values = self.agent.value(to_torch(self.next_obs, self.device))
                self.buffer.compute_advantages(last_values, config.ppo.gamma, config.ppo.gae_lambda)
                stats = self.learner.update(self.buffer, learning_rate)
            logger.update(self.global_step, learning_rate, stats, self.timer.fractions())
            done = self.iteration == config.num_iterations
            if stop.requested or done or self.iteration % config.checkpoint_interval == 0:
                self.save()
                logger.flush()
            if stop.requested:
                logger.message(
                    f"stopped at step {self.global_step:,}; resume with --resume {self.run_dir}"
                )
                break

    def save(self, with_envs: bool = True) -> Path:
        """Write a checkpoint; ``with_envs=False`` after an env failure (episodes restart)."""
        path = checkpoint_path(self.run_dir, self.global_step)
        save_checkpoint(
            path,
            {
                "config": to_dict(self.config),
                "global_step": self.global_step,
                "iteration": self.iteration,
                "policy": self.agent.policy.state_dict(),
                "optimizer": self.learner.optimizer.state_dict(),
                "rng": rng_state(),
                "envs": self.envs.state_dict() if with_envs else {"envs": None},
            },
        )
        prune_checkpoints(self.run_dir, self.config.keep_checkpoints)
        return path

    def _load(self, checkpoint: dict[str, Any]) -> None:
        self.agent.policy.load_state_dict(checkpoint["policy"])
        self.learner.optimizer.load_state_dict(checkpoint["optimizer"])
        self.global_step = checkpoint["global_step"]
        self.iteration = checkpoint["iteration"]
        reseed = self.config.seed + self.config.num_envs * self.iteration
        if not self.envs.load_state_dict(checkpoint["envs"], reseed):
            print(
                f"puffertrain: this env's state cannot be saved; its episodes restart "
                f"(seed {reseed}), so the resumed run is not bit-identical"
            )
        self.next_obs = self.envs.observations
        set_rng_state(checkpoint["rng"])
