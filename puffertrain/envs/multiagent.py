"""PettingZoo parallel envs as blocks of rows: one row of the batch per possible agent.

A :class:`AgentRows` presents a ``ParallelEnv`` to the rollout engine as ``num_agents`` rows
that always step together. Row ``i`` belongs to ``possible_agents[i]`` for the whole run.

- Observations: agents whose observation spaces are all the same keep that space (Dict and
  Tuple spaces become flat byte rows, as for single-agent envs). Agents with different Box
  spaces are flattened and zero-padded at the end to the longest one, in the common dtype.
- A row whose agent is not in the env (done before the others, or not yet there) is *dead*:
  ``alive`` is False, its observation is zeros, its reward 0, it counts as terminated at every
  step (so nothing bootstraps through it), and its action is not passed to the env. The
  trainer masks dead rows out of the loss and the advantage statistics.
- Same-step autoreset: when no agent is left, the env is reset in the same step; the rows'
  ``final_observations`` hold what each agent saw at its own end, and ``game_over`` marks every
  row of the env, which closes its episode for the score bookkeeping.
- Action masks (a Dict observation's ``action_mask`` entry, or ``infos[agent]["action_mask"]``,
  as :mod:`puffertrain.envs.masks` reads them) go to each live agent's row; a dead row's mask
  allows every action (its action is never sent).
- An agent that leaves without a termination or truncation flag (or is still there when the
  game ends) counts as truncated, bootstrapped from its last observation (terminated if it got
  none), so no value leaks across its episode's end.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

from policies.flatten import flat_space, flatten_observation, is_structured
from puffertrain.envs.masks import MaskReader, MaskSource, observation_without_mask, without_mask
from puffertrain.errors import UserError


def is_parallel_env(env: Any) -> bool:
    """Whether ``env`` follows PettingZoo's parallel API (checked by shape, so PettingZoo
    itself is needed only by the envs that use it)."""
    return (
        not isinstance(env, gym.Env)
        and hasattr(env, "possible_agents")
        and callable(getattr(env, "observation_space", None))
        and callable(getattr(env, "action_space", None))
    )


def _flat_box(space: gym.spaces.Space) -> gym.spaces.Box:
    if not isinstance(space, gym.spaces.Box):
        raise UserError(
            "agents with different observation spaces must all have Box spaces to be padded "
            f"to one; got {space}"
        )
    return gym.spaces.Box(space.low.reshape(-1), space.high.reshape(-1), dtype=space.dtype)


def _common_box(spaces: list[gym.spaces.Space]) -> gym.spaces.Box:
    """One Box that holds every agent's observation: the largest shape (1-D spaces shorter
    than it are zero-padded at the end), the widest bounds, the common dtype."""
    boxes = [space if isinstance(space, gym.spaces.Box) else _flat_box(space) for space in spaces]
    shape = max((box.shape for box in boxes), key=math.prod)
    dtype = np.result_type(*(box.dtype for box in boxes))

    def padded(bounds: np.ndarray) -> np.ndarray:
        row = np.zeros(math.prod(shape), dtype=np.float64)
        row[: bounds.size] = bounds.reshape(-1)
        return row.reshape(shape)

    low = np.min([padded(box.low) for box in boxes], axis=0)
    high = np.max([padded(box.high) for box in boxes], axis=0)
    return gym.spaces.Box(low.astype(dtype), high.astype(dtype), shape, dtype)


class AgentRows:
    """A PettingZoo ``ParallelEnv`` stepped as ``num_agents`` rows (see the module doc)."""

    def __init__(self, env: Any, masks: MaskSource | None = None) -> None:
        if callable(getattr(env, "agent_iter", None)):
            raise UserError(
                "this is a PettingZoo AEC env (agents take turns); pass its parallel form, "
                "e.g. mpe2.simple_spread_v3:parallel_env instead of :env"
            )
        self.env = env
        self.agent_names: tuple[str, ...] = tuple(str(agent) for agent in env.possible_agents)
        self.num_agents = len(self.agent_names)
        if not self.num_agents:
            raise UserError("the PettingZoo env has no possible_agents")
        self._agents = list(env.possible_agents)
        self._row_of = {agent: row for row, agent in enumerate(self._agents)}
        self._read_mask = MaskReader(masks).read if masks is not None else None
        self._mask_in_observation = masks is not None and masks.in_observation
        self.action_mask_size = masks.size if masks is not None else 0
        self.steps = 0
        observation_spaces = [without_mask(env.observation_space(agent)) for agent in self._agents]
        action_spaces = [env.action_space(agent) for agent in self._agents]
        if any(space != action_spaces[0] for space in action_spaces):
            described = ", ".join(
                f"{agent}: {space}"
                for agent, space in zip(self._agents, action_spaces, strict=True)
            )
            raise UserError(
                f"every agent needs the same action space to share one batch; got {described}"
            )
        self.action_space = action_spaces[0]
        first = observation_spaces[0]
        self.padded = any(space.shape != first.shape for space in observation_spaces)
        if not self.padded and any(space != first for space in observation_spaces):
            first = _common_box(observation_spaces)  # same shape, other bounds or dtypes
        self.structured_space: gym.spaces.Space = first
        if self.padded:
            self.observation_space: gym.spaces.Space = _common_box(
                [_flat_box(space) for space in observation_spaces]
            )
            self.structured_space = self.observation_space
        elif is_structured(first):
            self.observation_space = flat_space(first)
        else:
            self.observation_space = first
        self.metadata = getattr(env, "metadata", {})

    def _encode(self, observation: Any) -> np.ndarray:
        if self._mask_in_observation:
            observation = observation_without_mask(observation)
        if self.padded:
            flat = np.asarray(observation).reshape(-1)
            row = np.zeros(self.observation_space.shape, dtype=self.observation_space.dtype)
            row[: flat.size] = flat
            return row
        if is_structured(self.structured_space):
            return flatten_observation(observation, self.structured_space)
        return observation

    def _write(self, observations: dict, infos: Any, step: int, rows: Any) -> None:
        """Each present agent's observation (and action mask, read after ``step``) into its
        row; every other row dead and zero (its mask allows every action: none is sent)."""
        rows.observations[:] = 0
        rows.alive[:] = False
        if self._read_mask is not None:
            rows.action_masks[:] = True
            infos = infos if isinstance(infos, dict) else {}
        for agent, observation in observations.items():
            row = self._row_of[agent]
            if self._read_mask is not None:
                info = infos.get(agent, {})
                rows.action_masks[row] = self._read_mask(observation, info, step, str(agent))
            rows.observations[row] = self._encode(observation)
            rows.alive[row] = True

    def reset_rows(self, seed: int | None, rows: Any) -> None:
        """Reset the env with ``seed`` and write its first observations into ``rows``."""
        observations, infos = self.env.reset(seed=seed)
        self._write(observations, infos, 0, rows)

    def step_rows(self, actions: np.ndarray, rows: Any) -> None:
        """Step the live agents with their rows of ``actions``; write the results in place."""
        live = [agent for agent in self.env.agents if rows.alive[self._row_of[agent]]]
        observations, rewards, terminations, truncations, infos = self.env.step(
            {agent: actions[self._row_of[agent]] for agent in live}
        )
        self.steps += 1
        still_live = {
            agent: observations[agent]
            for agent in self.env.agents
            if agent in observations
            and not (terminations.get(agent, False) or truncations.get(agent, False))
        }
        over = not still_live
        rows.rewards[:] = 0.0
        rows.terminations[:] = True  # dead rows; live ones are overwritten below
        rows.truncations[:] = False
        for agent in live:
            row = self._row_of[agent]
            try:
                rows.rewards[row] = rewards.get(agent, 0.0)
            except (ValueError, TypeError):
                reward = rewards.get(agent)
                raise UserError(
                    f"agent {agent}: its step returned the reward {reward!r}; a reward is one "
                    "number (a float)"
                ) from None
            terminated = terminations.get(agent, False)
            truncated = truncations.get(agent, False)
            if over or agent not in still_live:  # an end the env did not flag is a cut-off
                truncated = truncated or not terminated
            if truncated and agent not in observations:  # nothing to bootstrap from
                terminated, truncated = True, False
            rows.terminations[row], rows.truncations[row] = terminated, truncated
            if (terminated or truncated) and agent in observations:
                rows.final_observations[row] = self._encode(observations[agent])
        if over:
            still_live, infos = self.env.reset()
        self._write(still_live, infos, 0 if over else self.steps, rows)
        rows.game_over[:] = over

    def render(self) -> Any:
        return self.env.render()

    def close(self) -> None:
        self.env.close()
