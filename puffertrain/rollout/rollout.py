"""The rollout: an engine stepped by a policy, one batch of rows at a time.

Training, ``eval`` and ``bench`` all step through :class:`Rollout`: :meth:`Rollout.send` acts
on the current observations of some rows and sends the actions; :meth:`Rollout.receive` takes
the next batch of finished steps back. :meth:`Rollout.collect` composes the two into the
training rollout, filling a buffer with ``num_steps`` steps of every row.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from itertools import repeat
from typing import Any

import numpy as np
import torch
from threadpoolctl import ThreadpoolController

from policies.contract import State
from puffertrain.buffer import RolloutBuffer, to_torch
from puffertrain.engine import Engine, EnvError, Episode, StepResult
from puffertrain.engine.base import as_rows
from puffertrain.ppo import PolicyAdapter, env_actions
from puffertrain.ppo.numpy_actor import NumpyActor
from puffertrain.rollout.noise import colored_noise
from puffertrain.rollout.rewards import RewardNormalizer
from puffertrain.threads import forward_flops, threads_for, torch_threads
from puffertrain.timing import PhaseTimer


def policy_flops_per_row(adapter: PolicyAdapter, engine: Engine, device: torch.device) -> int:
    """The work of the policy's forward for one row (greedy, so no random numbers are drawn)."""
    obs = to_torch(engine.observations[:1], device)
    state = adapter.initial_state(1, device)
    agent_ids = torch.zeros(1, dtype=torch.long, device=device) if engine.agent_names else None
    return forward_flops(lambda: adapter.act(obs, state, True, agent_ids))


