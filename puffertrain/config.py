"""Run configuration: the dataclasses tyro turns into flags, and per-env-family presets."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import tyro

from puffertrain.errors import UserError


@dataclass
class PPOConfig:
    """PPO hyperparameters (CleanRL names)."""

    learning_rate: float = 2.5e-4
    """Adam learning rate at the start of training."""
    anneal_lr: bool = True
    """Anneal the learning rate linearly to 0 over --total-timesteps."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """Lambda of generalised advantage estimation."""
    num_minibatches: int = 4
    """Minibatches per epoch; the batch is num_envs × num_steps."""
    update_epochs: int = 4
    """Passes over the batch per update."""
    norm_adv: bool = True
    """Normalise advantages within each minibatch."""
    clip_coef: float = 0.2
    """Surrogate clipping coefficient."""
    clip_vloss: bool = True
    """Clip the value loss around the old values with --clip-coef (CleanRL's default). The
    classic-control, continuous and generic presets turn it off: clipped, the value moves at most
    --clip-coef per update, and a critic whose returns are tens lags them for hundreds of
    updates (experiments/RESULTS.md, "Value clipping"). Recurrent policies keep it."""
    ent_coef: float = 0.01
    """Entropy bonus coefficient."""
    vf_coef: float = 0.5
    """Value loss coefficient."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clipping threshold."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    """Adam's decay rates of its running gradient mean and squared gradient (torch's
    defaults). Equal rates (e.g. 0.99 0.99) keep a step near the learning rate when a new
    rollout shifts the gradients, where a squared-gradient average slower than the mean's can
    let it jump (Dohare et al. 2023, "Overcoming Policy Collapse in Deep RL")."""
    target_kl: float | None = None
    """End the update at the first minibatch whose approximate KL from the rollout's policy
    exceeds 1.5 × this, before its step, as SB3 does (off when None; logged as
    losses/steps_fraction, the share of the planned minibatch steps taken). Each minibatch's KL
    is then read back to the host (and averaged over torchrun ranks)."""
    adaptive_lr_kl: float | None = None
    """Keep each update's mean approximate KL under this by adapting the learning rate (off
    when None): after an update above it the rate drops 1.5×, after one under half of it it
    rises 1.5×, never above the annealed schedule's (rsl_rl's and rl_games' adaptive
    schedule, one-sided). Unlike --target-kl no planned step is skipped; the steps shrink
    only while updates run hot."""
    sequence_length: int = 0
    """Recurrent policies: train on sequences of this many steps, each from the LSTM state
    stored at its start (a divisor of num-steps; 0: each env's whole rollout)."""


@dataclass
class TrainConfig:
    """Train a PPO agent. Presets follow the env family; every flag overrides them.

    Other commands: `puffertrain eval --help`, `export --help`, `bench --help`, `sweep --help`.
    """

    env: str = ""
    """Env id: a gymnasium id (CartPole-v1, ALE/Breakout-v5), `module:EnvName-v0` (imports the
    module, which registers the id) or `package.module:callable` returning an env."""
    policy: str = "auto"
    """Policy name (see --list-policies) or `package.module:Class`."""
    policy_kwargs: str = ""
    """JSON object of keyword arguments for the policy's constructor, e.g.
    '{"hidden_size": 64}' or, for --policy shared, '{"agent_ids": true}'."""
    log_std_init: float | None = None
    """Where Box actions' log-std starts, for policies that take SB3's `log_std_init` keyword
    (the library's mlp, separate_mlp, continuous, multi_input and LSTM policies; one in
    --policy-kwargs wins).
    None: the policy's own (std 1). The MuJoCo preset starts lower on a body whose untrained
    noise pays more in control cost than it earns for staying up (printed at start)."""
    total_timesteps: int = 500_000
    """Env steps to train for, summed over all envs (agent steps for multi-agent envs)."""
    num_envs: int = 8
    """Parallel envs (a multi-agent env gives one batch row per agent)."""
    num_steps: int = 128
    """Steps per env per rollout."""
    seed: int = 1
    """Seed for envs, torch, numpy and python."""
    seeds: tuple[int, ...] = ()
    """Train one run per seed (e.g. --seeds 1 2 3), each a normal run dir under one parent
    (--run-dir, or runs/<env>__<policy>__seeds__<time>); prints a summary table at the end.
    --resume PARENT continues them all."""
    parallel: int = 0
    """With --seeds: runs trained at once, each pinned to its share of the CPUs (0: one per
    CPU this process may use)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where the policy and buffers live; auto picks cuda when available."""
    run_dir: Path | None = None
    """Run directory; default runs/<env>__<policy>__<seed>__<timestamp>."""
    resume: Path | None = None
    """Continue a run: its directory (newest checkpoint) or a checkpoint file."""
    config: Path | None = None
    """Train from a config file: a run's config.json or a sweep's best_config.json (its
    run-dir is left out; flags given with it override it)."""
    overwrite: bool = False
    """Allow --run-dir to name a directory that already holds a run, replacing it."""
    vec: Literal["auto", "serial", "multiprocessing", "native", "envpool"] = "auto"
    """Rollout engine backend: serial (envs stepped in this process), multiprocessing (worker
    processes over shared memory), native (the env's own vector implementation: ale-py's C++
    vector env for ALE ids, the registered gymnasium vector entry point for others such as
    CartPole-v1), envpool (EnvPool's C++ pools; the envpool extra). auto picks native for ALE
    ids and, from 8 envs, for ids with a vector entry point (below, single envs step faster),
    multiprocessing where a quick timing says workers pay, serial otherwise; the choice and
    the reason are printed."""
    num_workers: int = 0
    """Worker processes of the multiprocessing backend (0: one per core, dividing num-envs)."""
    num_threads: int = 0
    """Threads of the native ALE and envpool backends (0: one per core, shared out over their
    batches)."""
    threads: int = 0
    """Torch threads for the policy's math (0: chosen from the CPUs this process may use and
    the policy's size; the choice and its reason are printed)."""
    env_batch_size: int = 0
    """Async batches: the policy acts on whichever this many envs are ready while the others
    step (a divisor of num-envs; 0: every env, synchronous)."""
    env_kwargs: str = ""
    """JSON object of env settings over the id's registered ones, e.g.
    '{"repeat_action_probability": 0.0}' (for ALE ids: AtariVectorEnv's argument names)."""
    clip_rewards: bool = False
    """Learn from sign(reward); scores are still logged raw (on in the Atari preset)."""
    normalize_obs: bool = False
    """Normalise float observations inside the policy by their running mean and variance
    (clipped to ±10): each rollout's observations go into the statistics before the update on
    it (after it for a recurrent policy); saved in checkpoints (on in the classic-control and
    continuous presets, for float observations)."""
    normalize_reward: bool = False
    """Learn from rewards divided by the running std of each env's discounted return (clipped
    to ±10; SB3's VecNormalize); scores are still logged raw (on in the continuous and generic
    presets, and for recurrent policies)."""
    action_noise_color: float = 0.0
    """Continuous actions: the exploration noise's color, the beta of its 1/f**beta spectrum
    (0: white, a fresh draw every step; 1: pink; 2: a random walk). Every step's draw is still
    standard normal, so PPO's ratio is unchanged; neighbouring steps push the same way."""
    compile: bool = False
    """torch.compile the update's policy forward and loss step (on in the Atari preset, where
    convolutions make the update the bulk of the time; rollout inference stays eager, since
    its small batches gain nothing from it; experiments/RESULTS.md measures both)."""
    precision: Literal["auto", "fp32", "bf16"] = "fp32"
    """Compute dtype of the policy in the rollout and the update: bf16 runs its matmuls and
    convolutions under torch.autocast in bfloat16 (weights, optimizer and loss stay float32);
    it is refused where the device has no native bf16 (CPU: AVX512-BF16 or AMX). auto: bf16
    where native, else fp32 (the Atari preset)."""
    eval_interval: int = 0
    """Evaluate every this many updates and after the last (0: never): --eval-episodes whole
    episodes on envs of their own with raw rewards, no episodic-life signal and their own
    seeds, logged as eval/*; the best mean so far is kept as checkpoints/best.pt. Training is
    the same with it on or off. The presets evaluate every ~25,000 env steps (the RL Zoo's
    eval_freq), except the Atari one."""
    eval_episodes: int = 10
    """Episodes per evaluation."""
    eval_step_share: float | None = None
    """The most env steps evaluations take, as a share of training's: one that --eval-interval
    makes due is skipped while the evaluations so far have stepped more than this times
    training's steps, so long episodes (MuJoCo's 1000 steps, a good Atari player's games)
    spread evaluations out instead of slowing training. The last one always runs. None: none
    is skipped (the presets that evaluate take 0.1, and a given --eval-interval None)."""
    eval_stochastic: bool = False
    """Sample the evaluation's actions instead of taking the most likely one."""
    stop_at_return: float | None = None
    """Stop (with a final checkpoint) once an evaluation's mean return reaches this; needs
    --eval-interval."""
    video_interval: int = 0
    """Record the first episode of every this many evaluations (0: never) as
    videos/eval_<step>.mp4 in the run dir and in TensorBoard's images tab; needs
    --eval-interval."""
    checkpoint_interval: int = 50
    """Save a checkpoint every this many updates (and always at the end and on Ctrl-C)."""
    keep_checkpoints: int = 3
    """Periodic checkpoints to keep (the newest ones)."""
    list_policies: bool = False
    """Print the policy names with one line each and exit."""
    ppo: Annotated[PPOConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=PPOConfig)

    def validate(self) -> None:
        """Raise ``UserError`` for values no run can use."""
        for name, value in {**vars(self), **vars(self.ppo)}.items():
            problem = value_problem(name, value)
            if problem:
                raise UserError(problem)
        if not self.eval_interval and (self.stop_at_return is not None or self.video_interval):
            flag = "--stop-at-return" if self.stop_at_return is not None else "--video-interval"
            raise UserError(f"{flag} works on evaluations: add --eval-interval N (updates)")
        if self.ppo.sequence_length and self.num_steps % self.ppo.sequence_length:
            raise UserError(
                f"--sequence-length {self.ppo.sequence_length} must divide --num-steps "
                f"{self.num_steps} (0: whole rollouts)"
            )
        if self.clip_rewards and self.normalize_reward:
            raise UserError(
                "--clip-rewards and --normalize-reward both rescale rewards; keep one (the "
                "Atari preset clips: add --no-clip-rewards to normalise instead)"
            )
        if self.ppo.num_minibatches > self.batch_size:
            raise UserError(
                f"--num-minibatches {self.ppo.num_minibatches} exceeds the batch of "
                f"{self.batch_size} steps (num-envs × num-steps)"
            )

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    def num_sequences(self, num_rows: int) -> int:
        """Sequences a recurrent policy trains on per update, with ``num_rows`` rows (envs, or
        envs × agents)."""
        return num_rows * self.num_steps // (self.ppo.sequence_length or self.num_steps)

    def num_iterations(self, num_rows: int) -> int:
        """Updates in the run with ``num_rows`` rows: every row's step counts toward
        --total-timesteps (agent steps for multi-agent envs)."""
        return max(1, self.total_timesteps // (num_rows * self.num_steps))


def _at_least_1(value: int) -> bool:
    return value >= 1


# One-value rules, by field: a value no run can use (validate checks every field by them, a
# sweep every value its space can give). Rules between fields stay in TrainConfig.validate.
VALUE_RULES: dict[str, tuple[typing.Callable[[Any], bool], str]] = {
    **{
        name: (_at_least_1, "must be at least 1")
        for name in (
            "num_envs",
            "num_steps",
            "total_timesteps",
            "num_minibatches",
            "update_epochs",
            "checkpoint_interval",
            "keep_checkpoints",
            "eval_episodes",
        )
    },
    "threads": (lambda value: value >= 0, "must be 0 (automatic) or more"),
    "num_workers": (lambda value: value >= 0, "must be 0 (automatic) or more"),
    "num_threads": (lambda value: value >= 0, "must be 0 (automatic) or more"),
    "seconds": (lambda value: value > 0, "must be above 0"),  # bench's
    "windows": (_at_least_1, "must be at least 1"),  # bench's
    "parallel": (lambda value: value >= 0, "must be 0 (automatic) or more"),
    "eval_interval": (lambda value: value >= 0, "must be 0 (off) or more"),
    "video_interval": (lambda value: value >= 0, "must be 0 (off) or more"),
    "eval_step_share": (
        lambda value: value is None or value > 0,
        "must be above 0 (None: no limit)",
    ),
    "target_kl": (lambda value: value is None or value > 0, "must be above 0 (None: off)"),
    "adaptive_lr_kl": (lambda value: value is None or value > 0, "must be above 0 (None: off)"),
    "adam_betas": (lambda value: all(0 <= beta < 1 for beta in value), "must each be in [0, 1)"),
    "learning_rate": (lambda value: value > 0, "must be above 0"),
    "clip_coef": (lambda value: value > 0, "must be above 0"),
    "max_grad_norm": (lambda value: value > 0, "must be above 0"),
    "gamma": (lambda value: 0 <= value <= 1, "must be in [0, 1]"),
    "gae_lambda": (lambda value: 0 <= value <= 1, "must be in [0, 1]"),
    "vf_coef": (lambda value: value >= 0, "must be 0 or more"),
    "sequence_length": (lambda value: value >= 0, "must be 0 (whole rollouts) or more"),
    "action_noise_color": (
        lambda value: 0 <= value <= 2,
        "must be from 0 (white) to 2 (a random walk)",
    ),
}


def value_problem(name: str, value: Any) -> str:
    """What is wrong with ``value`` for the config field ``name`` on its own ("" if nothing)."""
    rule = VALUE_RULES.get(name)
    if rule is None or rule[0](value):
        return ""
    shown = " ".join(map(str, value)) if isinstance(value, tuple) else value
    return f"--{name.replace('_', '-')} {rule[1]}, got {shown}"


# Fields a resumed run may change; any other difference contradicts the checkpoint.
RESUMABLE_CHANGES = frozenset(
    {
        "total_timesteps",
        "num_workers",
        "num_threads",
        "threads",
        "seeds",
        "parallel",
        "env_batch_size",
        "device",
        "compile",
        "precision",
        "checkpoint_interval",
        "keep_checkpoints",
        "eval_interval",
        "eval_episodes",
        "eval_step_share",
        "eval_stochastic",
        "stop_at_return",
        "video_interval",
        "resume",
        "config",
        "run_dir",
        "overwrite",
        "list_policies",
    }
)


def parse_kwargs(text: str, flag: str) -> dict[str, Any]:
    """A ``--env-kwargs`` / ``--policy-kwargs`` value as a dict; ``UserError``, naming
    ``flag``, unless it is a JSON object."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"{flag} is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise UserError(f"{flag} must be a JSON object, e.g. '{{\"key\": 1}}'")
    return value


def to_dict(config: TrainConfig) -> dict[str, Any]:
    """The config as JSON-ready builtins (paths as strings)."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def from_dict(data: dict[str, Any]) -> TrainConfig:
    """Inverse of :func:`to_dict` (JSON holds a tuple field as a list: it becomes a tuple again)."""
    data = _lists_as_tuples(data)
    ppo = PPOConfig(**_lists_as_tuples(data.pop("ppo")))
    for key in ("run_dir", "resume", "config"):
        if data.get(key) is not None:
            data[key] = Path(data[key])
    return TrainConfig(**data, ppo=ppo)


def _lists_as_tuples(data: dict[str, Any]) -> dict[str, Any]:
    return {key: tuple(value) if isinstance(value, list) else value for key, value in data.items()}


# Keys of a config file that name where a run is, not how it trains: a new run gets its own.
NOT_FROM_FILE = ("run_dir", "resume", "overwrite", "config")


def _type_name(kind: Any) -> str:
    return getattr(kind, "__name__", None) or str(kind).replace("typing.", "")


def _check_value(key: str, value: Any, kind: Any) -> None:
    """``UserError`` naming ``key`` unless ``value`` (from JSON) fits the annotation ``kind``."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is Annotated:
        return _check_value(key, value, args[0])
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _check_value(key, value, next(arg for arg in args if arg is not type(None)))
    if origin is Literal:
        if value not in args:
            raise UserError(
                f"key '{key}' must be one of {', '.join(map(str, args))}, got {value!r}"
            )
        return None
    if origin is tuple:
        if not isinstance(value, list):
            raise UserError(f"key '{key}' must be a list, got {value!r}")
        if Ellipsis not in args and len(value) != len(args):
            raise UserError(f"key '{key}' must be a list of {len(args)}, got {value!r}")
        kinds = [args[0]] * len(value) if Ellipsis in args else args  # tuple[int, ...] or each
        for item, item_kind in zip(value, kinds, strict=True):
            _check_value(key, item, item_kind)
        return None
    fits = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
        Path: isinstance(value, str),
    }
    if not fits.get(kind, False):
        raise UserError(f"key '{key}' must be {_type_name(kind)}, got {value!r}")
    return None


def _checked(data: Any, cls: type, prefix: str = "") -> dict[str, Any]:
    """``data`` as keyword arguments of the dataclass ``cls`` (nested ones too), each key and
    value checked against its field."""
    if not isinstance(data, dict):
        raise UserError(f"key '{prefix.rstrip('.') or 'the file'}' must be a JSON object")
    hints = typing.get_type_hints(cls, include_extras=True)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in hints:
            raise UserError(f"unknown key '{prefix}{key}'")
        kind = hints[key]
        inner = typing.get_args(kind)[0] if typing.get_origin(kind) is Annotated else kind
        if dataclasses.is_dataclass(inner):
            kwargs[key] = inner(**_checked(value, inner, f"{prefix}{key}."))
            continue
        _check_value(f"{prefix}{key}", value, kind)
        if isinstance(value, int) and float in (*typing.get_args(kind), kind):
            value = float(value)  # a hand-written 1 for a float field
        kwargs[key] = tuple(value) if isinstance(value, list) else value
    return kwargs


def config_from_file(
    path: Path, preset: typing.Callable[[TrainConfig], TrainConfig] | None = None
) -> TrainConfig:
    """The config a file holds (a run's config.json, a sweep's best_config.json), with what
    names a run's place (run dir, resume) left out; ``UserError`` naming the first unknown key
    or wrongly typed value. A file that leaves fields out (one written by hand) sets them over
    ``preset(config)``, the values its env gets on the command line, where a ``preset`` is
    given and the file names an env."""
    try:
        data = json.loads(path.read_text())
    except OSError as error:
        raise UserError(f"--config {path}: cannot read it ({error.strerror})") from None
    except json.JSONDecodeError as error:
        raise UserError(f"--config {path}: not valid JSON: {error}") from None
    try:
        kwargs = _checked(data, TrainConfig)
    except UserError as error:
        raise UserError(f"--config {path}: {error}") from None
    for key in NOT_FROM_FILE:
        kwargs.pop(key, None)
    config = TrainConfig(**kwargs)
    ppo_keys = set(data.get("ppo", {}))
    whole = set(kwargs) | set(NOT_FROM_FILE) >= {field.name for field in dataclasses.fields(config)}
    if preset is None or not config.env or (whole and ppo_keys >= set(vars(config.ppo))):
        return config
    base = preset(config)
    ppo = dataclasses.replace(base.ppo, **{key: getattr(config.ppo, key) for key in ppo_keys})
    return dataclasses.replace(base, **{**kwargs, "ppo": ppo})
