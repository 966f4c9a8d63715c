"""Command line: ``puffertrain [train] ...``; bad input becomes one line on stderr."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import re
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import gymnasium as gym
import numpy as np
import tyro

from policies.normalize import can_normalize
from puffertrain.adapt import adapt_to_given, given_fields, trains_on_sequences
from puffertrain.config import (
    RESUMABLE_CHANGES,
    TrainConfig,
    config_from_file,
    from_dict,
    parse_kwargs,
    to_dict,
)
from puffertrain.distributed import (
    Ranks,
    all_gather,
    any_rank,
    from_main,
    lost_a_rank,
    process_group,
)
from puffertrain.envs import env_factory, env_family, probe_env
from puffertrain.envs.make import out_of_date_note
from puffertrain.envs.noise_cost import starting_log_std
from puffertrain.envs.spaces import describe_space, policy_view, text_notice
from puffertrain.errors import UserError
from puffertrain.policy_loader import auto_policy_name
from puffertrain.presets import preset_for
from puffertrain.seeds import is_seed_parent, run_seeds, seed_parent, start_seeds, without_flags
from puffertrain.trainer.signals import STOPPED_STATUS, end_as_stopped

if TYPE_CHECKING:
    from puffertrain.trainer.loop import Trainer
    from puffertrain.trainer.state import TrainingState

COMMANDS = ("train", "eval", "bench", "export", "sweep")


def _preparse(argv: Sequence[str]) -> argparse.Namespace:
    """Read --env, --resume and --config before tyro, since they decide the defaults it
    shows."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--env")
    parser.add_argument("--resume")
    parser.add_argument("--config")
    parser.add_argument("--policy", default="auto")
    parser.add_argument("--env-kwargs", default="")
    parser.add_argument("--parallel", default="0")
    return parser.parse_known_args(list(argv))[0]


def _contradictions(saved: TrainConfig, requested: TrainConfig) -> list[str]:
    saved_dict, requested_dict = to_dict(saved), to_dict(requested)
    saved_dict.update(saved_dict.pop("ppo"))
    requested_dict.update(requested_dict.pop("ppo"))
    return [
        f"--{key.replace('_', '-')} {requested_dict[key]} (checkpoint: {saved_dict[key]})"
        for key in saved_dict
        if key not in RESUMABLE_CHANGES and saved_dict[key] != requested_dict[key]
    ]


def preset_family(env_id: str, env_kwargs: dict) -> tuple[str, gym.spaces.Space | None]:
    """The preset family of an env, and its policy's observation space where it was built:
    "multi_agent" for PettingZoo envs; for Box actions "mujoco" (MuJoCo's), "classic_continuous"
    (classic control's) or "continuous" (any other); else the family told by its id, or by the
    env a `module:callable` id builds (so a wrapped CartPole gets the classic-control preset).
    Prints the notices for an out-of-date id and for text leaves the policy will not see, and
    refuses a space no batch can hold."""
    factory = env_factory(env_id, env_kwargs)  # fails on bad ids; imports `module:` ids
    outdated = out_of_date_note(env_id)
    if outdated:
        print(outdated, file=sys.stderr)
    family = env_family(env_id)
    probed = None if family == "atari" else probe_env(factory)
    if probed is None:
        return family, None
    observation_space, action_space, num_agents, built_family = probed
    if family == "other" and built_family != "atari":
        # the built env names the family, but not Atari: its preset assumes the Atari
        # preprocessing, which only ALE ids get
        family = built_family
    if num_agents:
        return "multi_agent", observation_space
    policy_view(observation_space)  # one line for a space no batch holds, before any run dir
    notice = text_notice(observation_space)
    if notice:
        print(notice, file=sys.stderr)
    if isinstance(action_space, gym.spaces.Box):
        off_centre = action_bounds_note(action_space)
        if off_centre:
            print(off_centre, file=sys.stderr)
        box_family = {"mujoco": "mujoco", "classic_control": "classic_continuous"}
        return box_family.get(family, "continuous"), observation_space
    return family, observation_space


