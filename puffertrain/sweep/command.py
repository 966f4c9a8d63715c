"""``puffertrain sweep``: hyperparameter search with Optuna, each trial a normal training run.

    puffertrain sweep --env ID [train flags] --trials N --jobs J --study NAME --storage URL

Trials run J at a time on this machine (launcher.py, as --seeds does), in run dirs under the
sweep's dir (TensorBoard on it shows them all). The study lives in the storage (SQLite in the
sweep's dir by default), so the same command continues it after Ctrl-C, and the same command
on other machines with one database URL works on it with them.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from puffertrain.adapt import given_fields
from puffertrain.config import TrainConfig
from puffertrain.errors import UserError
from puffertrain.launcher import run_jobs
from puffertrain.seeds import without_flags
from puffertrain.sweep.objective import REPORTS, direction
from puffertrain.sweep.space import (
    Space,
    default_space,
    load_space,
    policy_width,
    starting_values,
    trial_flags,
    without_given,
)
from puffertrain.sweep.trial import TrialJob, say
from puffertrain.trainer.run_dir import holds_run

if TYPE_CHECKING:
    import optuna

REFUSED_FLAGS = ("--resume", "--seeds", "--parallel", "--overwrite")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="puffertrain sweep",
        description="Search hyperparameters with Optuna; each trial is a normal training run. "
        "Every train flag (puffertrain --help) is taken too: flags you give are fixed, "
        "unless --space names them.",
        allow_abbrev=False,
    )
    parser.add_argument("--trials", type=int, default=20, help="trials in the study, in all")
    parser.add_argument("--jobs", type=int, default=1, help="trials at once on this machine")
    parser.add_argument("--study", help="study name (default: <env>__<policy>)")
    parser.add_argument(
        "--storage", help="Optuna RDB URL (default: sqlite:///<sweep dir>/sweep.db)"
    )
    parser.add_argument(
        "--run-dir", type=Path, help="the sweep's dir (default: runs/sweeps/<study>)"
    )
    parser.add_argument("--space", type=Path, help="TOML file changing the search space")
    parser.add_argument(
        "--objective",
        choices=("final", "auc", "steps"),
        default="final",
        help="final: the last eval mean return (or of the last 20 training episodes without "
        "eval); auc: the return averaged over training; steps: env steps to --target",
    )
    parser.add_argument("--target", type=float, help="the return --objective steps aims at")
    parser.add_argument("--pruner", choices=("median", "hyperband", "none"), default="median")
    parser.add_argument(
        "--prune-after",
        type=int,
        default=5,
        help="finished trials before the median pruner prunes",
    )
    parser.add_argument(
        "--summary",
        action="store_true",
        help="print the table, write best_config.json and the plots, and exit",
    )
    parser.add_argument(
        "--plots",
        action="store_true",
        help="draw the plots at the end of the sweep too (--summary always draws them)",
    )
    return parser


def _study_name(args: argparse.Namespace, train_flags: list[str]) -> str:
    if args.study:
        return args.study
    names = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    names.add_argument("--env")
    names.add_argument("--policy", default="auto")
    early = names.parse_known_args(train_flags)[0]
    if not early.env:
        raise UserError("sweep: give --env (or --study) to name the study")
    return f"{early.env}__{early.policy}".replace("/", "-").replace(":", "-")


def _pruner(args: argparse.Namespace) -> optuna.pruners.BasePruner:
    import optuna

    if args.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=args.prune_after, n_warmup_steps=1)
    if args.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=REPORTS)
    return optuna.pruners.NopPruner()


def _width(config: TrainConfig, family: str, observation_space: Any) -> int | None:
    """The default hidden size of the policy the run builds, if it takes one."""
    from puffertrain.policy_loader import auto_policy_name

    policy = config.policy
    if policy == "auto":
        policy = {"atari": "cnn", "multi_agent": "shared"}.get(family) or (
            auto_policy_name(observation_space) if observation_space is not None else "mlp"
        )
    return policy_width(policy)


def _space(
    args: argparse.Namespace, config: TrainConfig, train_flags: list[str]
) -> tuple[Space, int | None]:
    """The default space for the env's family less the flags given, changed by --space; and
    the policy's default width."""
    from puffertrain.cli import preset_family
    from puffertrain.config import parse_kwargs

    family, observation_space = preset_family(
        config.env, parse_kwargs(config.env_kwargs, "--env-kwargs")
    )
    width = _width(config, family, observation_space)
    space = without_given(default_space(family, width, config), given_fields(train_flags))
    if args.space is not None:
        space = load_space(args.space, space)
    return space, width


