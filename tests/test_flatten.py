"""Dict and Tuple observations: flat rows in the engine, exact structure back in the policy."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.flatten import (
    decode_bytes,
    flatten_observation,
    observation_layout,
    unflatten_observations,
)
from puffertrain.engine import make_engine

NESTED = gym.spaces.Dict(
    {
        "image": gym.spaces.Box(0, 255, (3, 5, 5), np.uint8),
        "vector": gym.spaces.Box(-1.0, 1.0, (3,), np.float32),
        "inner": gym.spaces.Tuple(
            (
                gym.spaces.Discrete(4),
                gym.spaces.MultiBinary(3),
                gym.spaces.Dict({"x": gym.spaces.Box(-1.0, 1.0, (2, 2), np.float64)}),
                gym.spaces.MultiDiscrete([3, 5]),
            )
        ),
    }
)


def _assert_same(expected, actual, index: int) -> None:
    if isinstance(expected, dict):
        assert list(actual) == list(expected)
        for key in expected:
            _assert_same(expected[key], actual[key], index)
    elif isinstance(expected, tuple):
        assert isinstance(actual, tuple) and len(actual) == len(expected)
        for e, a in zip(expected, actual, strict=True):
            _assert_same(e, a, index)
    else:
        value = actual[index].numpy()
        expected = np.asarray(expected)
        assert value.shape == expected.shape and value.dtype == expected.dtype
        np.testing.assert_array_equal(value, expected)


def test_nested_round_trip_keeps_every_leaf_its_dtype_and_shape():
    NESTED.seed(0)
    samples = [NESTED.sample() for _ in range(5)]
    flat = torch.from_numpy(np.stack([flatten_observation(s, NESTED) for s in samples]))
    out = unflatten_observations(flat, NESTED)
    assert out["image"].dtype == torch.uint8 and out["image"].shape == (5, 3, 5, 5)
    assert out["vector"].dtype == torch.float32
    assert out["inner"][0].dtype == torch.int64 and out["inner"][0].shape == (5,)
    assert out["inner"][2]["x"].dtype == torch.float64 and out["inner"][2]["x"].shape == (5, 2, 2)
    for index, sample in enumerate(samples):
        _assert_same(sample, out, index)


_SHAPES = st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple)
_LEAVES = st.one_of(
    st.builds(
        lambda shape, dtype: gym.spaces.Box(-100, 100, shape, dtype),
        _SHAPES,
        st.sampled_from([np.float16, np.float32, np.float64, np.int8, np.int16, np.int32]),
    ),
    st.builds(lambda shape: gym.spaces.Box(0, 255, shape, np.uint8), _SHAPES),
    st.builds(
        lambda n, start: gym.spaces.Discrete(n, start=start), st.integers(1, 9), st.integers(-3, 3)
    ),
    st.builds(gym.spaces.MultiDiscrete, st.lists(st.integers(1, 6), min_size=1, max_size=4)),
    st.builds(gym.spaces.MultiBinary, st.integers(1, 5)),
)
_SPACES = st.recursive(
    _LEAVES,
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda items: gym.spaces.Tuple(items)),
        st.dictionaries(
            st.text("abcxyz", min_size=1, max_size=3), children, min_size=1, max_size=3
        ).map(gym.spaces.Dict),
    ),
    max_leaves=8,
).filter(lambda space: isinstance(space, gym.spaces.Dict | gym.spaces.Tuple))


@settings(max_examples=60, deadline=None)
@given(space=_SPACES, seed=st.integers(0, 2**16), batch=st.integers(1, 4))
def test_unflatten_inverts_flatten_for_any_nested_space(space, seed, batch):
    """Property: for random nested Dict/Tuple spaces of mixed dtypes, every sampled value comes
    back bit for bit, with its leaf's shape and dtype, on batched rows."""
    space.seed(seed)
    samples = [space.sample() for _ in range(batch)]
    flat = torch.from_numpy(np.stack([flatten_observation(s, space) for s in samples]))
    out = unflatten_observations(flat, space)
    for index, sample in enumerate(samples):
        _assert_same(sample, out, index)


def test_layout_aligns_every_leaf_to_8_bytes():
    leaves, size = observation_layout(NESTED)
    assert all(leaf.offset % 8 == 0 for leaf in leaves) and size % 8 == 0