def action_bounds_note(space: gym.spaces.Box) -> str:
    """A note for Box actions whose bounds are not centred on 0 (SB3's env checker warns of
    them too), else "": a new policy's actions (mean 0, std 1) are clipped to the nearer
    bound, so at first nearly every action is the same."""
    low, high = space.low.astype(np.float64), space.high.astype(np.float64)
    with np.errstate(invalid="ignore"):  # inf - inf
        off = np.isfinite(low) & np.isfinite(high) & (np.abs(low + high) / 2 > (high - low) / 4)
    if not off.any():
        return ""
    return (
        f"puffertrain: note: the actions {describe_space(space)} are not centred on 0: a "
        "new policy's actions (mean 0) are clipped to the nearer bound; an env that takes "
        "actions in [-1, 1] (gymnasium's RescaleAction) learns from a centred start"
    )


def _preset(env_id: str, env_kwargs: dict, policy: str) -> tuple[TrainConfig, bool, str]:
    """The preset for an env's family fitted to its observations, whether they can be
    normalised (a float Box), and why its actions start below std 1 ("" where they do not). A
    preset normalises observations only where they can be, and its policy for flat vectors
    gives way to ``auto``'s where they need another (multi_input for Dict, cnn for uint8
    images). A recurrent ``policy`` gets its family's recurrent values. A MuJoCo body starts
    its actions at :func:`~puffertrain.envs.noise_cost.starting_log_std`."""
    family, observation_space = preset_family(env_id, env_kwargs)
    preset = preset_for(family, recurrent=trains_on_sequences(policy))
    if observation_space is None:
        return preset, False, ""
    log_std_init, why = (
        starting_log_std(env_factory(env_id, env_kwargs)) if family == "mujoco" else (None, "")
    )
    normalizable = can_normalize(observation_space)
    policy = preset.policy if auto_policy_name(observation_space) == "mlp" else "auto"
    fitted = dataclasses.replace(
        preset,
        policy=policy,
        normalize_obs=preset.normalize_obs and normalizable,
        log_std_init=log_std_init,
    )
    return fitted, normalizable, why


def parse_train_args(
    argv: Sequence[str], notes: list[str] | None = None
) -> tuple[TrainConfig, TrainingState | None]:
    """The resolved config, and the checkpoint to resume from (or None for a new run); the
    lines saying how preset values adapted go to ``notes`` (printed with the startup lines,
    once the run is accepted, so a refused run's error stays one line)."""
    from puffertrain.trainer.checkpoint import load_checkpoint, resolve_resume

    early = _preparse(argv)
    if early.resume and early.config:
        raise UserError("--config starts a new run and --resume continues one; give one of them")
    if early.resume:
        run_dir, path = resolve_resume(Path(early.resume))
        checkpoint = load_checkpoint(path)
        saved = dataclasses.replace(from_dict(checkpoint.config), run_dir=run_dir)
        config = tyro.cli(TrainConfig, default=saved, args=list(argv), prog="puffertrain")
        if config.policy == "auto":  # the choice it made when the run began
            config = dataclasses.replace(config, policy=saved.policy)
        wrong = _contradictions(saved, config)
        if wrong:
            raise UserError(
                f"--resume {early.resume}: flags contradict the checkpoint: {'; '.join(wrong)}"
            )
        if config.run_dir != run_dir:
            raise UserError(f"--resume continues in {run_dir}; drop --run-dir {config.run_dir}")
        if checkpoint.global_step > config.total_timesteps:
            raise UserError(
                f"--total-timesteps {config.total_timesteps:,} is below the "
                f"{checkpoint.global_step:,} steps the run has trained; give more to extend it"
            )
        return config, checkpoint
    default, normalizable, low_std = TrainConfig(), False, ""
    if early.config:
        default = config_from_file(
            Path(early.config),
            lambda config: _preset(
                config.env, parse_kwargs(config.env_kwargs, "--env-kwargs"), config.policy
            )[0],
        )
    elif early.env:
        default, normalizable, low_std = _preset(
            early.env, parse_kwargs(early.env_kwargs, "--env-kwargs"), early.policy
        )
    config = tyro.cli(TrainConfig, default=default, args=list(argv), prog="puffertrain")
    if config.policy == "auto":  # a given `--policy auto` is the preset's choice, as no flag is
        config = dataclasses.replace(config, policy=default.policy)
    given = given_fields(argv)
    config, changes = adapt_to_given(config, given, default, normalizable)
    if notes is not None:
        chosen = "log_std_init" in given or "log_std_init" in parse_kwargs(
            config.policy_kwargs, "--policy-kwargs"
        )
        if low_std and not chosen:
            changes.insert(
                0,
                f"puffertrain: preset: actions start at std e^{config.log_std_init:g} "
                f"(--log-std-init {config.log_std_init:g}): {low_std}",
            )
        notes += changes
    return config, None


