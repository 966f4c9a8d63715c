"""Env id resolution and env-state snapshots."""

from __future__ import annotations

import dataclasses
import io

import gymnasium as gym
import numpy as np
import pytest
import torch

from puffertrain.cli import parse_train_args
from puffertrain.envs import (
    capture_env_state,
    env_factory,
    env_family,
    probe_env,
    restore_env_state,
)
from puffertrain.errors import UserError


def test_registered_id():
    env = env_factory("CartPole-v1")()
    assert env.spec.id == "CartPole-v1"


def test_ale_ids_are_registered():
    env_factory("ALE/Breakout-v5")
    assert env_family("ALE/Breakout-v5") == "atari"
    assert env_family("CartPole-v1") == "classic_control"


def test_a_wrapped_env_named_by_module_callable_gets_its_family_preset():
    """Issue #22: `--env tests.envs:cartpole_no_velocity` (CartPole with its velocities zeroed,
    built by a callable) has no registry entry that names its family, so it got CleanRL's
    generic values (lr 2.5e-4, 8 envs x 128 steps, 4 x 4 minibatches, entropy bonus), under
    which `--policy lstm` never moved (entropy 0.693 from the first update to the last). The
    env it builds is a CartPole: it gets the classic-control preset, as `--env CartPole-v1`."""
    wrapped, _ = parse_train_args(["--env", "tests.envs:cartpole_no_velocity"])
    plain, _ = parse_train_args(["--env", "CartPole-v1"])
    assert dataclasses.replace(wrapped, env=plain.env) == plain
    assert probe_env(env_factory("tests.envs:cartpole_no_velocity")).family == "classic_control"
    assert probe_env(env_factory("tests.envs:counting_terminated")).family == "other"


def test_module_colon_id_imports_the_registering_module():
    env = env_factory("tests.envs:PufferTest/Counting-v0")()
    assert env.spec.id == "PufferTest/Counting-v0"


def test_module_colon_callable():
    env = env_factory("tests.envs:counting_terminated")()
    assert env.terminate


def test_unknown_id_suggests_close_ids():
    with pytest.raises(UserError, match="unknown env id 'CartPol-v1'; did you mean CartPole-v1"):
        env_factory("CartPol-v1")


def test_unknown_module_and_attribute():
    with pytest.raises(UserError, match="cannot import module 'no_such_module'"):
        env_factory("no_such_module:Env-v0")
    with pytest.raises(UserError, match="neither registers id 'Nope-v0'"):
        env_factory("tests.envs:Nope-v0")


def _round_trip(snapshot):
    file = io.BytesIO()
    torch.save(snapshot, file)
    file.seek(0)
    return torch.load(file, weights_only=True)


def test_env_state_snapshot_is_plain_data_and_restores_exactly():
    env = gym.make("CartPole-v1")
    env.reset(seed=3)
    for _ in range(5):
        env.step(0)
    snapshot = _round_trip(capture_env_state(env))
    expected = [env.step(1)[0] for _ in range(3)] + [env.reset()[0]]

    other = gym.make("CartPole-v1")
    other.reset(seed=123)
    restore_env_state(other, snapshot)
    actual = [other.step(1)[0] for _ in range(3)] + [other.reset()[0]]
    for a, b in zip(expected, actual, strict=True):
        np.testing.assert_array_equal(a, b)


def test_env_holding_non_data_cannot_be_captured():
    assert capture_env_state(env_factory("tests.envs:uncapturable")()) is None


def test_numpy_scalars_that_subclass_builtins_load_and_come_back_as_numpy():
    """np.float64 and np.str_ subclass float and str, so they were kept as numpy objects and every
    checkpoint of such an env failed to load under weights_only (stock Blackjack-v1 keeps an
    np.str_): `--resume`, `eval` and `export` all refused the run."""
    env = gym.make("Blackjack-v1")
    env.reset(seed=1)
    env.unwrapped.total = np.float64(2.5)
    env.unwrapped.label = np.str_("C")
    snapshot = _round_trip(capture_env_state(env))
    other = gym.make("Blackjack-v1")
    other.reset(seed=9)
    restore_env_state(other, snapshot)
    for name in ("total", "label", "dealer", "player", "dealer_top_card_suit"):
        expected, actual = getattr(env.unwrapped, name), getattr(other.unwrapped, name)
        assert actual == expected and type(actual) is type(expected)


def test_a_builtin_subclass_that_is_not_numpy_is_not_data():
    class Colour(str):
        pass

    env = gym.make("CartPole-v1")
    env.unwrapped.colour = Colour("red")
    assert capture_env_state(env) is None