def _trial_command_flags(settings: dict[str, Any], config: TrainConfig, values: dict) -> list:
    """A trial's train flags: the sweep's, less those the trial sets, then the trial's."""
    searched = {flag.split(".", 1)[0] for flag in values}
    flags = without_flags(list(settings["flags"]), {f"--{flag}" for flag in searched})
    flags += trial_flags(values, config)
    target = settings.get("target")
    stops = "--stop-at-return" in flags
    if settings["objective"] == "steps" and config.eval_interval and not stops:
        flags += ["--stop-at-return", repr(target)]
    return flags


def _shown(values: dict[str, Any]) -> str:
    return " ".join(
        f"{flag}={value:.4g}" if isinstance(value, float) else f"{flag}={value}"
        for flag, value in values.items()
    )


def _starting_config(flags: list[str]) -> TrainConfig:
    from puffertrain.cli import parse_train_args

    config, _ = parse_train_args(flags)
    if not config.env:
        raise UserError("sweep: --env is required (for example --env CartPole-v1)")
    config.validate()
    return config


def _check_args(args: argparse.Namespace, train_flags: list[str]) -> None:
    for flag in train_flags:
        if flag.split("=", 1)[0] in REFUSED_FLAGS:
            raise UserError(f"sweep: {flag} is not a sweep flag (each trial is a new run)")
    if args.trials < 1 or args.jobs < 1:
        raise UserError("sweep: --trials and --jobs must be at least 1")
    if args.objective == "steps" and args.target is None:
        raise UserError("sweep: --objective steps needs --target RETURN")


def sweep(argv: Sequence[str]) -> int:
    """Run (or continue, or with --summary report on) a sweep; return the exit status."""
    args, train_flags = _parser().parse_known_args(list(argv))
    _check_args(args, train_flags)
    study_name = _study_name(args, train_flags)
    sweep_dir = args.run_dir or Path("runs") / "sweeps" / study_name
    storage_url = args.storage or f"sqlite:///{sweep_dir / 'sweep.db'}"
    try:
        import optuna  # noqa: F401  (the sweep extra)
    except ImportError:
        raise UserError("sweep needs Optuna: pip install 'puffertrain[sweep]'") from None
    from puffertrain.sweep.study import storage_errors

    try:
        if args.summary:
            return summarize(_load_study(study_name, storage_url), sweep_dir, plots=True)
        return _search(args, train_flags, study_name, sweep_dir, storage_url)
    except storage_errors() as error:
        cause = error.__cause__ or error  # Optuna wraps SQLAlchemy's error, which says why
        reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise UserError(
            f"--storage {storage_url}: the study's database failed: {reason}. Trials running "
            "here were stopped; the study keeps what it had, and the same command continues it "
            "once the database answers"
        ) from None


