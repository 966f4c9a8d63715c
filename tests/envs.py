"""Small deterministic envs for the tests, importable as ``tests.envs:<name>``."""

from __future__ import annotations

import signal
import time

import gymnasium as gym
import numpy as np
from pettingzoo import ParallelEnv


class CountingEnv(gym.Env):
    """Observation = steps taken so far; reward 1 per step; ends after ``length`` steps.

    ``terminate=True`` ends with a termination, otherwise with a time-limit truncation.
    """

    def __init__(self, length: int = 5, terminate: bool = False) -> None:
        self.length = length
        self.terminate = terminate
        self.observation_space = gym.spaces.Box(0.0, 100.0, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.t = 0

    def _obs(self) -> np.ndarray:
        return np.array([self.t], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        ended = self.t >= self.length
        return self._obs(), 1.0, ended and self.terminate, ended and not self.terminate, {}


def counting_truncated() -> gym.Env:
    return CountingEnv(length=5, terminate=False)


def counting_terminated() -> gym.Env:
    return CountingEnv(length=5, terminate=True)


class PreemptedEnv(CountingEnv):
    """A cheap step, but every 50th takes 20 ms, as when another process holds the CPU."""

    def step(self, action):
        if self.t % 50 == 49:
            time.sleep(0.02)
        return super().step(action)


def preempted() -> gym.Env:
    return PreemptedEnv(length=2**62)


def never_ending() -> gym.Env:
    """An env with no time limit whose episodes never end."""
    return CountingEnv(length=2**62)


class _SocketHolder(CountingEnv):
    """Holds an object that is not data, so its state cannot be captured."""

    def __init__(self) -> None:
        super().__init__(length=7)
        self.handle = object()


def uncapturable() -> gym.Env:
    return _SocketHolder()


gym.register("PufferTest/Counting-v0", entry_point=CountingEnv, max_episode_steps=3)


class RaisingEnv(CountingEnv):
    """Raises on its fifth step if it was reset with seed 3 (so one env of a batch fails)."""

    def __init__(self) -> None:
        super().__init__(length=50)
        self.seed_used: int | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.seed_used = seed
        return super().reset(seed=seed, options=options)

    def step(self, action):
        if self.seed_used == 3 and self.t >= 4:
            raise RuntimeError("the physics exploded")
        return super().step(action)


def raising() -> gym.Env:
    return RaisingEnv()


class ResetRaisingEnv(CountingEnv):
    """Raises when reset with seed 2."""

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed == 2:
            raise RuntimeError("no level for seed 2")
        return super().reset(seed=seed, options=options)


def reset_raising() -> gym.Env:
    return ResetRaisingEnv()


class DictEnv(gym.Env):
    """Dict observation (a tiny image, a vector, a tuple with a discrete part); reward 1 when
    the action equals the observation's discrete part, so only a policy that reads it learns."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Dict(
            {
                "image": gym.spaces.Box(0, 255, (1, 4, 4), np.uint8),
                "vector": gym.spaces.Box(-1.0, 1.0, (3,), np.float32),
                "extra": gym.spaces.Tuple(
                    (gym.spaces.Discrete(2), gym.spaces.Box(0, 1, (2,), np.float64))
                ),
            }
        )
        self.action_space = gym.spaces.Discrete(2)
        self.t = 0
        self.last: dict | None = None

    def _observe(self):
        self.last = self.observation_space.sample()
        return self.last

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.observation_space.seed(seed)
        self.t = 0
        return self._observe(), {}

    def step(self, action):
        reward = float(action == self.last["extra"][0])
        self.t += 1
        return self._observe(), reward, False, self.t >= 20, {}


def dict_env() -> gym.Env:
    return DictEnv()


def broken_in_workers() -> gym.Env:
    """Builds in the trainer's process but not in a worker (as an env whose assets are only
    found from the trainer's working directory would)."""
    import multiprocessing

    if multiprocessing.parent_process() is not None:
        raise FileNotFoundError("level file 'maze3.txt' is missing")
    return CountingEnv()


class HiddenVelocities(gym.ObservationWrapper):
    """CartPole with the cart and pole velocities zeroed: a policy must remember positions to
    infer them."""

    def observation(self, observation: np.ndarray) -> np.ndarray:
        masked = observation.copy()
        masked[[1, 3]] = 0.0
        return masked


def cartpole_no_velocity() -> gym.Env:
    return HiddenVelocities(gym.make("CartPole-v1"))


def cartpole_dict() -> gym.Env:
    """CartPole with its observation as the one entry of a Dict: a classic-control env whose
    observations the preset's flat-vector policy cannot take."""
    env = gym.make("CartPole-v1")
    space = gym.spaces.Dict({"state": env.observation_space})
    return gym.wrappers.TransformObservation(env, lambda state: {"state": state}, space)


class ImageVectorEnv(gym.Env):
    """Dict observation: an 8×8 image with one lit pixel and a 2-vector. The rewarded action is
    1 when the pixel lies in the right half XOR the vector's first entry is positive, else 0,
    so only a policy that reads both inputs scores above chance (16 steps per episode)."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Dict(
            {
                "image": gym.spaces.Box(0, 255, (1, 8, 8), np.uint8),
                "vector": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
            }
        )
        self.action_space = gym.spaces.Discrete(2)
        self.t = 0
        self.answer = 0

    def _observe(self) -> dict[str, np.ndarray]:
        image = np.zeros((1, 8, 8), dtype=np.uint8)
        row, column = self.np_random.integers(0, 8, size=2)
        image[0, row, column] = 255
        vector = self.np_random.uniform(-1.0, 1.0, size=2).astype(np.float32)
        self.answer = int((column >= 4) != (vector[0] > 0))
        return {"image": image, "vector": vector}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t = 0
        return self._observe(), {}

    def step(self, action):
        reward = float(int(action) == self.answer)
        self.t += 1
        return self._observe(), reward, False, self.t >= 16, {}


def image_vector() -> gym.Env:
    return ImageVectorEnv()


class DictObservationBoxActions(ImageVectorEnv):
    """:class:`ImageVectorEnv`'s Dict observations with a Box action (its sign is the answer)."""

    def __init__(self) -> None:
        super().__init__()
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def step(self, action):
        return super().step(int(action[0] > 0))


def dict_box_actions() -> gym.Env:
    return DictObservationBoxActions()


class TwoRoles(ParallelEnv):
    """Two agents see the same observation; both get 1 when ``first`` takes action 0 and
    ``second`` action 1 at the same step, for 8 steps. Agents that act differently score 8; a
    policy that acts alike for both scores p(1 - p) ≤ 1/4 a step, at most 2 an episode."""

    def __init__(self, length: int = 8) -> None:
        self.possible_agents = ["first", "second"]
        self.length = length
        self.t = 0

    def observation_space(self, agent: str) -> gym.spaces.Box:
        return gym.spaces.Box(0.0, 1.0, (3,), np.float32)

    def action_space(self, agent: str) -> gym.spaces.Discrete:
        return gym.spaces.Discrete(2)

    def _observations(self) -> dict[str, np.ndarray]:
        obs = np.array([self.t / self.length, 1.0, 0.0], dtype=np.float32)
        return {agent: obs for agent in self.agents}

    def reset(self, seed: int | None = None, options: dict | None = None):
        self.agents = list(self.possible_agents)
        self.t = 0
        return self._observations(), {agent: {} for agent in self.agents}

    def step(self, actions):
        self.t += 1
        reward = float(actions["first"] == 0 and actions["second"] == 1)
        over = self.t >= self.length
        rewards = {agent: reward for agent in self.agents}
        observations = self._observations()
        truncations = {agent: over for agent in self.agents}
        terminations = {agent: False for agent in self.agents}
        infos = {agent: {} for agent in self.agents}
        if over:
            self.agents = []
        return observations, rewards, terminations, truncations, infos


def two_roles() -> TwoRoles:
    return TwoRoles()


class EarlyExit(ParallelEnv):
    """``stayer`` (observations of shape (2,)) plays 5 steps and is truncated; ``leaver``
    (shape (3,)) terminates after 2. Rewards: 1 per step for stayer, 10 for leaver. Raises if
    given an action for an agent that is no longer in the env."""

    def __init__(self, flag_leaving: bool = True) -> None:
        self.possible_agents = ["stayer", "leaver"]
        self.flag_leaving = flag_leaving
        self.t = 0

    def observation_space(self, agent: str) -> gym.spaces.Box:
        return gym.spaces.Box(-10.0, 10.0, (2,) if agent == "stayer" else (3,), np.float32)

    def action_space(self, agent: str) -> gym.spaces.Discrete:
        return gym.spaces.Discrete(2)

    def _observe(self, agent: str) -> np.ndarray:
        if agent == "stayer":
            return np.array([self.t, 1.0], dtype=np.float32)
        return np.array([self.t, 2.0, 3.0], dtype=np.float32)

    def reset(self, seed: int | None = None, options: dict | None = None):
        self.agents = list(self.possible_agents)
        self.t = 0
        return {agent: self._observe(agent) for agent in self.agents}, {}

    def step(self, actions):
        if set(actions) != set(self.agents):
            raise ValueError(f"actions for {sorted(actions)}, agents are {sorted(self.agents)}")
        self.t += 1
        observations = {agent: self._observe(agent) for agent in self.agents}
        rewards = {agent: 1.0 if agent == "stayer" else 10.0 for agent in self.agents}
        leaving = {agent: agent == "leaver" and self.t >= 2 for agent in self.agents}
        terminations = {agent: leaving[agent] and self.flag_leaving for agent in self.agents}
        truncations = {agent: agent == "stayer" and self.t >= 5 for agent in self.agents}
        self.agents = [agent for agent in self.agents if not (leaving[agent] or truncations[agent])]
        return observations, rewards, terminations, truncations, {}


def early_exit() -> EarlyExit:
    return EarlyExit()


def silent_exit() -> EarlyExit:
    """:class:`EarlyExit` whose leaver leaves without a termination flag."""
    return EarlyExit(flag_leaving=False)


class ArrayReward(CountingEnv):
    """Returns its reward as a numpy array of shape (1,), as some ports of older envs do."""

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, np.array([reward]), terminated, truncated, info


def array_reward() -> gym.Env:
    return ArrayReward()


class ArrayRewardAgents(TwoRoles):
    def step(self, actions):
        observations, rewards, terminations, truncations, infos = super().step(actions)
        rewards = {agent: np.array([reward]) for agent, reward in rewards.items()}
        return observations, rewards, terminations, truncations, infos


def array_reward_agents() -> ArrayRewardAgents:
    return ArrayRewardAgents()


class NonFinite(CountingEnv):
    """Returns ``value`` as its reward (``where="reward"``) or as its observation at its 7th
    step, as an env with a numerical bug does, if first reset with an even seed (the run's
    second env, for seed 1); the episode goes on."""

    def __init__(self, value: float | None, where: str) -> None:
        super().__init__(length=20)
        self.value, self.where, self.broken = value, where, False

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.broken = seed % 2 == 0
        return super().reset(seed=seed, options=options)

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        if self.t == 7 and self.broken:
            if self.where == "reward":
                reward = self.value
            else:
                obs = np.array([self.value], dtype=np.float32)
        return obs, reward, terminated, truncated, info


def nan_reward() -> gym.Env:
    return NonFinite(float("nan"), "reward")


def none_reward() -> gym.Env:
    return NonFinite(None, "reward")


def inf_observation() -> gym.Env:
    return NonFinite(float("inf"), "observation")


def inf_reward() -> gym.Env:
    return NonFinite(float("inf"), "reward")


class EvalRaising(CountingEnv):
    """Raises when reset with an evaluation's seeds (a million and more above the run's)."""

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None and seed >= 1_000_000:
            raise RuntimeError("no level for an eval seed")
        return super().reset(seed=seed, options=options)


def eval_raising() -> gym.Env:
    return EvalRaising()


class HeadlessRender(CountingEnv):
    """Takes a render_mode and fails to draw, as MuJoCo does without a display."""

    def __init__(self, render_mode: str | None = None) -> None:
        super().__init__()
        self.render_mode = render_mode

    def render(self):
        raise RuntimeError("an OpenGL platform library has not been loaded into this process")


def headless_render(render_mode: str | None = None) -> gym.Env:
    return HeadlessRender(render_mode)


class SignalledInEval(CountingEnv):
    """Sends its own process SIGTERM the first time an evaluation resets it (seeds a million
    and more above the run's), as a stop that arrives while the run evaluates."""

    signalled = False  # once per process: the run resumed in it evaluates in peace

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None and seed >= 1_000_000 and not SignalledInEval.signalled:
            SignalledInEval.signalled = True
            signal.raise_signal(signal.SIGTERM)
        return super().reset(seed=seed, options=options)


def signalled_in_eval() -> gym.Env:
    return SignalledInEval()


class WrongResetShape(CountingEnv):
    """Its reset returns an observation of 2 values where its space holds 1."""

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        _, info = super().reset(seed=seed, options=options)
        return np.zeros(2, dtype=np.float32), info


def wrong_reset_shape() -> gym.Env:
    return WrongResetShape()
