"""Native vector envs beside ale-py's: gymnasium vector entry points (the numpy CartPole) and
EnvPool, checked against the serial engine."""

from __future__ import annotations

import dataclasses
import sys
from functools import partial

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from puffertrain.config import PPOConfig, TrainConfig
from puffertrain.engine import (
    EnvPoolEngine,
    GymVectorEngine,
    SerialEngine,
    choose_backend,
    make_engine,
)
from puffertrain.envs import env_factory
from puffertrain.errors import UserError
from puffertrain.trainer.checkpoint import load_checkpoint
from puffertrain.trainer.loop import Trainer

SHORT = {"max_episode_steps": 20}  # truncations within a few dozen steps


def _serial(num_envs: int, kwargs: dict | None = None) -> SerialEngine:
    return SerialEngine([env_factory("CartPole-v1", kwargs or {})] * num_envs)


def _outcome(result) -> tuple:
    return (
        result.observations.copy(),
        result.rewards.copy(),
        result.terminations.copy(),
        result.truncations.copy(),
        [(e.env_index, e.score, e.length) for e in result.episodes],
    )


def _assert_same_steps(engine, reference, steps: int, sync=None) -> tuple[int, int]:
    """Step both engines with the same random actions; every step's observations, rewards,
    ends, final observations and finished episodes agree. ``sync(engine, reference, ended)``
    lines up the episodes that just started (their first states come from different random
    streams). Returns the terminations and truncations seen."""
    rng = np.random.default_rng(0)
    terminated = truncated = 0
    for _ in range(steps):
        actions = rng.integers(0, 2, engine.num_rows)
        ours, theirs = engine.step(actions), reference.step(actions)
        ended = theirs.terminations | theirs.truncations
        np.testing.assert_allclose(
            ours.final_observations[ended], theirs.final_observations[ended], atol=1e-6
        )
        if sync is not None:
            sync(engine, reference, ended)
        for mine, expected in zip(_outcome(ours), _outcome(theirs), strict=True):
            np.testing.assert_allclose(np.asarray(mine), np.asarray(expected), atol=1e-6)
        terminated += int(theirs.terminations.sum())
        truncated += int(theirs.truncations.sum())
    return terminated, truncated


def _start_where_serial_starts(engine: GymVectorEngine, reference: SerialEngine, rows) -> None:
    """Put the serial envs' first states of new episodes into the vector env's ``rows``."""
    vector = engine._vectors[0].unwrapped
    for row in np.flatnonzero(rows):
        vector.state[:, row] = reference.envs[row].unwrapped.state
        engine.observations[row] = reference.observations[row]


def test_cartpole_vector_env_steps_as_the_serial_engine():
    """Same dynamics, same-step autoreset, same final observations, same episode scores: only
    the first state of each episode comes from another random stream (synced here)."""
    engine, _ = make_engine("native", "CartPole-v1", 4, SHORT)
    reference = _serial(4, SHORT)
    assert isinstance(engine, GymVectorEngine)
    engine.reset(0)
    reference.reset(0)
    _start_where_serial_starts(engine, reference, np.ones(4, dtype=bool))
    terminated, truncated = _assert_same_steps(
        engine, reference, 120, sync=_start_where_serial_starts
    )
    assert terminated and truncated


def test_an_ended_cartpole_starts_its_next_episode_in_the_same_step():
    """No step is spent on the reset: the step that ends an episode returns the next one's
    first state, and the next step is a full step of it (reward 1, counted)."""
    engine, _ = make_engine("native", "CartPole-v1", 8, SHORT)
    engine.reset(0)
    for _ in range(30):
        result = engine.step(np.zeros(8, dtype=np.int64))
        ended = result.terminations | result.truncations
        if ended.any():
            break
    assert ended.any()
    assert (np.abs(result.observations[ended]) <= 0.05).all()  # a fresh uniform state
    assert (np.abs(result.final_observations[ended]) > 0.05).any()
    assert (engine.tracker.lengths[ended] == 0).all()
    after = engine.step(np.zeros(8, dtype=np.int64))
    assert (after.rewards == 1).all() and (engine.tracker.lengths[ended] == 1).all()


@pytest.mark.parametrize("mode", [AutoresetMode.SAME_STEP, AutoresetMode.DISABLED])
def test_vector_envs_that_reset_in_the_step_or_on_request_match_the_serial_engine(mode):
    """gymnasium's own SyncVectorEnv seeds env i with seed + i, as the serial engine does, so
    the two agree exactly, episode starts included."""
    factory = env_factory("CartPole-v1", SHORT)

    def build(size: int) -> gym.vector.VectorEnv:
        return gym.vector.SyncVectorEnv([factory] * size, autoreset_mode=mode)

    engine = GymVectorEngine("CartPole-v1", {}, 4, build=build)
    reference = _serial(4, SHORT)
    np.testing.assert_array_equal(engine.reset(3), reference.reset(3))
    terminated, truncated = _assert_same_steps(engine, reference, 60)
    assert terminated and truncated