def _search(
    args: argparse.Namespace,
    train_flags: list[str],
    study_name: str,
    sweep_dir: Path,
    storage_url: str,
) -> int:
    config = _starting_config(train_flags)
    space, width = _space(args, config, train_flags)
    settings = {
        "flags": train_flags,
        "space": space.as_dict(),
        "objective": args.objective,
        "target": args.target,
    }
    import optuna

    from puffertrain.sweep.study import heartbeat, next_trial, open_storage, open_study

    if args.storage is None:  # SQLite creates the file, not its folder
        sweep_dir.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(storage_url)
    trial_runs = sorted(path.name for path in sweep_dir.glob("trial_*") if holds_run(path))
    studies = optuna.get_all_study_names(storage)
    if trial_runs and study_name not in studies:
        holds = f"it holds {', '.join(studies)}" if studies else "its database was emptied"
        raise UserError(
            f"{sweep_dir} holds the runs of trials ({', '.join(trial_runs[:3])}"
            f"{', ...' if len(trial_runs) > 3 else ''}) and {storage_url} has no study "
            f"'{study_name}' ({holds}): give the study's --study, or another --run-dir"
        )
    study, created = open_study(
        storage,
        study_name,
        direction(args.objective),
        optuna.samplers.TPESampler(),
        _pruner(args),
        settings,
    )
    if created:
        start = starting_values(space, config, width)
        study.enqueue_trial(start)
        say(f"study '{study_name}' created in {storage_url}; trial 0 tries the starting config")
    else:
        say(f"study '{study_name}' in {storage_url}: continuing it")
    say(f"searching {', '.join(f'{k} {p.describe()}' for k, p in space.params.items())}")

    def next_job() -> TrialJob | None:
        trial = next_trial(study, args.trials)
        if trial is None:
            return None
        values = space.suggest(trial)
        run_name = trial.user_attrs.get("run_dir") or f"trial_{trial.number:04d}"
        trial.set_user_attr("run_dir", run_name)
        flags = _trial_command_flags(settings, config, values)
        say(f"trial {trial.number} started: {_shown(values)}")
        return TrialJob(
            study,
            trial,
            sweep_dir / run_name,
            flags,
            args.objective,
            config.total_timesteps,
            args.target,
            config.eval_interval > 0,
            heartbeat(storage, study, trial),
        )

    say(f"{args.trials} trials in {sweep_dir}, {args.jobs} at a time")
    failed, stopped_by = run_jobs(next_job, args.jobs)
    summarize(study, sweep_dir, args.plots)
    if stopped_by:
        say("stopped; the same command continues the study (stopped trials resume)")
        return 128 + stopped_by
    from puffertrain.sweep.results import best_trial

    if failed and best_trial(study) is None:  # a script's next step needs a best config
        say("every trial failed (each one's log says why): no best config")
        return 1
    return 0


def _load_study(name: str, url: str) -> optuna.Study:
    import optuna

    from puffertrain.sweep.study import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.load_study(study_name=name, storage=open_storage(url))
    except KeyError:
        raise UserError(f"sweep --summary: no study '{name}' in {url}") from None


def summarize(study: optuna.Study, sweep_dir: Path, plots: bool) -> int:
    """Print the table of trials; write best_config.json (and with ``plots`` the plots) into
    the sweep's dir. The plots are drawn when asked for: matplotlib and the importances' random
    forest are a fixed cost at the end of every sweep command, which a short sweep feels."""
    from puffertrain.sweep.results import best_trial, trial_table, write_best_config, write_plots
    from puffertrain.sweep.study import SETTINGS

    print(trial_table(study))
    best = best_trial(study)
    if best is None:
        say("no trial has finished yet: no best config")
        return 0
    settings = study.user_attrs[SETTINGS]
    flags = list(settings["flags"])
    config = _starting_config(flags)
    values = {**settings["space"]["fixed"], **best.params}
    best_config = _starting_config(_trial_command_flags(settings, config, values))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    path = write_best_config(best_config, sweep_dir)
    say(f"best: trial {best.number}, objective {best.value:g}; its config: {path}")
    if not plots:
        say("plots: the same command with --summary draws them")
        return 0
    for plot in write_plots(study, sweep_dir):
        say(f"plot: {plot}")
    return 0
