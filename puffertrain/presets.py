"""Per-family defaults: the values a user gets for an env without setting them (any flag
overrides them; `--help` shows the ones for the `--env` given)."""

from __future__ import annotations

import dataclasses

from puffertrain.config import PPOConfig, TrainConfig

EVAL_EVERY_STEPS = 25_000
"""Env steps between evaluations in the presets that evaluate: the RL Zoo's ``eval_freq``."""
EVAL_STEP_SHARE = 0.1
"""The most env steps the presets' evaluations take, as a share of training's. Ten episodes
of MuJoCo's 1,000 steps every 25,000 would add 40% to the env steps (experiments/RESULTS.md,
"Evaluation's share of the training wall time")."""


def evaluating(config: TrainConfig) -> TrainConfig:
    """``config`` evaluating every ~``EVAL_EVERY_STEPS`` env steps (in whole updates), within
    ``EVAL_STEP_SHARE`` of the training's steps."""
    interval = max(1, round(EVAL_EVERY_STEPS / config.batch_size))
    return dataclasses.replace(config, eval_interval=interval, eval_step_share=EVAL_STEP_SHARE)


# RL Zoo's tuned CartPole values (8 envs × 32 steps, 1 minibatch × 20 epochs, lr 1e-3, γ 0.98,
# λ 0.8, no entropy bonus) with SB3's network (separate actor and critic MLPs, 2 × 64 tanh) on
# normalised observations. The guide's shared `mlp` learned CartPole and Acrobot with these values
# but never found MountainCar's flag; SB3's network on normalised observations found it on every
# seed, and passed CartPole on every seed only with the zoo's sizes (experiments/RESULTS.md, "The
# classic-control network"). The value loss is unclipped, as in SB3: returns of tens (γ 0.98)
# outrun a value that may move only --clip-coef an update (RESULTS, "Value clipping"). Where the
# observations are not a flat Box the policy is `auto`'s and they are left as they are (cli).
CLASSIC_CONTROL = evaluating(
    TrainConfig(
        total_timesteps=500_000,
        policy="separate_mlp",
        num_envs=8,
        num_steps=32,
        normalize_obs=True,
        ppo=PPOConfig(
            learning_rate=1e-3,
            gamma=0.98,
            gae_lambda=0.8,
            num_minibatches=1,
            update_epochs=20,
            ent_coef=0.0,
            clip_vloss=False,
        ),
    )
)


# A recurrent policy keeps the sizes this preset had before SB3's network (16 envs, 2 minibatches
# × 10 epochs): with the zoo's, CartPoleNoVel-v1 with `--policy lstm` took 91–164 s to 475, with
# these 40–52 s (experiments/RESULTS.md, "The classic-control network").
RECURRENT_CLASSIC_CONTROL = evaluating(
    dataclasses.replace(
        CLASSIC_CONTROL,
        num_envs=16,
        ppo=dataclasses.replace(CLASSIC_CONTROL.ppo, num_minibatches=2, update_epochs=10),
    )
)


# CleanRL ppo_atari's hyperparameters; bf16 where native, async batches of 4 envs and a
# compiled update, the fastest combination measured on the CPU (experiments/RESULTS.md,
# "Training speed"); on a GPU the batches become one (adapt.py).
# Evaluation samples, as the RL Zoo plays Atari: a greedy policy that never chose FIRE after a
# lost life stalls until the 108k-frame limit (experiments/RESULTS.md, "Evaluation"). It is off
# by default: a game lasts longer the better the agent plays (up to 27k steps), so a fixed
# interval that costs little early in a run costs more than the training late in it (same section).
ATARI = TrainConfig(
    total_timesteps=10_000_000,
    num_envs=8,
    num_steps=128,
    clip_rewards=True,
    compile=True,
    precision="auto",
    env_batch_size=4,
    eval_stochastic=True,
    ppo=PPOConfig(learning_rate=2.5e-4, num_minibatches=4, update_epochs=4, clip_coef=0.1),
)

# CleanRL ppo_continuous_action's values, its 2,048-step batch on 4 envs × 512 steps: one env
# makes every rollout step a batch-1 forward, mostly per-step overhead; 4 envs share it and
# learned as well on HalfCheetah and Pendulum. The value loss is unclipped, as in the
# classic-control preset: clipped, HalfCheetah learned far slower (both: experiments/RESULTS.md,
# "Value clipping"). Exploration noise is white, a fresh draw every step, as CleanRL and SB3
# sample it: on bodies (MuJoCo's, Box2D's BipedalWalker) colored noise pushes the same way for
# many steps, tips them over, and its rollouts taught the policy to shrink its std until each
# update moved it further than PPO's clip holds (HalfCheetah on its back on 2 of 3 seeds,
# BipedalWalker collapsing on 2 of 3). White noise slows that fall; one BipedalWalker seed in 3
# still collapses (experiments/RESULTS.md, "MuJoCo: white noise" and "Held out:
# BipedalWalker-v3"). --target-kl 0.05 stops that collapse but is not set here: it binds on the
# MuJoCo bodies' healthy updates too and halved HalfCheetah's median; 0.2 still cut it below
# 3,000 (RESULTS, "A KL limit for the continuous preset"); --adaptive-lr-kl 0.2 traded seeds on
# both bodies and lowered both medians (RESULTS, "A KL ceiling through the learning rate");
# Adam's equal decay rates (--adam-betas 0.99 0.99) halved every body's update KL and traded
# seeds the same way (RESULTS, "The walker's collapse is not a floor on the std").
# Its actions start at std 1 unless a MuJoCo body's untrained noise costs more than staying up
# earns, or costs a body paid nothing for staying up more than a trifle (cli, envs/noise_cost.py).
CONTINUOUS = evaluating(
    TrainConfig(
        total_timesteps=1_000_000,
        num_envs=4,
        num_steps=512,
        normalize_obs=True,
        normalize_reward=True,
        ppo=PPOConfig(
            learning_rate=3e-4,
            num_minibatches=32,
            update_epochs=10,
            ent_coef=0.0,
            clip_vloss=False,
        ),
    )
)

