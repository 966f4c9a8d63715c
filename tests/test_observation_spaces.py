"""Every observation space the catalogue's envs use reaches the policy in a form it can learn
from: categories one-hot (or embedded), text leaves dropped with a notice, unbatchable spaces
refused in one line."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from policies import BasicPolicy, MultiInputPolicy
from policies.checks import check_gradients, check_output_shapes, sample_observations
from policies.features import ONE_HOT_MAX, DiscreteEncoder, OneHot, VectorFeatures
from policies.flatten import flatten_observation
from puffertrain.envs.flatten import policy_observation_space, with_flat_observations
from puffertrain.envs.spaces import describe_space, policy_view, text_leaves, text_notice
from puffertrain.errors import UserError
from puffertrain.policy_loader import auto_policy_name, build_policy
from tests import space_envs

ACTIONS = gym.spaces.Discrete(3)
VECTOR_LIKE = [
    gym.spaces.Discrete(16),
    gym.spaces.Discrete(500, start=-3),
    gym.spaces.MultiDiscrete([3, 4, 2]),
    gym.spaces.MultiBinary(5),
    gym.spaces.Box(-5, 5, (4,), np.int64),
]


def _rows(space: gym.spaces.Space, values: list) -> torch.Tensor:
    return torch.as_tensor(np.stack([flatten_observation(v, space) for v in values]))


def test_discrete_is_one_hot():
    space = gym.spaces.Discrete(4, start=2)
    features = VectorFeatures(space)
    assert isinstance(features.categories, OneHot)
    out = features(_rows(space, [2, 5]))
    assert out.tolist() == [[1, 0, 0, 0], [0, 0, 0, 1]]


def test_multi_discrete_is_one_block_per_dimension():
    space = gym.spaces.MultiDiscrete([2, 3])
    out = VectorFeatures(space)(_rows(space, [np.array([1, 0]), np.array([0, 2])]))
    assert out.tolist() == [[0, 1, 1, 0, 0], [1, 0, 0, 0, 1]]


def test_many_categories_are_embedded():
    features = VectorFeatures(gym.spaces.Discrete(ONE_HOT_MAX + 1))
    assert isinstance(features.categories, DiscreteEncoder)
    assert VectorFeatures(gym.spaces.Discrete(ONE_HOT_MAX)).output_size == ONE_HOT_MAX


def test_byte_rows_cast_to_float_decode_the_same():
    """Encoders that call ``.float()`` on their input (EncoderHeads) still read the bytes."""
    space = gym.spaces.Discrete(300)
    rows = _rows(space, [299, 7])
    features = VectorFeatures(space)
    assert torch.equal(features(rows), features(rows.float()))


@pytest.mark.parametrize("space", VECTOR_LIKE, ids=str)
@pytest.mark.parametrize("cls", [BasicPolicy, MultiInputPolicy])
def test_mlp_and_multi_input_take_vector_like_spaces(cls, space):
    policy = cls(space, ACTIONS)
    check_output_shapes(policy, space, ACTIONS)
    check_gradients(policy, space)


@pytest.mark.parametrize("space", VECTOR_LIKE, ids=str)
def test_auto_picks_mlp_for_vector_like_spaces(space):
    assert auto_policy_name(space) == "mlp"
    build_policy("auto", space, ACTIONS)


def test_blackjack_tuple_of_discretes_still_goes_to_multi_input():
    space = gym.make("Blackjack-v1").observation_space
    assert auto_policy_name(space) == "multi_input"
    policy = build_policy("auto", space, gym.spaces.Discrete(2))
    assert policy(sample_observations(space, 3))[0].shape == (3, 2)


def test_text_leaves_are_dropped_and_named():
    space = gym.spaces.Dict(
        {"image": gym.spaces.Box(0, 255, (7, 7, 3), np.uint8), "mission": gym.spaces.Text(10)}
    )
    assert text_leaves(space) == ["mission"]
    assert list(policy_view(space).spaces) == ["image"]
    notice = text_notice(space)
    assert "'mission'" in notice and "BabyAI" in notice and "\n" not in notice
    assert text_notice(gym.spaces.Discrete(3)) is None


def test_minigrid_mission_space_counts_as_text():
    pytest.importorskip("minigrid")
    import minigrid  # noqa: F401

    space = gym.make("MiniGrid-Empty-5x5-v0").observation_space
    assert text_leaves(space) == ["mission"]
    assert set(policy_view(space).spaces) == {"direction", "image"}


def test_engine_rows_leave_text_out():
    env = with_flat_observations(space_envs.text_leaf)
    assert policy_observation_space(env) == gym.spaces.Dict({"position": gym.spaces.Discrete(9)})
    row, _ = env.reset(seed=0)
    assert row.dtype == np.uint8 and row.shape == env.observation_space.shape


@pytest.mark.parametrize(
    ("factory", "leaf", "kind"),
    [
        (space_envs.graph_leaf, "links", "Graph"),
        (space_envs.sequence_leaf, "observation", "Sequence"),
    ],
)
def test_unbatchable_spaces_are_one_line(factory, leaf, kind):
    with pytest.raises(UserError, match=f"observation leaf '{leaf}' is a {kind} space") as info:
        with_flat_observations(factory)
    assert "\n" not in str(info.value)


def test_text_only_is_refused():
    with pytest.raises(UserError, match="text only"):
        policy_view(gym.spaces.Text(4))


def test_spaces_are_described_in_one_short_line():
    """Refusals name the space: a Box by its bounds (a range where they differ by entry), shape
    and dtype; a Box of no entries has no bound (its min and max raised and hid the refusal)."""
    high = np.broadcast_to(np.array([10, 5, 2], np.uint8), (7, 7, 3))
    grid = gym.spaces.Dict(
        {"image": gym.spaces.Box(0, high, dtype=np.uint8), "empty": gym.spaces.Box(0, 1, (0,))}
    )
    assert describe_space(grid) == (
        "Dict('empty': Box(-, -, (0,), float32), 'image': Box(0, 2..10, (7, 7, 3), uint8))"
    )
    pair = gym.spaces.Tuple((gym.spaces.Discrete(3), gym.spaces.Box(-1.0, 1.0, (2,))))
    assert describe_space(pair) == "Tuple(Discrete(3), Box(-1.0, 1.0, (2,), float32))"


@pytest.mark.parametrize(
    "env",
    [
        "discrete_actions_from_1",
        "multi_discrete_actions_with_starts",
        "discrete_observations_from_5",
        "binary_actions",  # refused before: trained as MultiDiscrete of 2s, as SB3 trains them
        "integer_box_actions",  # got floats such as 0.5657: rounded now, as the space says
    ],
)
@pytest.mark.parametrize("vec", ["serial", "multiprocessing"])
def test_spaces_that_start_away_from_0_train_and_evaluate(tmp_path, cli, env, vec):
    """Discrete(3, start=1) got actions 0..2 (the logits' indices, never shifted): action 0
    reached the env in training, eval and multi-agent envs alike. A Discrete(4, start=5)
    observation crashed at start-up: the cost probe ran the policy on all-zero rows."""
    run_dir = tmp_path / "run"
    flags = ["--env", f"tests.space_envs:{env}", "--vec", vec, "--num-envs", "2"]
    flags += ["--num-steps", "16", "--total-timesteps", "64", "--run-dir", str(run_dir)]
    result = cli(*flags)
    assert result.returncode == 0, result.stderr
    evaluated = cli("eval", "--checkpoint", str(run_dir), "--episodes", "2")
    assert evaluated.returncode == 0, evaluated.stderr


def test_box_actions_that_a_new_policy_starts_outside_of_get_a_note(tmp_path, cli):
    """Bounds of [2, 10]: the untrained policy's actions were all clipped to 2, silently (SB3's
    env checker warns of bounds that are not centred)."""
    flags = ["--env", "tests.space_envs:off_centre_box_actions", "--num-envs", "2"]
    flags += ["--num-steps", "16", "--total-timesteps", "32", "--run-dir", str(tmp_path / "r")]
    result = cli(*flags)
    assert result.returncode == 0, result.stderr
    assert "note: the actions Box(2.0, 10.0, (2,), float32) are not centred on 0" in result.stderr
    pendulum = cli("--env", "Pendulum-v1", "--help")
    assert "not centred" not in pendulum.stderr + pendulum.stdout
