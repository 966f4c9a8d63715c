"""Dict and Tuple observations become flat byte rows before they reach the rollout engine, and
PettingZoo parallel envs become one row per agent."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from policies.flatten import flat_space, flatten_observation, is_structured
from puffertrain.envs.make import EnvFactory
from puffertrain.envs.multiagent import AgentRows, is_parallel_env


class FlattenStructured(gym.ObservationWrapper):
    """Observations of a Dict/Tuple space as one uint8 row (the layout of ``policies.flatten``;
    policies undo it with ``unflatten_observations``). ``structured_space`` keeps the original."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.structured_space = env.observation_space
        self.observation_space = flat_space(env.observation_space)

    def observation(self, observation: Any) -> Any:
        return flatten_observation(observation, self.structured_space)


def with_flat_observations(factory: EnvFactory) -> gym.Env | AgentRows:
    """Build an env; wrap it in :class:`FlattenStructured` if its observations are structured,
    or in :class:`AgentRows` (one row per agent) if it is a PettingZoo parallel env."""
    env = factory()
    if is_parallel_env(env):
        return AgentRows(env)
    return FlattenStructured(env) if is_structured(env.observation_space) else env


def policy_observation_space(env: gym.Env | AgentRows) -> gym.spaces.Space:
    """The observation space a policy is built for: the structured one behind a flat row."""
    return getattr(env, "structured_space", env.observation_space)
