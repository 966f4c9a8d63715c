"""What an untrained Gaussian policy's noise costs a body, and the std to start its actions at.

PPO starts from a policy whose mean is ~0 and whose std is ``exp(log_std_init)`` (1 by default):
its actions are noise, clipped to the action bounds. On a body that pays for its torques
(MuJoCo's ``reward_ctrl``), noise whose control cost outweighs what it earns for staying up
(``reward_survive``; nothing where the body reports none) is a loss at every step. A body paid for
staying up learns the quickest way out, to fall: Ant-v5 at std 1 did (experiments/RESULTS.md,
"MuJoCo: white noise, and a starting std"). A body paid nothing for it is thrown about by noise
that buys it nothing: HalfCheetah-v5 at std 1 tipped onto its back on most seeds and learned to
run there (RESULTS, "MuJoCo: a cheetah on its back", and "A starting std for a body paid nothing
for staying up").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

CONTROL_KEY, SURVIVE_KEY = "reward_ctrl", "reward_survive"
PROBE_STEPS = 1000
"""Env steps the noise is played for at each std."""
MAX_DROP = 2
"""The lowest starting log-std offered is ``-MAX_DROP`` (std e^-2, the RL Zoo's lowest)."""
UNPAID_DROP = 1
"""Where a body paid nothing for staying up starts (std e^-1): at e^-2 Pusher and Swimmer
explored too little to learn what they did at std 1."""
FREE_CONTROL = 0.01
"""A control cost a step at std 1 below which a body paid nothing for staying up keeps std 1:
MuJoCo's rewards are of order 1 a step, and Swimmer's torques cost ~1e-4."""


@dataclass(frozen=True)
class NoiseCost:
    """Per-step means over a stretch of noise: the reward, the control reward (0 or less) and
    the reward for staying up (0 where the env pays none), and the mean episode length."""

    reward: float
    control: float
    survive: float
    episode_length: float


def noise_cost(env: gym.Env, std: float, steps: int = PROBE_STEPS, seed: int = 0) -> NoiseCost:
    """Play ``steps`` steps of zero-mean Gaussian noise of ``std`` (clipped to the action
    bounds) on ``env``, resetting it as episodes end, and average what the steps earned."""
    space = env.action_space
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    reward = control = survive = 0.0
    episodes = 0
    for _ in range(steps):
        action = np.clip(rng.normal(0.0, std, space.shape), space.low, space.high)
        _, r, terminated, truncated, info = env.step(action.astype(space.dtype))
        reward += float(r)
        control += float(info.get(CONTROL_KEY, 0.0))
        survive += float(info.get(SURVIVE_KEY, 0.0))
        if terminated or truncated:
            episodes += 1
            env.reset(seed=seed + episodes)
    return NoiseCost(reward / steps, control / steps, survive / steps, steps / max(episodes, 1))


def starting_log_std(
    make_env: Callable[[], gym.Env], steps: int = PROBE_STEPS
) -> tuple[float | None, str]:
    """The log-std to start a Box-action policy at, and why; ``(None, "")`` keeps the policy's
    own (std 1). Only a body that reports a control cost is probed. A body paid for staying up
    starts at the widest std in 1, e^-1, e^-2 whose noise earns more for staying up than it
    pays in control. A body paid nothing for it, whose noise costs more than
    :data:`FREE_CONTROL` a step, starts at e^-1 (:data:`UNPAID_DROP`). An env that fails here
    keeps the policy's std: the trainer reports the failure when it builds its envs."""
    try:
        return _starting_log_std(make_env, steps)
    except Exception:
        return None, ""


def _starting_log_std(make_env: Callable[[], gym.Env], steps: int) -> tuple[float | None, str]:
    env = make_env()
    try:
        if not isinstance(env.action_space, gym.spaces.Box):
            return None, ""
        env.reset(seed=0)
        _, _, _, _, info = env.step(env.action_space.sample())
        if CONTROL_KEY not in info:
            return None, ""
        wide = noise_cost(env, 1.0, steps)
        if SURVIVE_KEY not in info:
            if -wide.control < FREE_CONTROL:
                return None, ""
            drop, cost = UNPAID_DROP, noise_cost(env, math.exp(-UNPAID_DROP), steps)
            return float(-drop), (
                f"the body is paid nothing for staying up, so its noise only costs: "
                f"{-wide.control:.2f} a step in control at std 1, {-cost.control:.2f} at e^-{drop}"
            )
        if wide.survive + wide.control >= 0:
            return None, ""
        for drop in range(1, MAX_DROP + 1):
            cost = noise_cost(env, math.exp(-drop), steps)
            if cost.survive + cost.control >= 0:
                break  # else the loop ends at e^-MAX_DROP, the lowest offered
    finally:
        env.close()
    why = (
        f"at std 1 the noise's control cost ({-wide.control:.2f} a step) outweighs the reward "
        f"for staying up ({wide.survive:.2f}); at std e^-{drop}: {-cost.control:.2f} against "
        f"{cost.survive:.2f}"
    )
    return float(-drop), why
