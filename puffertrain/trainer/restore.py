"""A trained policy back from a checkpoint, with the env it was trained on (``eval`` and
``export`` start here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch.nn as nn

from puffertrain.config import TrainConfig, from_dict, parse_kwargs
from puffertrain.engine import SerialEngine
from puffertrain.envs.recipe import EnvRecipe, env_recipe
from puffertrain.trainer.build import policy_for
from puffertrain.trainer.checkpoint import load_checkpoint, resolve_resume
from puffertrain.trainer.state import TrainingState


@dataclass
class Restored:
    """The checkpoint read from ``path``, its run's config, the env recipe and envs of it (an
    engine, as training built it), and the policy with the checkpoint's weights."""

    path: Path
    checkpoint: TrainingState
    config: TrainConfig
    recipe: EnvRecipe
    engine: SerialEngine
    policy: nn.Module


def restore(
    target: Path,
    flag: str,
    render_mode: str | None = None,
    num_envs: int = 1,
    step_limit: int | None = None,
) -> Restored:
    """Load ``target`` (a run directory's newest checkpoint, or a checkpoint file such as
    ``checkpoints/best.pt``) with ``num_envs`` envs (``step_limit``: see ``env_recipe``);
    ``flag`` names the option in errors."""
    _, path = resolve_resume(target, flag)
    checkpoint = load_checkpoint(path)
    config = from_dict(checkpoint.config)
    recipe = env_recipe(
        config.env, parse_kwargs(config.env_kwargs, "--env-kwargs"), render_mode, True, step_limit
    )
    engine = SerialEngine([recipe.factory] * num_envs)
    try:
        policy = policy_for(config, engine)
        policy.load_state_dict(checkpoint.policy)
    except BaseException:
        engine.close()
        raise
    return Restored(path, checkpoint, config, recipe, engine, policy)