def test_a_next_step_vector_env_puffertrain_cannot_reset_is_refused():
    def build(size: int) -> gym.vector.VectorEnv:
        return gym.vector.SyncVectorEnv([env_factory("CartPole-v1")] * size)

    with pytest.raises(UserError, match="only on the next step"):
        GymVectorEngine("CartPole-v1", {}, 2, build=build)


def test_batches_are_seeded_as_their_own_vector_envs():
    batched = GymVectorEngine("CartPole-v1", {}, 4, batch_size=2)
    second = GymVectorEngine("CartPole-v1", {}, 2)
    np.testing.assert_array_equal(batched.reset(5)[2:], second.reset(7))


def test_async_batches_come_back_in_the_order_they_were_sent():
    """Each batch is its own rows, whichever order the batches are sent in."""
    in_order = GymVectorEngine("CartPole-v1", SHORT, 4, batch_size=2)
    reversed_order = GymVectorEngine("CartPole-v1", SHORT, 4, batch_size=2)
    in_order.reset(1)
    reversed_order.reset(1)
    rng = np.random.default_rng(0)
    for _ in range(40):
        actions = rng.integers(0, 2, 4)
        in_order.send(actions, np.arange(4))
        first, second = in_order.recv(), in_order.recv()
        first = (first.row_ids.copy(), first.observations.copy())
        reversed_order.send(actions[2:], np.arange(2, 4))
        reversed_order.send(actions[:2], np.arange(2))
        late = reversed_order.recv()
        np.testing.assert_array_equal(late.row_ids, [2, 3])
        np.testing.assert_array_equal(late.observations, second.observations)
        early = reversed_order.recv()
        np.testing.assert_array_equal(early.row_ids, first[0])
        np.testing.assert_array_equal(early.observations, first[1])


def test_a_batch_sent_back_by_the_row_ids_it_returned_steps_those_rows():
    """The row ids ``recv`` returns are the engine's own, read-only: sent back as they are,
    they step their batch without being checked again, and nobody can change them."""
    engine = GymVectorEngine("CartPole-v1", SHORT, 4, batch_size=2)
    reference = GymVectorEngine("CartPole-v1", SHORT, 4, batch_size=2)
    engine.reset(1)
    reference.reset(1)
    zeros = np.zeros(2, np.int64)
    engine.send(zeros, np.arange(2))
    engine.send(zeros, np.arange(2, 4))
    first, second = engine.recv().row_ids, engine.recv().row_ids
    with pytest.raises(ValueError):
        second[0] = 0
    engine.send(np.ones(2, np.int64), second)
    engine.send(zeros, first)
    reference.send(np.zeros(4, np.int64), np.arange(4))
    reference.recv(), reference.recv()
    reference.send(np.ones(2, np.int64), np.arange(2, 4))
    reference.send(zeros, np.arange(2))
    for _ in range(2):
        ours, theirs = engine.recv(), reference.recv()
        np.testing.assert_array_equal(ours.row_ids, theirs.row_ids)
        np.testing.assert_array_equal(ours.observations, theirs.observations)


def test_cartpole_vector_env_resumes_exactly():
    engine, _ = make_engine("native", "CartPole-v1", 4, SHORT)
    engine.reset(0)
    rng = np.random.default_rng(0)
    for _ in range(15):
        engine.step(rng.integers(0, 2, 4))
    resumed, _ = make_engine("native", "CartPole-v1", 4, SHORT)
    assert resumed.load_state_dict(engine.state_dict(), reseed=99)
    np.testing.assert_array_equal(resumed.observations, engine.observations)
    for _ in range(30):
        actions = rng.integers(0, 2, 4)
        for mine, expected in zip(
            _outcome(resumed.step(actions)), _outcome(engine.step(actions)), strict=True
        ):
            np.testing.assert_array_equal(np.asarray(mine), np.asarray(expected))


def _trainer_resume_err(vec: str, tmp_path, capsys) -> str:
    config = TrainConfig(
        env="CartPole-v1", policy="mlp", num_envs=2, num_steps=8, vec=vec,
        ppo=PPOConfig(num_minibatches=2),
    )  # fmt: skip
    trainer = Trainer(config, tmp_path, None)
    capsys.readouterr()
    Trainer(config, tmp_path, load_checkpoint(trainer.save()))
    return capsys.readouterr().err


def test_a_native_cartpole_run_resumes_its_episodes(tmp_path, capsys):
    assert "episodes restart" not in _trainer_resume_err("native", tmp_path, capsys)


