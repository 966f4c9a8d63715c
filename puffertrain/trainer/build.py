"""The parts of a run, built for its engine: the policy adapter, the learner, the rollout, the
buffer, and the threads its policy math runs on."""

from __future__ import annotations

import torch
import torch.nn as nn

from puffertrain.buffer import RolloutBuffer
from puffertrain.config import TrainConfig
from puffertrain.distributed import Ranks
from puffertrain.engine import Engine
from puffertrain.errors import UserError
from puffertrain.policy_loader import build_policy
from puffertrain.ppo import Learner, PolicyAdapter
from puffertrain.rollout import Rollout
from puffertrain.threads import OtherLoad, ThreadPlan, cpu_budget, plan_threads
from puffertrain.timing import PhaseTimer


def policy_for(config: TrainConfig, engine: Engine) -> nn.Module:
    """The policy ``config`` names, built for ``engine``'s spaces and agents."""
    return build_policy(
        config.policy,
        engine.policy_observation_space,
        engine.single_action_space,
        config.normalize_obs,
        config.policy_kwargs,
        engine.agent_names,
        config.log_std_init,
    )


def build_parts(
    config: TrainConfig,
    engine: Engine,
    device: torch.device,
    autocast_dtype: torch.dtype | None,
    ranks: Ranks,
    other_load: OtherLoad,
    kept_threads: int | None = None,
) -> tuple[PolicyAdapter, Learner, Rollout, RolloutBuffer, ThreadPlan]:
    """The policy ``config`` names for the engine's spaces (refused with a ``UserError`` if it
    cannot take them), its learner, a rollout over ``engine``, a buffer sized for it, and the
    thread plan (which the rollout acts with)."""
    policy = policy_for(config, engine)
    adapter = PolicyAdapter(policy, engine.single_action_space, autocast_dtype).to(device)
    num_sequences = config.num_sequences(engine.num_rows)
    if adapter.recurrent and config.ppo.num_minibatches > num_sequences:
        raise UserError(
            f"--num-minibatches {config.ppo.num_minibatches} exceeds the "
            f"{num_sequences} sequences a recurrent policy trains on "
            "(num-envs × agents × num-steps / sequence-length)"
        )
    learner = Learner(
        adapter, config.ppo, compile_loss=config.compile, data_parallel=ranks.distributed
    )
    rollout = Rollout(
        engine,
        adapter,
        device,
        config.ppo.gamma,
        config.normalize_reward,
        config.clip_rewards,
        step_weight=ranks.world_size,
        timer=PhaseTimer(),
        noise_color=config.action_noise_color,
    )
    buffer = RolloutBuffer(
        config.num_steps,
        engine.num_rows,
        engine.single_observation_space,
        engine.single_action_space,
        device,
        rollout.state,
        config.ppo.sequence_length,
        engine.agents_per_env if engine.agent_names else 0,
        engine.action_masks.shape[1],
    )
    plan = plan_threads(
        rollout.flops_per_row,
        engine.num_rows * config.num_steps // config.ppo.num_minibatches,
        engine.batch_size,
        cpu_budget(ranks.local_world_size),
        engine.env_threads,
        config.threads,
        busy=other_load.cpus_busy,
        kept=kept_threads,
    )
    rollout.acting_threads = plan.acting
    return adapter, learner, rollout, buffer, plan