class Rollout:
    """Owns what stepping carries from one step to the next: the last observation, alive
    flag and action mask of every row, the recurrent state, the rows' agent ids, reward
    normalisation, each row's step count within the current rollout, the colored action
    noise of the current rollout, and the episodes finished since they were last taken.

    ``step_weight``: global steps one row's step counts for (the ranks of a data-parallel job
    all step as often, so each counts ``world_size``). ``noise_color``: the ``beta`` of the
    continuous actions' noise in training rollouts (:mod:`~puffertrain.rollout.noise`; 0: white).
    """

    def __init__(
        self,
        engine: Engine,
        adapter: PolicyAdapter,
        device: torch.device,
        gamma: float = 0.99,
        normalize_reward: bool = False,
        clip_rewards: bool = False,
        step_weight: int = 1,
        timer: PhaseTimer | None = None,
        noise_color: float = 0.0,
    ) -> None:
        self.engine, self.adapter, self.device = engine, adapter, device
        self.num_rows = engine.num_rows
        self.gamma, self.clip_rewards, self.step_weight = gamma, clip_rewards, step_weight
        self.timer = timer or PhaseTimer()
        self.reward_normalizer = (
            RewardNormalizer(self.num_rows, gamma) if normalize_reward else None
        )
        self.state = adapter.initial_state(self.num_rows, device)
        self.agent_ids = (
            torch.arange(self.num_rows, device=device) % engine.agents_per_env
            if engine.agent_names
            else None
        )
        self.observations = engine.observations.copy()
        self.alive = engine.alive.copy()
        self.action_masks = engine.action_masks.copy()
        self.masked = engine.action_masks.shape[1] > 0
        self.row_steps = np.zeros(self.num_rows, dtype=np.int64)
        # a synchronous engine steps every row together, so in a training rollout all rows are
        # at one step, and the buffer writes at one index (no per-row step check each write)
        self.lockstep = engine.batch_size == engine.num_rows
        # one thread for a small policy, as in the trainer's plan (which --threads overrides):
        # two processes acting a small policy on two threads each spin against each other
        self.flops_per_row = policy_flops_per_row(adapter, engine, device)
        self.acting_threads = threads_for(
            self.flops_per_row * engine.batch_size, engine.policy_threads()
        )
        # the library's small MLPs act in numpy (on the CPU, in fp32), the rest in torch
        self.numpy_actor = NumpyActor.of(adapter) if device.type == "cpu" else None
        # the numpy actor's copy of the parameters is theirs only inside acting(), which takes
        # it; outside, the torch path acts (the parameters may have moved since)
        self.numpy_actor_current = False
        self.blas = ThreadpoolController()
        self.noise_color = noise_color if adapter.continuous else 0.0
        self.noise: torch.Tensor | None = None  # [rows, num_steps, action dims] while collecting
        self.global_step = 0
        self.episodes: list[tuple[int, Episode]] = []  # with the global step they ended at

    def reset(self, seed: int) -> None:
        """Reset the envs (env ``i`` with seed ``seed + i``) and start every row from zero."""
        self.observations = self.engine.reset(seed).copy()
        self.alive = self.engine.alive.copy()
        self.action_masks = self.engine.action_masks.copy()
        if self.state is not None:
            for part in self.state:
                part.zero_()

    @contextmanager
    def acting(self, policy: bool = True) -> Iterator[None]:
        """The region the policy acts in: torch and numpy's BLAS use ``acting_threads`` (at most
        the cores the env threads leave free; numpy's own default, every core, keeps a second
        thread spinning even at batch 1), and one autocast region covers many steps, so bf16
        weights are cast once per rollout instead of at every step (``policy=False``: the
        threads alone, for random actions). The numpy actor copies the parameters here, as
        they are for this region."""
        precision = self.adapter.autocast(self.device) if policy else nullcontext()
        blas = self.blas.limit(limits=self.acting_threads, user_api="blas")
        was_current = self.numpy_actor_current
        if self.numpy_actor is not None:
            self.numpy_actor.refresh()  # the parameters have moved since the last rollout
            self.numpy_actor_current = True
        try:
            with torch_threads(self.acting_threads), blas, precision:
                yield
        finally:
            self.numpy_actor_current = was_current

    def send(
        self,
        row_ids: np.ndarray,
        buffer: RolloutBuffer | None = None,
        deterministic: bool = False,
    ) -> None:
        """Act on the current observations of ``row_ids`` (under their action masks, for a
        masked env) and send the actions to the engine; with a ``buffer``, record the step
        there first."""
        start = time.perf_counter()
        rows = as_rows(row_ids)
        noise = None
        if self.noise is not None and buffer is not None:
            noise = self.noise[row_ids, self.row_steps[rows]]
        if self.numpy_actor_current:
            actions = self._act_in_numpy(rows, buffer, deterministic, noise)
        else:
            actions = self._act(rows, row_ids, buffer, deterministic, noise)
        actions_for_envs = env_actions(actions, self.engine.single_action_space)
        if self.lockstep:  # every row at one step: a fill, where `+= 1` costs 1 µs at one row
            self.row_steps.fill(self.row_steps[0] + 1)
        else:
            self.row_steps[rows] += 1
        self.timer.add("inference", start)
        start = time.perf_counter()
        self.engine.send(actions_for_envs, row_ids)
        self.timer.add("env", start)

    def _act(
        self,
        rows: slice | np.ndarray,
        row_ids: np.ndarray,
        buffer: RolloutBuffer | None,
        deterministic: bool,
        noise: torch.Tensor | None,
    ) -> torch.Tensor:
        """:meth:`send`'s actions from the adapter (torch), recorded in ``buffer`` if given."""
        obs = to_torch(self.observations[rows], self.device)
        masks = to_torch(self.action_masks[rows], self.device) if self.masked else None
        state = self._state_at(rows)
        with torch.no_grad():
            actions, log_probs, values, new_state = self.adapter.act(
                obs, state, deterministic, self.agent_ids_of(row_ids), masks, noise
            )
            if buffer is not None:  # before the new state overwrites ``state``'s rows (views)
                steps = self._steps_of(rows)
                buffer.store_step(
                    steps, rows, obs, actions, log_probs, values, state, self.alive[rows], masks
                )
            self._set_state(rows, new_state)
        return actions

    def _act_in_numpy(
        self,
        rows: slice | np.ndarray,
        buffer: RolloutBuffer | None,
        deterministic: bool,
        noise: torch.Tensor | None,
    ) -> np.ndarray:
        """:meth:`_act` by the numpy actor: a feed-forward policy, no state to carry."""
        obs = self.observations[rows]
        masks = self.action_masks[rows] if self.masked else None
        actions, log_probs, values = self.numpy_actor.act(
            obs, deterministic, masks, None if noise is None else noise.numpy()
        )
        if buffer is not None:
            steps = self._steps_of(rows)
            buffer.store_step(
                steps, rows, obs, actions, log_probs, values, None, self.alive[rows], masks
            )
        return actions

    def receive(self, buffer: RolloutBuffer | None = None) -> StepResult:
        """Take the next batch of finished steps; with a ``buffer``, record their rewards there.

        Then the rows' observations and alive flags move on, a recurrent state restarts from
        zero where an episode ended, and finished episodes are kept for :meth:`take_episodes`.
        """
        start = time.perf_counter()
        result = self.engine.recv()
        self.timer.add("env", start)
        row_ids, rows = result.row_ids, result.rows
        self.global_step += len(row_ids) * self.step_weight
        if buffer is not None or self.state is not None:  # not for bench's random actions
            ended = result.terminations | result.truncations
        if buffer is not None:
            rewards = self._training_rewards(result, ended, rows)
            buffer.store_outcome(self._steps_of(rows) - 1, rows, rewards, ended)
        if self.state is not None and np.count_nonzero(ended):
            for part in self.state:
                part[torch.as_tensor(row_ids[ended], device=self.device)] = 0
        self.observations[rows] = result.observations
        if self.agent_ids is not None:  # only a multi-agent env's rows ever stop acting
            self.alive[rows] = result.alive
        if self.masked:
            self.action_masks[rows] = result.action_masks
        if result.episodes:
            self.episodes.extend(zip(repeat(self.global_step), result.episodes))
        return result

    def _steps_of(self, rows: slice | np.ndarray) -> int | np.ndarray:
        """The steps ``rows`` have taken in this rollout: one number for a synchronous engine
        (:meth:`collect` sends its rows all together), else each row's own."""
        return int(self.row_steps[0]) if self.lockstep else self.row_steps[rows]

    def collect(self, buffer: RolloutBuffer) -> None:
        """Fill ``buffer`` with ``buffer.num_steps`` steps of every row.

        Every row starts idle; the policy acts on all of them and they are sent. Then each
        batch that comes back has its step recorded and, until its rows have ``num_steps``
        steps, is acted on and sent again while other batches step (async batches). A
        synchronous engine returns every row at once: the classic lockstep loop. Each row's
        steps land in its own column in order, so GAE is the same either way.
        """
        self.row_steps[:] = 0
        if self.noise_color:
            dims = int(np.prod(self.engine.single_action_space.shape))
            self.noise = colored_noise(
                self.noise_color, self.num_rows, buffer.num_steps, dims, self.device
            )
        with self.acting():
            if self.lockstep:  # every row comes back at every receive
                every_row = np.arange(self.num_rows)
                for _ in range(buffer.num_steps):
                    self.send(every_row, buffer)
                    self.receive(buffer)
            else:
                self.send(np.arange(self.num_rows), buffer)
                in_flight = self.num_rows
                while in_flight:
                    row_ids = self.receive(buffer).row_ids
                    in_flight -= len(row_ids)
                    going_on = row_ids[self.row_steps[row_ids] < buffer.num_steps]
                    if going_on.size:
                        self.send(going_on, buffer)
                        in_flight += going_on.size
        problem = self._nonfinite(buffer)
        if problem:  # before the update: a nan would reach the weights and every checkpoint
            raise EnvError(problem)

    def _nonfinite(self, buffer: RolloutBuffer) -> str:
        """What in the rollout just collected is nan or inf, naming the env ("" if nothing):
        a float observation (stored, or the current one), a reward, or the policy's value (an
        observation that travels as bytes reaches the value)."""
        steps, rows = buffer.num_steps, self.num_rows
        checks = (  # each as (steps, rows, entries), and where in the rollout
            ("an observation holding", buffer.observations.reshape(steps, rows, -1), "step"),
            (
                "an observation holding",
                torch.from_numpy(self.observations).reshape(1, rows, -1),
                "after the last step",
            ),
            ("the reward", buffer.rewards.reshape(steps, rows, 1), "step"),
            ("an observation the policy values at", buffer.values.reshape(steps, rows, 1), "step"),
        )
        for what, values, when in checks:
            if not values.is_floating_point() or bool(torch.isfinite(values).all()):
                continue
            step, row, entry = (int(i) for i in (~torch.isfinite(values)).nonzero()[0])
            where = f"step {step} of the rollout" if when == "step" else f"{when} of the rollout"
            return (
                f"env {row // self.engine.agents_per_env}: {what} "
                f"{float(values[step, row, entry])} ({where}); rewards and observations must "
                "be finite"
            )
        return ""

    def bootstrap_values(self) -> torch.Tensor:
        """The value of every row's current observation: where GAE starts from."""
        with torch.no_grad():
            obs = to_torch(self.observations, self.device)
            return self.adapter.value(obs, self.state, self.agent_ids)

    def take_episodes(self) -> list[tuple[int, Episode]]:
        """The episodes finished since the last call, with the global step each ended at."""
        episodes, self.episodes = self.episodes, []
        return episodes

    def _training_rewards(
        self, result: StepResult, ended: np.ndarray, rows: slice | np.ndarray
    ) -> np.ndarray:
        """The rewards PPO learns from: normalised or sign-clipped as configured, and a
        time-limit end bootstrapped with the value of the observation it ended on (a
        termination is not)."""
        row_ids, rewards = result.row_ids, result.rewards
        if self.reward_normalizer is not None:
            acting = self.alive[rows]  # not yet this step's
            rewards = self.reward_normalizer(rewards, row_ids, ended, acting)
        # in numpy on any device (the buffer moves them): numpy calls of a fraction of a
        # microsecond where torch ops took microseconds each. Each change makes a new array:
        # the engine's stays as it stepped
        if self.clip_rewards:  # the sign of an inf is 1: it goes on as it is, for the check
            rewards = np.where(np.isinf(rewards), rewards, np.sign(rewards))
        # count_nonzero: a fifth of `.any()`'s cost, whose Python wrapper dominates small arrays
        truncated = result.truncations
        if np.count_nonzero(truncated):  # a few steps in an episode's length
            truncated = truncated & ~result.terminations  # a termination is not bootstrapped
        if np.count_nonzero(truncated):
            start = time.perf_counter()
            final = result.final_observations[truncated]
            rewards = rewards.astype(np.float32)  # a copy
            rewards[truncated] += self.gamma * self._values(final, row_ids[truncated])
            self.timer.add("inference", start)
        return rewards

    def _values(self, observations: np.ndarray, row_ids: np.ndarray) -> np.ndarray:
        """The values of ``observations`` of the rows ``row_ids``, as a numpy array."""
        if self.numpy_actor_current:
            return self.numpy_actor.forward(observations)[1]
        with torch.no_grad():
            values = self.adapter.value(
                to_torch(observations, self.device),
                self.state_of(row_ids),
                self.agent_ids_of(row_ids),
            )
        return values.cpu().numpy()

    def agent_ids_of(self, row_ids: np.ndarray) -> torch.Tensor | None:
        """The agent index of each row ``row_ids`` (None for a single-agent env)."""
        if self.agent_ids is None:
            return None
        return self.agent_ids[torch.as_tensor(row_ids, device=self.device)]

    def state_of(self, row_ids: np.ndarray) -> State | None:
        """The recurrent state of ``row_ids`` (None for a feed-forward policy)."""
        return self._state_at(as_rows(row_ids))

    def _state_at(self, rows: slice | np.ndarray) -> State | None:
        if self.state is None:
            return None
        return tuple(part[rows] for part in self.state)

    def _set_state(self, rows: slice | np.ndarray, state: State | None) -> None:
        if self.state is not None:
            for part, new in zip(self.state, state, strict=True):
                part[rows] = new

    def state_dict(self, with_envs: bool = True) -> dict[str, Any]:
        """The envs, the recurrent state and the reward scaling, as checkpoint data;
        ``with_envs=False`` after an env failure (episodes restart on resume)."""
        return {
            "envs": self.engine.state_dict() if with_envs else {"envs": None},
            "policy_state": self.state if with_envs else None,
            "reward_normalizer": (
                self.reward_normalizer.state_dict(with_returns=with_envs)
                if self.reward_normalizer is not None
                else None
            ),
        }

    def load_state_dict(self, state: dict[str, Any], reseed: int) -> bool:
        """Restore :meth:`state_dict`; return False if the episodes had to restart (with envs
        reset from ``reseed``), in which case recurrent state and running returns start from
        zero."""
        episodes_go_on = self.engine.load_state_dict(state["envs"], reseed)
        self.observations = self.engine.observations.copy()
        self.alive = self.engine.alive.copy()
        self.action_masks = self.engine.action_masks.copy()
        if episodes_go_on and state.get("policy_state") is not None:
            for part, saved in zip(self.state, state["policy_state"], strict=True):
                part.copy_(saved)
        if self.reward_normalizer is not None:
            self.reward_normalizer.load_state_dict(state["reward_normalizer"])
            if not episodes_go_on:
                self.reward_normalizer.returns[:] = 0.0
        return episodes_go_on