EXPORTED_DTYPES = [
    torch.bool,
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.uint16,
    torch.uint32,
    torch.float16,
    torch.float32,
    torch.float64,
]


@settings(max_examples=40, deadline=None)
@given(dtype=st.sampled_from(EXPORTED_DTYPES), data=st.binary(min_size=8, max_size=64))
def test_the_exporters_arithmetic_decoding_equals_viewing_the_bytes(dtype, data):
    """Any bytes (NaN, infinities, subnormals, negative zero, sign bits) decode to the same
    values with arithmetic as with ``Tensor.view``, which exporters cannot translate."""
    size = torch.empty((), dtype=dtype).element_size()
    raw = np.frombuffer(data[: len(data) // 8 * 8], np.uint8).reshape(-1, 8)
    if dtype == torch.bool:
        raw = raw % 2
    chunk = torch.from_numpy(raw.copy())
    expected = chunk.view(dtype)
    decoded = decode_bytes(chunk, dtype)
    assert decoded.dtype == dtype and decoded.shape == (len(raw), 8 // size)
    if dtype.is_floating_point:
        same = (decoded == expected) | (decoded.isnan() & expected.isnan())
        same &= decoded.signbit() == expected.signbit()
        assert same.all()
    else:
        assert torch.equal(decoded, expected)


def test_unflatten_works_on_rollout_shaped_batches_and_under_compile():
    NESTED.seed(1)
    rows = np.stack([flatten_observation(NESTED.sample(), NESTED) for _ in range(6)])
    flat = torch.from_numpy(rows).reshape(2, 3, -1)  # (steps, envs, bytes)
    assert unflatten_observations(flat, NESTED)["inner"][2]["x"].shape == (2, 3, 2, 2)

    def total(batch):
        obs = unflatten_observations(batch, NESTED)
        return obs["vector"].sum() + obs["inner"][2]["x"].sum() + obs["image"].float().sum()

    compiled = torch.compile(total, fullgraph=True)
    torch.testing.assert_close(compiled(flat), total(flat))


@pytest.mark.parametrize("backend", ["serial", "multiprocessing"])
def test_engines_carry_dict_observations_as_flat_rows(backend):
    envs, _ = make_engine(backend, "tests.envs:dict_env", 4, {}, num_workers=1)
    try:
        assert isinstance(envs.policy_observation_space, gym.spaces.Dict)
        obs = envs.reset(0)
        assert obs.dtype == np.uint8 and obs.shape == (4, observation_layout(NESTED_ENV)[1])
        space = envs.policy_observation_space
        for _ in range(3):
            obs = envs.step(np.zeros(4, dtype=np.int64)).observations
        decoded = unflatten_observations(torch.from_numpy(obs.copy()), space)
        assert decoded["image"].shape == (4, 1, 4, 4)
        assert set(decoded["extra"][0].tolist()) <= {0, 1}
    finally:
        envs.close()


NESTED_ENV = gym.spaces.Dict(
    {
        "image": gym.spaces.Box(0, 255, (1, 4, 4), np.uint8),
        "vector": gym.spaces.Box(-1.0, 1.0, (3,), np.float32),
        "extra": gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Box(0, 1, (2,), np.float64))),
    }
)


@pytest.mark.parametrize("vec", ["serial", "multiprocessing"])
def test_a_policy_reading_dict_observations_learns(tmp_path, vec):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from puffertrain.cli import main

    run_dir = tmp_path / vec
    main(
        [
            "--env",
            "tests.envs:dict_env",
            "--policy",
            "tests.user_policy:DictReader",
            "--vec",
            vec,
            "--num-envs",
            "4",
            "--num-steps",
            "64",
            "--total-timesteps",
            "4096",
            "--learning-rate",
            "3e-3",
            "--device",
            "cpu",
            "--run-dir",
            str(run_dir),
        ]
    )
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    scores = [e.value for e in events.Scalars("charts/episodic_return")]
    # 20 steps an episode, reward 1 for matching the Discrete leaf: random play scores ~10 ± 2.2;
    # the last 8 pass 15 by ~2,000 steps (19 by ~3,300), so 4,096 leaves a margin
    assert np.mean(scores[:8]) < 12.5 and np.mean(scores[-8:]) > 15
