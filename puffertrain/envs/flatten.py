"""Observations the policy takes become flat byte rows before they reach the rollout engine
(any space but a Box, with Text leaves dropped), and PettingZoo parallel envs become one row
per agent."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from policies.flatten import flat_space, flatten_observation, travels_as_bytes
from puffertrain.envs.make import EnvFactory
from puffertrain.envs.masks import ActionMasks, MaskSource
from puffertrain.envs.multiagent import AgentRows, is_parallel_env
from puffertrain.envs.spaces import policy_view, text_leaves, without_text


class FlattenStructured(gym.ObservationWrapper):
    """Observations of a Dict/Tuple (or bare Discrete, MultiDiscrete, MultiBinary) space as one
    uint8 row (the layout of ``policies.flatten``; policies undo it with
    ``unflatten_observations``). ``structured_space`` is the space the policy sees: the env's
    own, less its Text leaves."""

    def __init__(self, env: gym.Env, structured_space: gym.spaces.Space) -> None:
        super().__init__(env)
        self.structured_space = structured_space
        self.observation_space = flat_space(structured_space)
        self._has_text = bool(text_leaves(env.observation_space))

    def observation(self, observation: Any) -> Any:
        if self._has_text:
            observation = without_text(observation, self.env.observation_space)
        return flatten_observation(observation, self.structured_space)


def with_flat_observations(
    factory: EnvFactory, masks: MaskSource | None = None
) -> gym.Env | AgentRows:
    """Build an env; wrap it in :class:`FlattenStructured` unless its observations are a Box,
    or in :class:`AgentRows` (one row per agent) if it is a PettingZoo parallel env. An env
    with ``masks`` has them read by :class:`ActionMasks` first (the policy sees the rest of
    the observation). ``UserError`` for an observation space no batch can hold (Graph,
    Sequence...)."""
    env = factory()
    if is_parallel_env(env):
        return AgentRows(env, masks)
    try:
        if masks is not None:
            env = ActionMasks(env, masks)
        view = policy_view(env.observation_space)
    except BaseException:
        env.close()
        raise
    return FlattenStructured(env, view) if travels_as_bytes(view) else env


def policy_observation_space(env: gym.Env | AgentRows) -> gym.spaces.Space:
    """The observation space a policy is built for: the structured one behind a flat row."""
    return getattr(env, "structured_space", env.observation_space)
