"""The training loop: collect a rollout, compute advantages, update, log, checkpoint."""

from __future__ import annotations

import random
import signal
import sys
import traceback
from pathlib import Path

import numpy as np
import torch

from puffertrain.config import TrainConfig, to_dict
from puffertrain.distributed import (
    ONE_RANK,
    Ranks,
    all_gather,
    any_rank,
    gather_to_main,
)
from puffertrain.engine import EnvError, Episode, engine_from
from puffertrain.errors import UserError
from puffertrain.ppo.precision import resolve_precision
from puffertrain.threads import OtherLoad
from puffertrain.trainer.build import build_parts
from puffertrain.trainer.checkpoint import (
    best_checkpoint_path,
    checkpoint_path,
    prune_checkpoints,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from puffertrain.trainer.evaluation import Evaluator
from puffertrain.trainer.logger import RunLogger
from puffertrain.trainer.signals import StopRequest
from puffertrain.trainer.state import RankState, TrainingState


class Trainer:
    """One PPO run, or one rank's part of a data-parallel run: owns the rollout (its engine
    and policy), the buffer and the learner; rank 0 also owns the run directory.

    Rank ``r`` of ``W`` acts as rows ``r * num_envs ...`` of one set of ``W * num_envs`` envs:
    its envs get those seeds, and its steps count ``W`` times in the global step (every rank
    steps as often), so ``--total-timesteps`` is the budget of the whole job.
    """

    def __init__(
        self,
        config: TrainConfig,
        run_dir: Path,
        checkpoint: TrainingState | None,
        ranks: Ranks = ONE_RANK,
    ) -> None:
        self.config, self.run_dir, self.ranks = config, run_dir, ranks
        other_load = OtherLoad()  # from here on: what start-up sees of other processes
        self.device = ranks.device(config.device)
        self.autocast_dtype, self.precision_reason = resolve_precision(
            config.precision, self.device
        )
        random.seed(config.seed + ranks.rank)
        np.random.seed(config.seed + ranks.rank)
        torch.manual_seed(config.seed + ranks.rank)
        self.engine, self.backend_reason = engine_from(config)
        try:
            self._build(checkpoint, other_load)
        except BaseException:  # a refused policy or checkpoint leaves no workers running
            self.engine.close()
            raise

    def _build(self, checkpoint: TrainingState | None, other_load: OtherLoad) -> None:
        """The run's parts for the engine; first observations, or the checkpoint's state."""
        kept = checkpoint.update_threads if checkpoint is not None else None
        parts = build_parts(
            self.config,
            self.engine,
            self.device,
            self.autocast_dtype,
            self.ranks,
            other_load,
            kept,
        )
        self.adapter, self.learner, self.rollout, self.buffer, self.threads = parts
        torch.set_num_threads(self.threads.update)
        self.evaluator = None
        if self.config.eval_interval:
            self.evaluator = Evaluator(self.config, self.adapter, self.device, self.run_dir)
        self.timer = self.rollout.timer
        self.num_iterations = self.config.num_iterations(
            self.engine.num_rows * self.ranks.world_size
        )
        self.iteration = 0
        if checkpoint is None:
            self.rollout.reset(self._env_seed(0))
        else:
            self._load(checkpoint)

    @property
    def global_step(self) -> int:
        return self.rollout.global_step

    def _env_seed(self, iteration: int) -> int:
        """This rank's first env seed at ``iteration`` (restarted episodes get unused seeds)."""
        first_row = (iteration * self.ranks.world_size + self.ranks.rank) * self.config.num_envs
        return self.config.seed + first_row

    def train(self) -> int | None:
        """Run until --total-timesteps or a stop signal, checkpointing along the way; return
        the signal that stopped it (None: it ran to its end)."""
        config = self.config
        update_steps = self.rollout.num_rows * config.num_steps * self.ranks.world_size
        total_steps = self.num_iterations * update_steps
        stop = StopRequest()  # before the run's files appear: a signal from then on stops cleanly
        try:
            owed = self.evaluator is not None and self.evaluator.owed
            if self.iteration >= self.num_iterations and not owed:  # a resumed run this far
                self._nothing_to_train()
                return None
            with (
                stop,
                RunLogger(
                    self.run_dir,
                    to_dict(config),
                    total_steps,
                    self.global_step,
                    purge_step=self.global_step + 1 if self.iteration else None,
                    enabled=self.ranks.main,
                ) as logger,
            ):
                stop.console = logger.console
                if total_steps != config.total_timesteps:
                    rows = f"{self.rollout.num_rows} rows"
                    if self.ranks.distributed:
                        rows = f"{self.ranks.world_size} ranks × {rows}"
                    logger.message(
                        f"training {total_steps:,} steps: whole updates of {update_steps:,} "
                        f"({rows} × {config.num_steps} steps) nearest below "
                        f"--total-timesteps {config.total_timesteps:,} (at least one)"
                    )
                stopped_by = self._iterate(logger, stop)
                logger.message(f"wall time: {self.timer.summary()}")
            return stopped_by
        finally:
            self.engine.close()
            if self.evaluator is not None:
                self.evaluator.close()

    def _nothing_to_train(self) -> None:
        """Say that a resumed run has no step left to train (one resumed with fewer steps than
        it has trained was refused at parsing)."""
        steps, total = self.global_step, self.config.total_timesteps
        if self.ranks.main:
            print(
                f"puffertrain: the run has trained its {steps:,} steps (--total-timesteps "
                f"{total:,}): nothing to do; a larger --total-timesteps extends it",
                file=sys.stderr,
            )

    def _iterate(self, logger: RunLogger, stop: StopRequest) -> int | None:
        """The PPO iteration: collect → advantages → update → log → maybe checkpoint; return
        the signal that stopped it (None: it ran to its end)."""
        ppo = self.config.ppo
        reached, stopped_by = self._evaluate_owed(logger, stop)
        if reached or stopped_by:
            return stopped_by
        while self.iteration < self.num_iterations:
            self.iteration += 1
            learning_rate = self.learner.learning_rate(self.iteration, self.num_iterations)
            self._collect()
            for step, episode in self._gather_episodes():
                logger.episode(step, episode)
            with self.timer.phase("update"):
                # a recurrent policy's stored start states were computed under the statistics
                # its rollout acted with: its update keeps them, and they move after it
                feed_forward = self.buffer.start_states is None
                if feed_forward and self._update_normalization():
                    self.learner.rescore(self.buffer)
                last_values = self.rollout.bootstrap_values()
                self.buffer.compute_advantages(last_values, ppo.gamma, ppo.gae_lambda)
                stats = self.learner.update(self.buffer, learning_rate)
                if not feed_forward:
                    self._update_normalization()
            logger.update(self.global_step, learning_rate, stats, self.timer.fractions())
            last = self.iteration == self.num_iterations
            # a stop asked for in the rollout or the update puts off the evaluation, one asked
            # for in it cuts it short (one process: ranks would part ways); the resumed run
            # plays it first, so it evaluates when and on the seeds an uninterrupted run does
            stopped_by = self._stop_asked(stop)
            reached = self._maybe_evaluate(logger, last, stop, put_off=bool(stopped_by))
            stopped_by = stopped_by or self._stop_asked(stop)
            periodic = self.iteration % self.config.checkpoint_interval == 0
            if stopped_by or reached or last or periodic:
                self.save()
                logger.flush()
            if stopped_by:
                self._stopped_message(logger)
                return stopped_by
            if reached:
                break
        return None

    def _stopped_message(self, logger: RunLogger) -> None:
        logger.message(f"stopped at step {self.global_step:,}; resume with --resume {self.run_dir}")

    def _stop_asked(self, stop: StopRequest) -> int | None:
        """The signal that asked any rank to stop, the same on every rank (which then all take
        the same branch and end the same way), or None."""
        interrupted, terminated = any_rank(
            stop.signum == signal.SIGINT, stop.signum == signal.SIGTERM
        )
        return signal.SIGINT if interrupted else signal.SIGTERM if terminated else None

    def _evaluate_owed(self, logger: RunLogger, stop: StopRequest) -> tuple[bool, int | None]:
        """Play the evaluation a stop put off or cut short in the run this one resumes, at the
        step it was due; return whether --stop-at-return is reached and the signal that
        stopped this one meanwhile (either way, with a checkpoint)."""
        if self.evaluator is None or not self.evaluator.owed:
            return False, None
        reached = self._evaluate(logger, stop)
        stopped_by = self._stop_asked(stop)
        if reached or stopped_by or self.iteration >= self.num_iterations:
            self.save()
            logger.flush()
        if stopped_by:
            self._stopped_message(logger)
        return reached, stopped_by

    def _collect(self) -> None:
        """Fill the buffer. An env failure on any rank stops every rank, with a checkpoint of
        the last update's model."""
        failure: EnvError | None = None
        start_step = self.global_step
        try:
            self.rollout.collect(self.buffer)
        except EnvError as error:
            failure = error
        (failed,) = any_rank(failure is not None)
        if failed:  # keep the last update's model; episodes restart
            self.rollout.global_step, self.iteration = start_step, self.iteration - 1
            reason = str(failure) if failure else "another rank's envs failed"
            raise self._saved(reason, with_envs=False, then="with new episodes")

    def _saved(self, reason: str, with_envs: bool, then: str) -> EnvError:
        """The error that ends a run for ``reason``, once a checkpoint is saved."""
        path = self.save(with_envs=with_envs)
        after = "\n" if "\n" in reason else "; "  # a one-line reason stays one line
        return EnvError(
            f"{reason}{after}checkpoint {path} saved; --resume {self.run_dir} continues {then}"
        )

    def _maybe_evaluate(
        self, logger: RunLogger, last: bool, stop: StopRequest, put_off: bool
    ) -> bool:
        """Evaluate if one is due, and after the ``last`` update (a run that evaluates ends
        with its final policy's score, however its length and the interval fall), unless
        ``put_off`` (owed, then); return whether --stop-at-return is reached."""
        if self.evaluator is None:
            return False
        if not (last or self.evaluator.due(self.iteration, self.global_step, logger)):
            return False
        if put_off:
            self.evaluator.owed = True
            return False
        return self._evaluate(logger, stop)

    def _evaluate(self, logger: RunLogger, stop: StopRequest) -> bool:
        """Evaluate now (cut short by a stop signal, in one process); return whether
        --stop-at-return is reached. An eval env that raises ends the run, with a checkpoint
        of the update it evaluated (in one process: under torchrun ranks must agree first)."""
        best = best_checkpoint_path(self.run_dir)
        with self.timer.phase("eval"):
            try:
                return self.evaluator.run(
                    self.global_step,
                    logger,
                    lambda: self.save(path=best),
                    None if self.ranks.distributed else lambda: stop.requested,
                )
            except Exception as error:
                if self.ranks.distributed:
                    raise
                reason = str(error) if isinstance(error, EnvError) else traceback.format_exc()
                then = "(--eval-interval 0: without evaluating)"
                raise self._saved(f"evaluation: {reason.strip()}", True, then) from None

    def _gather_episodes(self) -> list[tuple[int, Episode]]:
        """The episodes every rank finished in this rollout, in step order, on rank 0."""
        gathered = gather_to_main(self.rollout.take_episodes())
        if gathered is None:
            return []
        return sorted((item for rank in gathered for item in rank), key=lambda item: item[0])

    def _update_normalization(self) -> bool:
        """Fold every rank's rollout observations into the policy's running statistics, if it
        keeps any, and say whether it does. For a feed-forward policy before the update, as
        SB3's `VecNormalize` and CleanRL's wrapper fold each step in as it comes: the first
        update then learns on normalised observations, not on the raw ones the first rollout
        acted on, and every update on statistics that include its own rollout (its actions
        are scored again under them: :meth:`Learner.rescore`). Every rank folds the same
        observations in the same order, so the statistics agree."""
        update = getattr(self.adapter.policy, "update_normalization", None)
        if not callable(update):
            return False
        observations = self.buffer.observations.flatten(0, 1)
        if self.buffer.alive is not None:  # a dead agent's zeros are not observations
            observations = observations[self.buffer.alive.flatten().bool()]
        if self.ranks.distributed:
            observations = torch.cat(
                [part.to(self.device) for part in all_gather(observations.cpu())]
            )
        update(observations)
        return True

    def save(self, with_envs: bool = True, path: Path | None = None) -> Path:
        """Write a checkpoint (at ``path``: the step's by default, pruned to the newest few);
        ``with_envs=False`` after an env failure (episodes restart). Every rank calls this at
        the same iteration; rank 0 writes the one file."""
        periodic, path = path is None, path or checkpoint_path(self.run_dir, self.global_step)
        rank_state = RankState(rng=rng_state(), **self.rollout.state_dict(with_envs))
        rank_states = gather_to_main(rank_state)
        if rank_states is None:
            return path
        state = TrainingState(
            config=to_dict(self.config),
            global_step=self.global_step,
            iteration=self.iteration,
            policy=self.adapter.policy.state_dict(),
            optimizer=self.learner.optimizer.state_dict(),
            ranks=rank_states,
            evaluation=self.evaluator.state_dict() if self.evaluator is not None else None,
            update_threads=self.threads.update,
        )
        save_checkpoint(path, state)
        if periodic:
            prune_checkpoints(self.run_dir, self.config.keep_checkpoints)
        return path

    def _load(self, checkpoint: TrainingState) -> None:
        if checkpoint.world_size != self.ranks.world_size:
            raise UserError(
                f"the checkpoint was written by a run of {checkpoint.world_size} rank(s); resume "
                f"it with as many (torchrun --nproc-per-node ..., or no torchrun for one), not "
                f"{self.ranks.world_size}"
            )
        self.adapter.policy.load_state_dict(checkpoint.policy)
        self.learner.optimizer.load_state_dict(checkpoint.optimizer)
        self.rollout.global_step = checkpoint.global_step
        self.iteration = checkpoint.iteration
        rank_state = checkpoint.ranks[self.ranks.rank]
        reseed = self._env_seed(self.iteration)
        state = rank_state.to_dict()
        episodes_go_on = self.rollout.load_state_dict(state, reseed)
        if not episodes_go_on and self.ranks.main:
            snapshots = state["envs"].get("envs")
            captured = snapshots is not None and all(part is not None for part in snapshots)
            why = (
                f"the checkpoint's envs were saved by another engine than this run's "
                f"{self.engine.name}"
                if captured
                else "this env's state cannot be saved"
            )
            print(
                f"puffertrain: {why}; its episodes restart (seed {reseed}), so the resumed run "
                "is not bit-identical",
                file=sys.stderr,
            )
        if self.evaluator is not None:
            self.evaluator.load_state_dict(checkpoint.evaluation)
        set_rng_state(rank_state.rng)
