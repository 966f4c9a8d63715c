"""CartPole-v1, Pendulum-v1, MountainCarContinuous-v0 and LunarLander-v3 with their velocities
zeroed, registered on import as ``CartPoleNoVel-v1``, ``PendulumNoVel-v1``,
``MountainCarContinuousNoVel-v0`` and ``LunarLanderNoVel-v3`` (the RL Zoo's names, so its
RecurrentPPO entries apply): a policy has to infer the velocities from past observations.

Both trainers of the learning suite build them from the same registration: puffertrain as
``--env experiments.no_velocity_envs:CartPoleNoVel-v1`` (run from the repository root),
Stable-Baselines3 through ``gym.make`` after this module is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import gymnasium as gym
import numpy as np

# the observation entries that are velocities (the RL Zoo's MaskVelocityWrapper has the same)
VELOCITY_ENTRIES = {
    "CartPole-v1": [1, 3],
    "Pendulum-v1": [2],
    "MountainCarContinuous-v0": [1],
    "LunarLander-v3": [2, 3, 5],  # x and y velocities, angular velocity
}


class HideVelocities(gym.ObservationWrapper):
    """Zeroes the velocity entries of the observation."""

    def __init__(self, env: gym.Env, entries: list[int]) -> None:
        super().__init__(env)
        self.entries = entries

    def observation(self, observation: np.ndarray) -> np.ndarray:
        masked = observation.copy()
        masked[self.entries] = 0.0
        return masked


def make_without_velocities(env_id: str, **kwargs) -> gym.Env:
    """``env_id`` built by gymnasium, its velocities hidden."""
    return HideVelocities(gym.make(env_id, **kwargs), VELOCITY_ENTRIES[env_id])


def no_velocity_id(env_id: str) -> str:
    """``CartPole-v1`` -> ``CartPoleNoVel-v1``."""
    name, version = env_id.rsplit("-v", 1)
    return f"{name}NoVel-v{version}"


for _env_id in VELOCITY_ENTRIES:
    if no_velocity_id(_env_id) not in gym.registry:
        _entry_point: Callable[..., gym.Env] = partial(make_without_velocities, _env_id)
        gym.register(no_velocity_id(_env_id), entry_point=_entry_point)
