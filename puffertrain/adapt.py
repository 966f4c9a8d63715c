"""Preset values the user did not set adapt to the ones they did.

A preset is tuned for its own sizes: Atari's async batches of 4 envs assume 8 envs, the
continuous preset's 32 minibatches assume 2048 steps. When the user changes one of those sizes
on the command line, the values they left alone follow it (each change is reported in the
startup lines); only a value the user gave can be refused by ``TrainConfig.validate``. On a GPU,
async batches give way to one batch of every env.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from policies.contract import is_recurrent
from puffertrain.config import PPOConfig, TrainConfig
from puffertrain.errors import UserError
from puffertrain.policy_loader import policy_class

PPO_FIELDS = frozenset(field.name for field in dataclasses.fields(PPOConfig))
SMALL_MINIBATCH = 32
"""Steps below which a minibatch's advantage normalisation is mostly noise (one step: NaN)."""


def given_fields(argv: Sequence[str]) -> set[str]:
    """Config field names the command line sets (``--num-envs 2``, ``--num_envs=2``,
    ``--no-compile``)."""
    names = set()
    for arg in argv:
        if not arg.startswith("--"):
            continue
        name = arg[2:].split("=", 1)[0].replace("-", "_").removeprefix("ppo.")
        names.add(name)
        names.add(name.removeprefix("no_"))
    return names


def _divisor_near(n: int, at_most: int) -> int:
    """The largest divisor of ``n`` that is at most ``at_most``."""
    return max(d for d in range(1, min(n, at_most) + 1) if n % d == 0)


def _env_batch_size(config: TrainConfig) -> int:
    """A proper divisor of --num-envs within a factor of 2 of the preset's async batch, else 0
    (synchronous): smaller batches would step the policy on too few envs to pay."""
    batch = _divisor_near(config.num_envs, config.env_batch_size)
    return batch if batch < config.num_envs and 2 * batch >= config.env_batch_size else 0


def acts_on_gpu(device: str) -> bool:
    """Whether ``--device`` puts the policy on a GPU (``auto`` does where CUDA is available)."""
    return device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())


def trains_on_sequences(policy: str) -> bool:
    """Whether ``policy`` (a library name or a user's ``package.module:Class``) is recurrent,
    trained on sequences; False for a name no class answers to (building it says why)."""
    try:
        return is_recurrent(policy_class(policy))
    except UserError:
        return False


def adapt_to_given(
    config: TrainConfig, given: set[str], preset: TrainConfig, normalizable_obs: bool = False
) -> tuple[TrainConfig, list[str]]:
    """``config`` with the values not in ``given`` changed where they contradict the others,
    and one line per change saying what and why. A recurrent policy learns from scaled rewards
    unless rewards are clipped or the user chose, and, where ``normalizable_obs`` (a float Box)
    and the user did not choose, normalised observations. Minibatches not given keep at least the
    ``preset``'s minibatch size, or ``SMALL_MINIBATCH`` steps if that is less, when the batch
    shrinks (the continuous preset's 32 minibatches of 2048 steps would otherwise be 1-step
    minibatches, whose advantage normalisation divides by a std of nothing); a config whose
    minibatches stay that large is left as it is."""
    ppo = config.ppo
    changes: dict[str, tuple[object, object, str]] = {}
    if min(config.num_envs, config.num_steps, config.env_batch_size + 1) < 1:
        return config, []  # sizes no run can use: validate says so

    def change(name: str, new: object, why: str) -> None:
        old = getattr(ppo if name in PPO_FIELDS else config, name)
        changes[name] = (old, new, why)

    if "env_batch_size" not in given and config.env_batch_size:
        if acts_on_gpu(config.device):
            # an action costs a GPU about as much for one env as for all of them, so async
            # batches only add action calls (experiments/RESULTS.md, "What one action costs...")
            why = "synchronous: on a GPU acting on every env costs what a batch does"
            change("env_batch_size", 0, why)
        elif config.num_envs % config.env_batch_size:
            batch = _env_batch_size(config)
            why = "synchronous" if batch == 0 else "async batches"
            change("env_batch_size", batch, f"{why}: must divide --num-envs {config.num_envs}")
    if (
        "sequence_length" not in given
        and ppo.sequence_length
        and config.num_steps % ppo.sequence_length
    ):
        length = _divisor_near(config.num_steps, ppo.sequence_length)
        change("sequence_length", length, f"must divide --num-steps {config.num_steps}")
    recurrent = trains_on_sequences(config.policy)
    if "num_minibatches" not in given:
        size = min(preset.batch_size // preset.ppo.num_minibatches, SMALL_MINIBATCH)
        limit = max(1, config.batch_size // size)
        why = f"minibatches of at least {size} steps; the batch is {config.batch_size}"
        if recurrent:
            length = changes.get("sequence_length", (0, ppo.sequence_length, ""))[1]
            limit = config.num_envs * config.num_steps // (int(length) or config.num_steps)
            why = f"no more than the {limit} sequences a recurrent policy trains on"
        if ppo.num_minibatches > limit:
            change("num_minibatches", limit, why)
    if recurrent:
        if "clip_vloss" not in given and not ppo.clip_vloss:
            # clipped measured better for the LSTM (experiments/RESULTS.md, "Value clipping")
            change("clip_vloss", True, "recurrent policy: its value loss is clipped")
        # fitting returns of tens saturates the LSTM state the critic shares with the actor, and
        # the policy then barely learns; inputs on one scale learned faster again (both:
        # experiments/RESULTS.md, "Root cause with the classic-control values")
        rescaled = config.clip_rewards or config.normalize_reward
        if not rescaled and not {"normalize_reward", "clip_rewards"} & given:
            why = "recurrent policy: rewards scaled so its LSTM state does not saturate"
            change("normalize_reward", True, why)
        if normalizable_obs and "normalize_obs" not in given and not config.normalize_obs:
            change("normalize_obs", True, "recurrent policy: observations on one scale")
    if {"eval_interval"} & given and not {"eval_step_share"} & given and config.eval_step_share:
        why = "--eval-interval given: every evaluation it makes due runs"
        change("eval_step_share", None, why)
    if "eval_interval" not in given and config.eval_interval and preset.eval_interval:
        # evaluations keep the preset's spacing in env steps, not in updates
        every = preset.eval_interval * preset.batch_size
        interval = max(1, round(every / config.batch_size))
        why = f"every ~{every:,} env steps; the batch is {config.batch_size}"
        if interval != config.eval_interval:
            change("eval_interval", interval, why)
    if config.clip_rewards and config.normalize_reward:
        if "normalize_reward" in given and "clip_rewards" not in given:
            change("clip_rewards", False, "--normalize-reward rescales rewards instead")
        elif "clip_rewards" in given and "normalize_reward" not in given:
            change("normalize_reward", False, "--clip-rewards rescales rewards instead")

    new_ppo = {name: new for name, (_, new, _) in changes.items() if name in PPO_FIELDS}
    new_top = {name: new for name, (_, new, _) in changes.items() if name not in PPO_FIELDS}
    adapted = dataclasses.replace(config, ppo=dataclasses.replace(ppo, **new_ppo), **new_top)
    lines = [
        f"puffertrain: preset adapted: --{name.replace('_', '-')} {old} → {new} ({why})"
        for name, (old, new, why) in changes.items()
    ]
    return adapted, lines
