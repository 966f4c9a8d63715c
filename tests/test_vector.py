"""Serial rollout engine: same-step autoreset, final observations, episode accounting."""

from __future__ import annotations

import numpy as np
import pytest

from puffertrain.engine import EnvError, EpisodeTracker, SerialEngine, multiprocessing_engine
from puffertrain.envs import env_factory
from tests.envs import CountingEnv


def test_same_step_autoreset_keeps_final_observation_and_counts_episodes():
    envs = SerialEngine([lambda: CountingEnv(length=3), lambda: CountingEnv(length=2)])
    obs = envs.reset(seed=0)
    assert obs[:, 0].tolist() == [0, 0]
    episodes = []
    for _ in range(6):
        result = envs.step(np.zeros(2, dtype=np.int64))
        episodes += result.episodes
        if result.truncations[1]:
            assert result.final_observations[1, 0] == 2  # the obs the episode ended on
            assert result.observations[1, 0] == 0  # already the next episode's first obs
    assert [(e.env_index, e.score, e.length) for e in episodes] == [
        (1, 2.0, 2),
        (0, 3.0, 3),
        (1, 2.0, 2),
        (0, 3.0, 3),
        (1, 2.0, 2),
    ]


def test_state_dict_round_trip_continues_identically():
    factory = env_factory("CartPole-v1")
    first = SerialEngine([factory] * 3)
    first.reset(seed=5)
    rng = np.random.default_rng(0)
    for _ in range(30):
        first.step(rng.integers(0, 2, size=3))
    state = first.state_dict()
    second = SerialEngine([factory] * 3)
    second.reset(seed=99)
    assert second.load_state_dict(state, reseed=0)
    np.testing.assert_array_equal(second.observations, first.observations)
    for _ in range(60):  # long enough for episodes to end and reset from the restored RNG
        actions = rng.integers(0, 2, size=3)
        a, b = first.step(actions), second.step(actions)
        np.testing.assert_array_equal(a.observations, b.observations)
        assert a.episodes == b.episodes


def test_uncapturable_env_is_reset_with_the_reseed():
    factory = env_factory("tests.envs:uncapturable")
    envs = SerialEngine([factory] * 2)
    envs.reset(seed=0)
    envs.step(np.zeros(2, dtype=np.int64))
    state = envs.state_dict()
    assert state["envs"] == [None, None]
    assert not envs.load_state_dict(state, reseed=7)
    assert envs.observations[:, 0].tolist() == [0, 0]


def test_an_env_raising_on_reset_is_named_with_its_traceback():
    factory = env_factory("tests.envs:reset_raising")
    envs = SerialEngine([factory] * 3)
    with pytest.raises(EnvError, match=r"(?s)env 2 raised on reset:.*no level for seed 2"):
        envs.reset(seed=0)
    workers = multiprocessing_engine([factory] * 4, num_workers=1)
    try:
        with pytest.raises(EnvError, match=r"(?s)env 2 raised on reset:.*no level for seed 2"):
            workers.reset(seed=0)
    finally:
        workers.close()


@pytest.mark.parametrize("rows", [slice(2, 5), np.array([2, 3, 4]), np.array([4, 2, 3])])
def test_episode_tracker_scores_rows_given_as_a_slice_or_ids(rows):
    tracker = EpisodeTracker(6)
    ids = np.arange(rows.start, rows.stop) if isinstance(rows, slice) else rows
    tracker.update(rows, np.array([1.0, 2.0, 3.0]), np.zeros(3, dtype=bool))
    episodes = tracker.update(rows, np.array([1.0, 2.0, 3.0]), np.array([False, True, True]))
    assert [(e.env_index, e.score, e.length) for e in episodes] == [
        (int(ids[1]), 4.0, 2),
        (int(ids[2]), 6.0, 2),
    ]
    assert all(type(e.env_index) is int and type(e.score) is float for e in episodes)
    assert tracker.scores[ids].tolist() == [2.0, 0.0, 0.0]
    assert tracker.lengths[ids].tolist() == [2, 0, 0]
    assert tracker.scores[[0, 1, 5]].tolist() == [0.0, 0.0, 0.0]
