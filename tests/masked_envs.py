"""Envs with action masks that raise on an illegal action, importable as
``tests.masked_envs:<name>``: a single-agent selection game (masks in a Dict observation or in
the info, Discrete or MultiDiscrete actions, or no masks and a penalty) and a two-agent
PettingZoo version of it; plus envs whose masks break the rules."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from pettingzoo import ParallelEnv


class IllegalAction(RuntimeError):
    """An env was sent an action its mask forbade."""


def _legal_and_target(rng: np.random.Generator, n: int, legal: int) -> tuple[np.ndarray, int]:
    flags = np.zeros(n, dtype=np.int8)
    chosen = rng.choice(n, size=legal, replace=False)
    flags[chosen] = 1
    return flags, int(chosen[0])


class Selection(gym.Env):
    """Each step ``legal`` of ``n`` actions are legal and one of them is the target: reward 1
    for the target, 0 for another legal action; ``length`` steps an episode, so the optimum
    return is ``length``. The observation shows the legal actions and the target.

    ``mask``: ``"dict"`` (a Dict observation with ``action_mask``), ``"info"``
    (``info["action_mask"]``) or None (no masks: an illegal action then costs ``penalty`` and
    changes nothing, unless ``penalty`` is None, when it raises as it does with masks).
    ``multi``: MultiDiscrete ``[n, 2]`` actions whose second part must be 0.
    """

    def __init__(
        self,
        n: int = 8,
        legal: int = 2,
        length: int = 8,
        mask: str | None = "info",
        penalty: float | None = None,
        multi: bool = False,
    ) -> None:
        self.n, self.legal, self.length = n, legal, length
        self.mask, self.penalty, self.multi = mask, penalty, multi
        features = gym.spaces.Box(0.0, 1.0, (2 * n,), np.float32)
        self.action_space = gym.spaces.MultiDiscrete([n, 2]) if multi else gym.spaces.Discrete(n)
        mask_size = n + 2 if multi else n
        self.observation_space = (
            gym.spaces.Dict(
                {"features": features, "action_mask": gym.spaces.MultiBinary(mask_size)}
            )
            if mask == "dict"
            else features
        )
        self.t = 0
        self.flags = np.zeros(n, dtype=np.int8)
        self.target = 0

    def _mask(self) -> np.ndarray:
        return np.concatenate([self.flags, [1, 0]]).astype(np.int8) if self.multi else self.flags

    def _observe(self) -> tuple[object, dict]:
        features = np.zeros(2 * self.n, dtype=np.float32)
        features[: self.n] = self.flags
        features[self.n + self.target] = 1.0
        if self.mask == "dict":
            return {"features": features, "action_mask": self._mask()}, {}
        if self.mask == "info":
            return features, {"action_mask": self._mask()}
        return features, {}

    def _draw(self) -> None:
        self.flags, self.target = _legal_and_target(self.np_random, self.n, self.legal)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t = 0
        self._draw()
        return self._observe()

    def step(self, action):
        choice, extra = (int(action[0]), int(action[1])) if self.multi else (int(action), 0)
        self.t += 1
        done = self.t >= self.length
        if not self.flags[choice] or extra:
            if self.mask is not None or self.penalty is None:
                raise IllegalAction(f"action {action} is illegal (legal: {self.flags})")
            return (*self._observe()[:1], self.penalty, False, done, {})
        reward = float(choice == self.target)
        self._draw()
        observation, info = self._observe()
        return observation, reward, False, done, info


def selection_info() -> gym.Env:
    return Selection(mask="info")


def selection_dict() -> gym.Env:
    return Selection(mask="dict")


def selection_multi() -> gym.Env:
    return Selection(mask="dict", multi=True)


def selection_unmasked() -> gym.Env:
    """No masks and every action legal enough to step: the mask-cost baseline."""
    return Selection(mask=None, penalty=0.0)


class MaskedPair(ParallelEnv):
    """Two agents play :class:`Selection` side by side for 6 steps; ``second`` leaves after
    3 (its row is dead for the rest). Masks in a Dict observation (``mask="dict"``) or the
    infos (``"info"``). Raises on an illegal action or an action for an agent not there."""

    def __init__(self, mask: str = "dict", n: int = 6) -> None:
        self.possible_agents = ["first", "second"]
        self.mask, self.n = mask, n
        self.rng = np.random.default_rng(0)
        self.t = 0
        self.flags: dict[str, np.ndarray] = {}
        self.targets: dict[str, int] = {}

    def observation_space(self, agent: str) -> gym.spaces.Space:
        features = gym.spaces.Box(0.0, 1.0, (2 * self.n,), np.float32)
        if self.mask == "dict":
            mask = gym.spaces.Box(0, 1, (self.n,), np.int8)
            return gym.spaces.Dict({"observation": features, "action_mask": mask})
        return features

    def action_space(self, agent: str) -> gym.spaces.Discrete:
        return gym.spaces.Discrete(self.n)

    def _observe(self) -> tuple[dict, dict]:
        observations, infos = {}, {}
        for agent in self.agents:
            self.flags[agent], self.targets[agent] = _legal_and_target(self.rng, self.n, 2)
            features = np.zeros(2 * self.n, dtype=np.float32)
            features[: self.n] = self.flags[agent]
            features[self.n + self.targets[agent]] = 1.0
            if self.mask == "dict":
                observations[agent] = {"observation": features, "action_mask": self.flags[agent]}
                infos[agent] = {}
            else:
                observations[agent] = features
                infos[agent] = {"action_mask": self.flags[agent]}
        return observations, infos

    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.agents = list(self.possible_agents)
        self.t = 0
        return self._observe()

    def step(self, actions):
        if set(actions) != set(self.agents):
            raise IllegalAction(f"actions for {sorted(actions)}, agents are {self.agents}")
        for agent, action in actions.items():
            if not self.flags[agent][int(action)]:
                raise IllegalAction(f"{agent}: action {action} is illegal")
        self.t += 1
        rewards = {a: float(int(actions[a]) == self.targets[a]) for a in self.agents}
        leaving = {a: (a == "second" and self.t >= 3) or self.t >= 6 for a in self.agents}
        terminations = {a: False for a in self.agents}
        truncations = dict(leaving)
        observations, infos = self._observe()
        self.agents = [a for a in self.agents if not leaving[a]]
        return observations, rewards, terminations, truncations, infos


def pair_dict() -> MaskedPair:
    return MaskedPair(mask="dict")


def pair_info() -> MaskedPair:
    return MaskedPair(mask="info")


class BrokenMask(Selection):
    """A :class:`Selection` where every action is legal, whose masks break a rule:
    ``"empty"`` allows nothing after step 3, ``"missing"`` stops giving a mask after step 3,
    ``"late"`` gives none at reset and one from step 3 on, ``"size"`` gives one entry too
    many."""

    def __init__(self, fault: str) -> None:
        super().__init__(legal=8, mask="info", length=50)
        self.fault = fault

    def _observe(self) -> tuple[object, dict]:
        features, info = super()._observe()
        late = self.t >= 3
        if self.fault == "empty" and late:
            info["action_mask"] = np.zeros(self.n, dtype=np.int8)
        elif (self.fault == "missing" and late) or (self.fault == "late" and not late):
            del info["action_mask"]
        elif self.fault == "size":
            info["action_mask"] = np.ones(self.n + 1, dtype=np.int8)
        return features, info


def empty_mask() -> gym.Env:
    return BrokenMask("empty")


def missing_mask() -> gym.Env:
    return BrokenMask("missing")


def late_mask() -> gym.Env:
    return BrokenMask("late")


def wrong_size_mask() -> gym.Env:
    return BrokenMask("size")


class MaskedBoxActions(Selection):
    """Masks in the info, but Box actions: nothing to mask."""

    def __init__(self) -> None:
        super().__init__(mask="info")
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)


def box_actions_mask() -> gym.Env:
    return MaskedBoxActions()