# Classic control's Box actions (Pendulum, MountainCarContinuous): the continuous preset with
# colored exploration noise (beta 0.5, Hollenstein et al.'s default for PPO). With white noise,
# pushes on successive steps cancel, and MountainCarContinuous never found its flag on any seed;
# colored, every seed did, and PendulumNoVel's lstm beat the zoo's RecurrentPPO
# (experiments/RESULTS.md, "Colored action noise").
CLASSIC_CONTINUOUS = dataclasses.replace(CONTINUOUS, action_noise_color=0.5)

# A recurrent policy learns from whole-rollout sequences, so the preset's 32 minibatches are its 4
# envs' 4 sequences: 40 Adam steps per rollout instead of 320. At lr 3e-4 the policy then moved an
# eighth as far per rollout, and `--policy lstm` learned neither Pendulum-v1 nor PendulumNoVel-v1
# in 100k steps; 8 × the learning rate keeps the preset's pace (learning rate × gradient steps per
# rollout), as the linear scaling rule for 8 × larger minibatches says, and learned both
# (experiments/RESULTS.md, "A recurrent policy's pace on the continuous preset").
RECURRENT_CONTINUOUS = evaluating(
    dataclasses.replace(
        CONTINUOUS,
        ppo=dataclasses.replace(CONTINUOUS.ppo, num_minibatches=4, learning_rate=2.4e-3),
    )
)
RECURRENT_CLASSIC_CONTINUOUS = dataclasses.replace(RECURRENT_CONTINUOUS, action_noise_color=0.5)

# Any PettingZoo env: MAPPO's MPE settings (lr 7e-4, 10 epochs) on shorter rollouts, which
# learned faster than ppo.py's defaults on simple_spread (experiments/RESULTS.md).
MULTI_AGENT = evaluating(
    TrainConfig(
        total_timesteps=1_000_000,
        num_envs=16,
        num_steps=64,
        ppo=PPOConfig(learning_rate=7e-4, num_minibatches=4, update_epochs=10),
    )
)

# Any other env (toy text, Box2D's LunarLander, MiniGrid, a user's own): CleanRL ppo.py's values
# with SB3's gradient steps per sample (10 epochs of 64-sample minibatches: 160 per 1,024 samples
# instead of ppo.py's 16). With ppo.py's, an update moved the policy far less than PPO's clip
# allows (approx KL ~0.001, clip fraction ~0 on LunarLander): Taxi stayed at -200 for 124k steps
# (its one-hot states each learn only from their own samples) and LunarLander-v3 never reached
# 200 in 1M steps on 3 of 3 seeds, where SB3's ratio reaches it at ~100k (experiments/RESULTS.md,
# "Taxi-v4" and "The generic preset"). The update costs more per sample; these envs step cheaply.
# Rewards are divided by their return's std (SB3's VecNormalize) and the value loss is unclipped:
# on raw rewards the critic's error grows with the env's return scale, and through the trunk the
# critic shares with the actor and the global gradient-norm clip it either swamped the policy's
# gradient (unclipped: Taxi, returns of -200, reached 7 on 1 of 3 seeds) or, with CleanRL's clip
# of 0.2 in return units, lagged behind returns of tens (the masked Selection env). Scaled, the
# clip holds nothing back and neither happens: LunarLander reached 200 in about half the steps
# (experiments/RESULTS.md, "The generic preset's rewards and value loss").
GENERIC = evaluating(
    TrainConfig(
        normalize_reward=True,
        ppo=PPOConfig(num_minibatches=16, update_epochs=10, clip_vloss=False),
    )
)

PRESETS = {
    "classic_control": CLASSIC_CONTROL,
    "atari": ATARI,
    "continuous": CONTINUOUS,
    "classic_continuous": CLASSIC_CONTINUOUS,
    "mujoco": CONTINUOUS,  # and its bodies' starting std (cli)
    "multi_agent": MULTI_AGENT,
}


RECURRENT_PRESETS = {
    "classic_control": RECURRENT_CLASSIC_CONTROL,
    "continuous": RECURRENT_CONTINUOUS,
    "classic_continuous": RECURRENT_CLASSIC_CONTINUOUS,
    "mujoco": RECURRENT_CONTINUOUS,
}


def preset_for(family: str, recurrent: bool = False) -> TrainConfig:
    """Defaults for an env family: "atari" (CleanRL ppo_atari), "continuous" and "mujoco" (any
    Box-action env: CleanRL ppo_continuous_action, white noise), "classic_continuous" (classic
    control's Box actions: the same, colored noise), "classic_control" (RL Zoo's tuned CartPole
    values and SB3's network), "multi_agent" (any PettingZoo env); anything else gets CleanRL
    ppo.py's values with SB3's gradient steps per sample. All but the Atari one evaluate every
    ~``EVAL_EVERY_STEPS`` env steps. ``recurrent``: the values for a recurrent policy, where the
    family has its own (classic control, continuous, MuJoCo)."""
    preset = (RECURRENT_PRESETS.get(family) if recurrent else None) or PRESETS.get(family, GENERIC)
    return dataclasses.replace(preset, ppo=dataclasses.replace(preset.ppo))