def train(argv: Sequence[str], ranks: Ranks) -> None:
    from puffertrain.policy_loader import list_policies

    early = _preparse(argv)
    if early.resume and "seeds" in given_fields(argv):
        what = "the seeds its folder holds" if is_seed_parent(Path(early.resume)) else "one run"
        raise UserError(
            f"--resume {early.resume} continues {what}, and --seeds starts new runs: give one"
        )
    if early.resume and is_seed_parent(Path(early.resume)):
        parallel = tyro.cli(TrainConfig, args=["--parallel", early.parallel]).parallel
        flags = without_flags(list(argv), {"--resume", "--seeds", "--parallel"})
        sys.exit(run_seeds(Path(early.resume), parallel, flags))
    notes: list[str] = []
    config, checkpoint = parse_train_args(argv, notes)
    if config.list_policies:
        if ranks.main:
            print(list_policies())
        return
    if not config.env:
        raise UserError("--env is required (for example --env CartPole-v1)")
    config.validate()
    if config.seeds:
        if ranks.distributed:
            raise UserError("--seeds starts one process per seed; run it without torchrun")
        flags = without_flags(list(argv), {"--seeds", "--parallel"})
        parent, made = seed_parent(flags, config.env, config.policy)
        sys.exit(start_seeds(list(config.seeds), config.parallel, flags, parent, made))
    with process_group(ranks, ranks.device(config.device)):
        _train(config, checkpoint, ranks, notes)


def _train(
    config: TrainConfig, checkpoint: TrainingState | None, ranks: Ranks, notes: list[str]
) -> None:
    """Build the trainer (all ranks) and the run directory (rank 0), print the startup lines
    (``notes`` first), then train."""
    from puffertrain.trainer.run_dir import (
        LOCK_FILE,
        choose_run_dir,
        lock_run_dir,
        start_run_dir,
    )

    # rank 0 names a new run (a default name holds the time, and is created at once) and
    # checks it is free, or holds the run it resumes; the others take its word
    choice: tuple[Path | None, bool, str] = (None, False, "")
    lock = None
    if ranks.main:
        try:
            if checkpoint is None:
                choice = (*choose_run_dir(config), "")
            else:
                lock = lock_run_dir(config.run_dir)
                choice = (config.run_dir, False, "")
        except UserError as error:
            choice = (None, False, str(error))
    run_dir, reserved, refusal = from_main(choice)
    if run_dir is None:
        raise UserError(refusal)
    config = dataclasses.replace(config, run_dir=run_dir)
    # on several machines each rank reads the run dir itself: all must find the same one
    if checkpoint is not None and len(set(all_gather(checkpoint.global_step))) > 1:
        raise UserError(
            f"--resume {run_dir}: the ranks found different checkpoints; every node "
            "needs the same run directory (a shared filesystem)"
        )
    trainer = None
    try:
        trainer = _start_on_every_rank(config, run_dir, checkpoint, ranks)
        refusal = ""
        if ranks.main:
            try:
                if checkpoint is None:
                    lock = start_run_dir(run_dir, config)
                else:  # a run resumed from an older checkpoint branches there
                    _set_aside_newer(run_dir, checkpoint.global_step)
            except UserError as error:
                refusal = str(error)
        refusal = from_main(refusal)  # every rank stops, not just the one refused
        if refusal:
            raise UserError(refusal)
    except BaseException:
        if trainer is not None:
            trainer.engine.close()
        if lock is not None:
            lock.close()
        if reserved:  # made empty here for this run, which did not start
            with contextlib.suppress(OSError):
                (run_dir / LOCK_FILE).unlink(missing_ok=True)
                run_dir.rmdir()
        raise
    if ranks.main:
        for note in notes:
            print(note, file=sys.stderr)
        scale = f"\npuffertrain: {ranks.world_size} ranks" if ranks.distributed else ""
        print(
            f"puffertrain: run directory {run_dir}{scale}\npuffertrain: {trainer.engine.name} "
            f"rollout engine ({trainer.backend_reason})\npuffertrain: precision "
            f"{trainer.precision_reason}\npuffertrain: threads: {trainer.threads.update} for the "
            f"update, {trainer.threads.acting} for acting ({trainer.threads.reason})",
            file=sys.stderr,
        )
    try:
        stopped_by = trainer.train()
    finally:
        if lock is not None:
            lock.close()
    if stopped_by is not None:
        sys.exit(128 + stopped_by)  # a script sees the stop (console() ends by the signal)


