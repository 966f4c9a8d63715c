"""The training loop: collect a rollout, compute GAE, update, log, checkpoint."""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from policies.recurrent import State
from puffertrain.config import TrainConfig, to_dict
from puffertrain.distributed import (
    ONE_RANK,
    Ranks,
    all_gather,
    any_rank,
    gather_to_main,
    process_cores,
)
from puffertrain.errors import UserError
from puffertrain.policy_loader import build_policy
from puffertrain.ppo import Agent, Learner, env_actions
from puffertrain.ppo.precision import resolve_precision
from puffertrain.rollout import RolloutBuffer, to_torch
from puffertrain.rollout.buffer import Index
from puffertrain.rollout.rewards import RewardNormalizer
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
from puffertrain.vector import EnvError, Episode, StepResult, engine_from
from puffertrain.vector.base import as_rows


class Trainer:
    """One PPO run, or one rank's part of a data-parallel run: owns the envs, the agent and
    the learner; rank 0 also owns the run directory.

    Rank ``r`` of ``W`` acts as rows ``r * num_envs ...`` of one set of ``W * num_envs`` envs:
    its envs get those seeds, and its steps count ``W`` times in the global step (every rank
    steps as often), so ``--total-timesteps`` is the budget of the whole job.
    """

    def __init__(
        self,
        config: TrainConfig,
        run_dir: Path,
        checkpoint: dict[str, Any] | None,
        ranks: Ranks = ONE_RANK,
    ) -> None:
        self.config = config
        self.run_dir = run_dir
        self.ranks = ranks
        self.device = ranks.device(config.device)
        self.autocast_dtype, self.precision_reason = resolve_precision(
            config.precision, self.device
        )
        if ranks.distributed:  # torchrun leaves each rank one thread; it may use its share
            torch.set_num_threads(process_cores())
        random.seed(config.seed + ranks.rank)
        np.random.seed(config.seed + ranks.rank)
        torch.manual_seed(config.seed + ranks.rank)

        self.envs, self.backend_reason = engine_from(config)
        try:
            self._build_learner(checkpoint)
        except BaseException:  # a refused policy or checkpoint leaves no workers running
            self.envs.close()
            raise

    def _build_learner(self, checkpoint: dict[str, Any] | None) -> None:
        """Policy, learner, buffer and first observations (or a checkpoint's) for the engine."""
        config = self.config
        self.num_rows = self.envs.num_envs  # envs × agents per env
        self.num_iterations = config.num_iterations(self.num_rows * self.ranks.world_size)
        observation_space = self.envs.single_observation_space
        self.action_space = self.envs.single_action_space
        policy = build_policy(
            config.policy,
            self.envs.policy_observation_space,
            self.action_space,
            config.normalize_obs,
            config.policy_kwargs,
            self.envs.agent_names,
        )
        self.agent = Agent(policy, self.action_space, self.autocast_dtype).to(self.device)
        num_sequences = config.num_sequences(self.num_rows)
        if self.agent.recurrent and config.ppo.num_minibatches > num_sequences:
            raise UserError(
                f"--num-minibatches {config.ppo.num_minibatches} exceeds the "
                f"{num_sequences} sequences a recurrent policy trains on "
                "(num-envs × agents × num-steps / sequence-length)"
            )
        self.learner = Learner(
            self.agent,
            config.ppo,
            compile_loss=config.compile,
            data_parallel=self.ranks.distributed,
        )
        self.reward_normalizer = (
            RewardNormalizer(self.num_rows, config.ppo.gamma) if config.normalize_reward else None
        )
        self.policy_state = self.agent.initial_state(self.num_rows, self.device)
        multi_agent = bool(self.envs.agent_names)
        self.buffer = RolloutBuffer(
            config.num_steps,
            self.num_rows,
            observation_space,
            self.action_space,
            self.device,
            self.policy_state,
            config.ppo.sequence_length,
            self.envs.agents_per_env if multi_agent else 0,
        )
        self.agent_ids = self.buffer.agent_ids[0] if multi_agent else None
        self.global_step = 0
        self.iteration = 0
        self.episodes: list[tuple[int, Episode]] = []  # this rollout's, with their global step
        self.timer = PhaseTimer()
        if checkpoint is None:
            self.next_obs = self.envs.reset(self._env_seed(0)).copy()
            self.next_alive = self.envs.alive.copy()
        else:
            self._load(checkpoint)

    def _env_seed(self, iteration: int) -> int:
        """The seed of this rank's first env at the start of ``iteration`` (new episodes after
        a resume that could not restore them get seeds no earlier iteration used)."""
        first_row = (iteration * self.ranks.world_size + self.ranks.rank) * self.config.num_envs
        return self.config.seed + first_row

    def collect_rollout(self) -> None:
        """Fill the buffer with num_steps steps of every env.

        Every env starts idle; the policy acts on all of them and they are sent. Then each
        batch that comes back has its step recorded and, until its envs have num_steps steps,
        is acted on and sent again while other batches step (async batches). Synchronous
        engines return every env at once, which makes this the classic lockstep loop. The
        policy uses only the cores the env threads leave free meanwhile, and acts inside one
        autocast region, so its weights are cast to bf16 once per rollout, not at every step.
        """
        update_threads = torch.get_num_threads()
        torch.set_num_threads(self.envs.policy_threads())
        try:
            with self.agent.autocast(self.device):
                self._collect(self.config.num_steps)
        finally:
            torch.set_num_threads(update_threads)

    def _collect(self, num_steps: int) -> None:
        steps = np.zeros(self.num_rows, dtype=np.int64)  # actions sent, per env
        self._act_and_send(np.arange(self.num_rows), steps)
        in_flight = self.num_rows
        while in_flight:
            with self.timer.phase("env"):
                result = self.envs.recv()
            env_ids = result.env_ids
            in_flight -= len(env_ids)
            self._record(result, self.buffer.index(steps[env_ids] - 1, env_ids))
            self.next_obs[as_rows(env_ids)] = result.observations
            self.next_alive[as_rows(env_ids)] = result.alive
            going_on = env_ids[steps[env_ids] < num_steps]
            if going_on.size:
                self._act_and_send(going_on, steps)
                in_flight += going_on.size

    def _act_and_send(self, env_ids: np.ndarray, steps: np.ndarray) -> None:
        """Act on the current observations of ``env_ids``, store the step, send the actions."""
        buffer = self.buffer
        index = buffer.index(steps[env_ids], env_ids)
        state = self._state_of(env_ids)
        if state is not None:
            buffer.store_start_states(steps[env_ids], env_ids, state)
        steps[env_ids] += 1
        obs = to_torch(self.next_obs[as_rows(env_ids)], self.device)
        agent_ids = self._agent_ids_of(env_ids)
        if buffer.alive is not None:
            buffer.alive[index] = to_torch(self.next_alive[as_rows(env_ids)], self.device).float()
        with self.timer.phase("inference"), torch.no_grad():
            actions, log_probs, values, state = self.agent.act(obs, state, agent_ids=agent_ids)
            self._set_state(env_ids, state)
            buffer.observations[index] = obs
            buffer.actions[index] = actions
            buffer.log_probs[index] = log_probs
            buffer.values[index] = values
            actions_for_envs = env_actions(actions, self.action_space)
        with self.timer.phase("env"):
            self.envs.send(actions_for_envs, env_ids)

    def _record(self, result: StepResult, index: Index) -> None:
        """Store the rewards and episode ends of a returned batch; keep finished episodes."""
        self.global_step += len(result.env_ids) * self.ranks.world_size
        ended = result.terminations | result.truncations
        rewards = result.rewards
        if self.reward_normalizer is not None:
            acting = self.next_alive[as_rows(result.env_ids)]  # not yet this step's
            rewards = self.reward_normalizer(rewards, result.env_ids, ended, acting)
        rewards = to_torch(rewards, self.device)
        if self.config.clip_rewards:
            rewards = rewards.sign()
        truncated = result.truncations & ~result.terminations
        if truncated.any():  # bootstrap a time-limit end from the observation it ended on
            final = to_torch(result.final_observations[truncated], self.device)
            with self.timer.phase("inference"), torch.no_grad():
                state = self._state_of(result.env_ids[truncated])
                agent_ids = self._agent_ids_of(result.env_ids[truncated])
                rewards[torch.from_numpy(truncated).to(self.device)] += (
                    self.config.ppo.gamma * self.agent.value(final, state, agent_ids)
                )
        self.buffer.rewards[index] = rewards
        self.buffer.episode_ends[index] = to_torch(ended, self.device)
        if self.policy_state is not None and ended.any():  # new episodes start from zero
            for part in self.policy_state:
                part[torch.as_tensor(result.env_ids[ended], device=self.device)] = 0
        self.episodes.extend((self.global_step, episode) for episode in result.episodes)

    def _agent_ids_of(self, env_ids: np.ndarray) -> torch.Tensor | None:
        """The agent index of each row ``env_ids`` (None for a single-agent env)."""
        if self.agent_ids is None:
            return None
        return self.agent_ids[torch.as_tensor(env_ids, device=self.device)]

    def _state_of(self, env_ids: np.ndarray) -> State | None:
        """The recurrent state rows of ``env_ids`` (None for a feed-forward policy)."""
        if self.policy_state is None:
            return None
        rows = as_rows(env_ids)
        return tuple(part[rows] for part in self.policy_state)

    def _set_state(self, env_ids: np.ndarray, state: State | None) -> None:
        if self.policy_state is not None:
            rows = as_rows(env_ids)
            for part, new in zip(self.policy_state, state, strict=True):
                part[rows] = new

    def train(self) -> None:
        """Run until --total-timesteps or a stop signal, checkpointing along the way."""
        config = self.config
        purge_step = self.global_step + 1 if self.iteration else None
        update_steps = self.num_rows * config.num_steps * self.ranks.world_size
        total_steps = self.num_iterations * update_steps
        logger = RunLogger(
            self.run_dir,
            to_dict(config),
            total_steps,
            self.global_step,
            purge_step,
            enabled=self.ranks.main,
        )
        try:
            with logger, StopRequest(logger.console) as stop:
                if total_steps != config.total_timesteps:
                    logger.message(
                        f"training {total_steps:,} steps: whole updates of {update_steps:,} "
                        f"({self._rows_text()} × {config.num_steps} steps) nearest below "
                        f"--total-timesteps {config.total_timesteps:,} (at least one)"
                    )
                self._iterate(logger, stop)
                logger.message(f"wall time: {self.timer.summary()}")
        finally:
            self.envs.close()

    def _rows_text(self) -> str:
        if self.ranks.distributed:
            return f"{self.ranks.world_size} ranks × {self.num_rows} rows"
        return f"{self.num_rows} rows"

    def _iterate(self, logger: RunLogger, stop: StopRequest) -> None:
        config = self.config
        while self.iteration < self.num_iterations:
            self.iteration += 1
            learning_rate = self.learner.learning_rate(self.iteration, self.num_iterations)
            start_step = self.global_step
            failure: EnvError | None = None
            try:
                self.collect_rollout()
            except EnvError as error:
                failure = error
            # every rank takes the same branch: a stop or an env failure anywhere stops all
            stopping, failed = any_rank(stop.requested, failure is not None)
            if failed:  # keep the last update's model; episodes restart
                self.global_step, self.iteration = start_step, self.iteration - 1
                path = self.save(with_envs=False)
                reason = str(failure) if failure else "another rank's envs failed"
                raise EnvError(
                    f"{reason}\ncheckpoint {path} saved; --resume {self.run_dir} continues "
                    "with new episodes"
                )
            for step, episode in self._gather_episodes():
                logger.episode(step, episode)
            with self.timer.phase("update"):
                with torch.no_grad():
                    last_values = self.agent.value(
                        to_torch(self.next_obs, self.device), self.policy_state, self.agent_ids
                    )
                self.buffer.compute_advantages(last_values, config.ppo.gamma, config.ppo.gae_lambda)
                stats = self.learner.update(self.buffer, learning_rate)
                self._update_normalization()
            logger.update(self.global_step, learning_rate, stats, self.timer.fractions())
            done = self.iteration == self.num_iterations
            if stopping or done or self.iteration % config.checkpoint_interval == 0:
                self.save()
                logger.flush()
            if stopping:
                logger.message(
                    f"stopped at step {self.global_step:,}; resume with --resume {self.run_dir}"
                )
                break

    def _gather_episodes(self) -> list[tuple[int, Episode]]:
        """The episodes every rank finished in this rollout, in step order, on rank 0."""
        episodes, self.episodes = self.episodes, []
        gathered = gather_to_main(episodes)
        if gathered is None:
            return []
        return sorted((item for rank in gathered for item in rank), key=lambda item: item[0])

    def _update_normalization(self) -> None:
        """Fold every rank's rollout observations into the policy's running statistics, if it
        keeps any (after the update, so the update saw the statistics the rollout acted with;
        every rank folds the same observations in the same order, so the statistics agree)."""
        update = getattr(self.agent.policy, "update_normalization", None)
        if callable(update):
            observations = self.buffer.observations.flatten(0, 1)
            if self.buffer.alive is not None:  # a dead agent's zeros are not observations
                observations = observations[self.buffer.alive.flatten().bool()]
            if self.ranks.distributed:
                observations = torch.cat(
                    [part.to(self.device) for part in all_gather(observations.cpu())]
                )
            update(observations)

    def save(self, with_envs: bool = True) -> Path:
        """Write a checkpoint; ``with_envs=False`` after an env failure (episodes restart).

        Every rank calls this at the same iteration; rank 0 writes one file holding the shared
        model and optimizer, its own rollout state at the top level (the single-rank layout)
        and the other ranks' under ``other_ranks``."""
        path = checkpoint_path(self.run_dir, self.global_step)
        rank_states = gather_to_main(self._rank_state(with_envs))
        if rank_states is None:
            return path
        save_checkpoint(
            path,
            {
                "config": to_dict(self.config),
                "global_step": self.global_step,
                "iteration": self.iteration,
                "world_size": self.ranks.world_size,
                "policy": self.agent.policy.state_dict(),
                "optimizer": self.learner.optimizer.state_dict(),
                **rank_states[0],
                "other_ranks": rank_states[1:],
            },
        )
        prune_checkpoints(self.run_dir, self.config.keep_checkpoints)
        return path

    def _rank_state(self, with_envs: bool) -> dict[str, Any]:
        """What this rank alone holds: RNG states, envs, recurrent state, reward scaling."""
        return {
            "rng": rng_state(),
            "envs": self.envs.state_dict() if with_envs else {"envs": None},
            "policy_state": self.policy_state if with_envs else None,
            "reward_normalizer": (
                self.reward_normalizer.state_dict(with_returns=with_envs)
                if self.reward_normalizer is not None
                else None
            ),
        }

    def _load(self, checkpoint: dict[str, Any]) -> None:
        saved_world = checkpoint.get("world_size", 1)
        if saved_world != self.ranks.world_size:
            raise UserError(
                f"the checkpoint was written by a run of {saved_world} rank(s); resume it with "
                f"as many (torchrun --nproc-per-node ..., or no torchrun for one), not "
                f"{self.ranks.world_size}"
            )
        self.agent.policy.load_state_dict(checkpoint["policy"])
        self.learner.optimizer.load_state_dict(checkpoint["optimizer"])
        self.global_step = checkpoint["global_step"]
        self.iteration = checkpoint["iteration"]
        if self.ranks.rank:
            checkpoint = checkpoint["other_ranks"][self.ranks.rank - 1]
        reseed = self._env_seed(self.iteration)
        episodes_go_on = self.envs.load_state_dict(checkpoint["envs"], reseed)
        if not episodes_go_on and self.ranks.main:
            print(
                f"puffertrain: this env's state cannot be saved; its episodes restart "
                f"(seed {reseed}), so the resumed run is not bit-identical",
                file=sys.stderr,
            )
        self.next_obs = self.envs.observations.copy()
        self.next_alive = self.envs.alive.copy()
        if episodes_go_on and checkpoint.get("policy_state") is not None:  # else from zero
            for part, saved in zip(self.policy_state, checkpoint["policy_state"], strict=True):
                part.copy_(saved)
        if self.reward_normalizer is not None:
            self.reward_normalizer.load_state_dict(checkpoint["reward_normalizer"])
            if not episodes_go_on:  # new episodes start with no return
                self.reward_normalizer.returns[:] = 0.0
        set_rng_state(checkpoint["rng"])