def test_a_run_resumed_on_another_engine_says_so_when_its_episodes_restart(tmp_path, capsys):
    # a CartPole run of fewer than 8 envs started on the native engine resumes on the serial
    # one that --vec auto now builds; the message said the env's state could not be saved
    config = TrainConfig(
        env="CartPole-v1", policy="mlp", num_envs=2, num_steps=8, vec="native",
        ppo=PPOConfig(num_minibatches=2),
    )  # fmt: skip
    checkpoint = load_checkpoint(Trainer(config, tmp_path, None).save())
    capsys.readouterr()
    Trainer(dataclasses.replace(config, vec="serial"), tmp_path, checkpoint)
    err = capsys.readouterr().err
    assert "saved by another engine than this run's serial; its episodes restart" in err


@pytest.mark.parametrize("num_envs", [8, 16, 64])
def test_auto_picks_the_vector_entry_point_whatever_the_timing(num_envs):
    """By rule, so that the same command always builds the same engine."""
    factory = env_factory("CartPole-v1")
    backend, reason = choose_backend("auto", "CartPole-v1", factory, num_envs)
    assert (backend, reason) == ("native", "its own vector env: all envs in one numpy step")


@pytest.mark.parametrize("num_envs", [1, 4, 7])
def test_auto_steps_a_few_envs_singly_where_the_vector_envs_fixed_cost_loses(num_envs):
    # at 1 to 4 CartPole envs the serial engine's rollout was 1.3-2.2x the vector env's
    factory = env_factory("CartPole-v1")
    backend, reason = choose_backend("auto", "CartPole-v1", factory, num_envs)
    assert backend == "serial" and "vector env's fixed cost" in reason


def test_native_is_refused_for_an_id_without_a_vector_implementation():
    with pytest.raises(UserError, match="no vector implementation of its own"):
        choose_backend("native", "Acrobot-v1", None, 4)


def test_envpool_not_installed_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "envpool", None)  # import envpool raises ImportError
    with pytest.raises(UserError, match="EnvPool is not installed") as error:
        make_engine("envpool", "CartPole-v1", 2, {})
    assert "\n" not in str(error.value)


envpool = pytest.importorskip("envpool", reason="EnvPool is not installed (the envpool extra)")
make_envpool = partial(make_engine, "envpool")


def test_envpool_refuses_an_id_it_does_not_know():
    with pytest.raises(UserError, match=r"EnvPool has no env 'tests\.envs:uncapturable'"):
        make_envpool("tests.envs:uncapturable", 2, {})


def test_envpool_refuses_structured_observations():
    with pytest.raises(UserError, match="has Dict observations"):
        make_envpool("MiniGrid-Empty-5x5-v0", 2, {})


def test_envpool_cartpole_resets_in_the_step_that_ends_an_episode():
    engine, _ = make_envpool("CartPole-v1", 4, SHORT)
    assert isinstance(engine, EnvPoolEngine)
    engine.reset(0)
    rng = np.random.default_rng(0)
    serial = _serial(1, SHORT)
    terminated = truncated = 0
    for _ in range(80):
        result = engine.step(rng.integers(0, 2, 4))
        ended = result.terminations | result.truncations
        assert (np.abs(result.observations[ended]) <= 0.05).all()  # next episode's first state
        over = result.final_observations[result.terminations]
        limits = serial.envs[0].unwrapped
        assert (
            (np.abs(over[:, 0]) > limits.x_threshold)
            | (np.abs(over[:, 2]) > limits.theta_threshold_radians)
        ).all()
        assert all(e.length <= 20 and e.score == e.length for e in result.episodes)
        terminated += int(result.terminations.sum())
        truncated += int(result.truncations.sum())
    assert terminated and truncated


def test_envpool_is_seeded_per_env_and_per_batch():
    whole, _ = make_envpool("CartPole-v1", 4, {})
    batched, _ = make_envpool("CartPole-v1", 4, {}, batch_size=2)
    first = whole.reset(3).copy()
    np.testing.assert_array_equal(batched.reset(3), first)
    np.testing.assert_array_equal(whole.reset(3), first)  # reseeding rebuilds the pools
    assert not np.array_equal(whole.reset(4), first)


def test_envpool_atari_frames_are_the_native_engines():
    """The same preprocessing as our ALE recipe: once the frame stack has filled, EnvPool's
    Breakout frames are ale-py's pixel for pixel (resize, grayscale and max-pool agree)."""
    settings = {"noop_max": 0, "repeat_action_probability": 0.0}
    pool, _ = make_envpool("ALE/Breakout-v5", 2, settings, num_threads=1)
    native, _ = make_engine("native", "ALE/Breakout-v5", 2, settings, num_threads=1)
    assert pool.single_observation_space == native.single_observation_space
    assert pool.single_action_space == native.single_action_space
    pool.reset(0)
    native.reset(0)
    for step in range(12):
        actions = np.full(2, 1 if step == 0 else 2)
        ours, theirs = pool.step(actions), native.step(actions)
        if step >= 4:
            np.testing.assert_array_equal(ours.observations, theirs.observations)


def test_an_envpool_run_restarts_its_episodes_on_resume(tmp_path, capsys):
    assert "episodes restart" in _trainer_resume_err("envpool", tmp_path, capsys)
