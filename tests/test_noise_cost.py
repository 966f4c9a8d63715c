"""Where a MuJoCo body's actions start: below std 1 only where the untrained noise pays more in
control cost than it earns for staying up (issue #22: Ant-v5 learned to fall at std 1, and
HalfCheetah-v5, paid nothing for staying up, to run on its back)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from puffertrain.cli import parse_train_args
from puffertrain.envs.noise_cost import noise_cost, starting_log_std


class Body(gym.Env):
    """Paid ``survive`` a step for staying up, charged ``weight`` × the squared torques; falls
    after 50 steps. ``reports``: which of the two terms its info names, as MuJoCo's bodies do
    (HalfCheetah's names only the control cost)."""

    def __init__(
        self, weight: float, reports: tuple[str, ...] = ("reward_ctrl", "reward_survive")
    ) -> None:
        self.weight, self.reports = weight, reports
        self.survive = 1.0 if "reward_survive" in reports else 0.0
        self.observation_space = gym.spaces.Box(-1, 1, (3,), np.float32)
        self.action_space = gym.spaces.Box(-1, 1, (8,), np.float32)
        self.steps = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.steps = 0
        return np.zeros(3, np.float32), {}

    def step(self, action):
        self.steps += 1
        control = -self.weight * float(np.square(action).sum())
        terms = {"reward_ctrl": control, "reward_survive": self.survive}
        info = {name: terms[name] for name in self.reports}
        return np.zeros(3, np.float32), self.survive + control, self.steps >= 50, False, info


def test_noise_cost_averages_the_terms_over_the_steps_and_episodes():
    cost = noise_cost(Body(0.5), std=1.0, steps=1000)
    # clipped standard normal torques: E[a²] = 0.516 on each of 8 joints, × 0.5
    assert cost.control == pytest.approx(-0.5 * 8 * 0.516, rel=0.05)
    assert (cost.survive, cost.episode_length) == (1.0, 50.0)
    assert cost.reward == pytest.approx(cost.survive + cost.control)


@pytest.mark.parametrize(
    ("weight", "log_std"),
    [(0.001, None), (0.2, None), (0.5, -1.0), (1.5, -2.0), (50.0, -2.0)],
)
def test_actions_start_at_the_widest_std_whose_noise_pays_for_itself(weight, log_std):
    """Ant's weight (0.5, 8 joints) costs 2.06 a step at std 1 and 0.54 at e^-1; Hopper's
    (0.001) nothing. The std never starts below e^-2, however costly the torques."""
    chosen, why = starting_log_std(lambda: Body(weight))
    assert chosen == log_std
    assert bool(why) == (log_std is not None)


def test_a_body_that_reports_no_control_cost_keeps_its_policys_std():
    assert starting_log_std(lambda: Body(50.0, reports=())) == (None, "")
    assert starting_log_std(lambda: Body(50.0, reports=("reward_survive",))) == (None, "")


def test_a_body_paid_nothing_for_staying_up_starts_at_e_minus_1_unless_its_noise_is_free():
    """HalfCheetah's noise (0.31 a step) and Reacher's (1.04) start lower; Swimmer's (~1e-4)
    keeps std 1. It failed before: a body that did not report both terms kept std 1."""
    for weight in (0.01, 1.5, 50.0):  # however costly: e^-2 stopped Pusher exploring
        chosen, why = starting_log_std(lambda weight=weight: Body(weight, reports=("reward_ctrl",)))
        assert chosen == -1.0 and why.startswith("the body is paid nothing for staying up")
    for weight in (0.0, 1e-4):
        assert starting_log_std(lambda weight=weight: Body(weight, ("reward_ctrl",))) == (None, "")


class Broken(Body):
    def step(self, action):
        raise RuntimeError("the simulator went unstable")


def test_an_env_that_fails_in_the_probe_keeps_its_policys_std():
    """The trainer, not the probe, reports an env that fails (in one line, when it builds its
    envs)."""
    assert starting_log_std(lambda: Broken(0.5)) == (None, "")


def test_ant_starts_lower_and_says_why_and_other_bodies_and_given_values_are_kept():
    notes: list[str] = []
    ant, _ = parse_train_args(["--env", "Ant-v5"], notes)
    assert ant.log_std_init == -1.0
    assert notes[0].startswith("puffertrain: preset: actions start at std e^-1")
    assert "control cost" in notes[0]
    for env_id in ("Hopper-v5", "Walker2d-v5", "Pendulum-v1", "CartPole-v1"):
        assert parse_train_args(["--env", env_id])[0].log_std_init is None
    for env_id in ("HalfCheetah-v5", "Reacher-v5", "Pusher-v5"):
        notes = []
        assert parse_train_args(["--env", env_id], notes)[0].log_std_init == -1.0
        assert "paid nothing for staying up" in notes[0]
    assert parse_train_args(["--env", "Swimmer-v5"])[0].log_std_init is None
    notes = []
    given, _ = parse_train_args(["--env", "Ant-v5", "--log-std-init", "0"], notes)
    assert (given.log_std_init, notes) == (0.0, [])
    notes = []
    kwargs = ["--env", "Ant-v5", "--policy-kwargs", '{"log_std_init": -2}']
    assert parse_train_args(kwargs, notes)[0].log_std_init == -1.0
    assert notes == []  # the policy's keyword wins (test_policies), so no start is claimed