def _set_aside_newer(run_dir: Path, global_step: int) -> None:
    from puffertrain.trainer.checkpoint import set_aside_newer

    moved, folder = set_aside_newer(run_dir, global_step)
    if moved:
        print(
            f"puffertrain: the run goes on from step {global_step:,}: its {moved} newer "
            f"checkpoint(s) moved to {folder}",
            file=sys.stderr,
        )


def _start_on_every_rank(
    config: TrainConfig, run_dir: Path, checkpoint: TrainingState | None, ranks: Ranks
) -> Trainer:
    """The trainer, once every rank has built its own; a rank that cannot (a refused policy,
    an env that fails to reset) stops them all before rank 0 creates the run directory."""
    from puffertrain.trainer.loop import Trainer

    trainer, failure = None, None
    try:
        trainer = Trainer(config, run_dir, checkpoint, ranks)
    except UserError as error:
        failure = error
    (failed,) = any_rank(failure is not None)
    if failure is not None:
        raise failure
    if failed:
        trainer.engine.close()
        raise UserError("another rank could not start (its message says why)")
    return trainer


def console() -> None:
    """The ``puffertrain`` console script: ``python -m puffertrain``, whose search path starts
    at the current directory, so that a user's ``--policy mymodule:MyPolicy`` or ``--env
    myenvs:make_env`` there imports as it does with ``python -m``."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    main_as_process()


def main_as_process() -> None:
    """:func:`main` as a process: a command a stop signal ended (its checkpoint saved) ends
    by that signal, as a shell's loop of commands expects."""
    try:
        main()
    except SystemExit as exit:
        if isinstance(exit.code, int) and exit.code in STOPPED_STATUS:
            end_as_stopped(exit.code)
        raise


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args.pop(0) if args and args[0] in COMMANDS else "train"
    ranks = Ranks.from_env()
    prefix = f"puffertrain: rank {ranks.rank}:" if ranks.distributed else "puffertrain:"
    try:
        if command == "train":
            train(args, ranks)
        elif command == "sweep":
            from puffertrain.sweep.command import sweep

            sys.exit(sweep(args))
        elif command == "export":
            from puffertrain.export import ExportConfig, export

            export(tyro.cli(ExportConfig, args=args, prog="puffertrain export"))
        elif command == "eval":
            from puffertrain.evaluate import EvalConfig, evaluate

            evaluate(tyro.cli(EvalConfig, args=args, prog="puffertrain eval"))
        else:
            from puffertrain.bench import BenchConfig, bench
            from puffertrain.bench_concurrent import bench_concurrent

            config = tyro.cli(BenchConfig, args=args, prog="puffertrain bench")
            if config.concurrent < 1:
                raise UserError(f"--concurrent must be at least 1, got {config.concurrent}")
            if config.concurrent > 1:
                bench_concurrent(config, args)
            else:
                bench(config)
    except UserError as error:
        print(f"{prefix} error: {error}", file=sys.stderr)
        sys.exit(2)
    except Exception as error:
        if not (ranks.distributed and lost_a_rank(error)):
            raise
        # another rank died or hung: end this one too, at once, saying why before torchrun's
        # SIGTERM (which follows a dead rank) can cut the message off
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        reason = (str(error).strip().splitlines() or ["no reason given"])[0]
        reason = re.sub(r"^\[[^\]]*\]\s*", "", reason).split(". ")[0][:200]  # gloo's source line
        print(
            f"{prefix} error: lost contact with the other ranks ({reason}); stopping. "
            "Checkpoints written before are kept.",
            file=sys.stderr,
        )
        sys.exit(1)
    except KeyboardInterrupt:
        kept = "; checkpoints written before are kept" if command in ("train", "sweep") else ""
        print(f"puffertrain: aborted{kept}", file=sys.stderr)
        sys.exit(130)
