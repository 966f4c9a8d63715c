"""The policies guide's debugging checks for every library policy, and its building blocks."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn as nn

from policies import (
    POLICIES,
    AttentionPolicy,
    BasicPolicy,
    MultiInputPolicy,
    NormalizedPolicy,
    PolicyWithUnflatten,
    RunningMeanStd,
    is_recurrent,
    layer_init,
    unflatten_observations,
)
from policies.checks import check_gradients, check_output_shapes, sample_observations
from policies.cnn import ImageEncoder
from policies.multi_input import DiscreteEncoder
from policies.normalize import normalize_observations
from puffertrain.policy_loader import auto_policy_name, build_policy, list_policies
from tests.test_loss_gradients import RecordedOps

VECTOR = gym.spaces.Box(-1.0, 1.0, (6,), np.float32)
ENTITIES = gym.spaces.Box(-1.0, 1.0, (5, 3), np.float32)
FRAMES = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
GRID = gym.spaces.Box(0, 255, (7, 7, 3), np.uint8)  # channels last
DICT = gym.spaces.Dict(
    {
        "image": gym.spaces.Box(0, 255, (3, 40, 40), np.uint8),
        "vector": gym.spaces.Box(-1.0, 1.0, (4,), np.float32),
        "mode": gym.spaces.Discrete(3, start=1),
        "extra": gym.spaces.Tuple(
            (
                gym.spaces.MultiDiscrete([2, 4], start=[5, -1]),
                gym.spaces.MultiBinary([2, 3]),
                gym.spaces.Box(-1.0, 1.0, (), np.float32),
            )
        ),
    }
)
DISCRETE, MULTI_DISCRETE = gym.spaces.Discrete(5), gym.spaces.MultiDiscrete([3, 2])
BOX_ACTIONS = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)

# Every registered policy with the observation spaces it is made for; each is checked with
# discrete, multi-discrete and Box actions (the continuous policy with Box actions only).
POLICY_SPACES = {
    "mlp": [VECTOR, ENTITIES],
    "separate_mlp": [VECTOR, ENTITIES],
    "continuous": [VECTOR],
    "cnn": [FRAMES],
    "efficient_cnn": [FRAMES],
    "multi_input": [DICT, gym.spaces.Dict({"grid": GRID, "vector": VECTOR})],
    "attention": [VECTOR, ENTITIES],
    "residual": [VECTOR],
    "lstm": [VECTOR, FRAMES],
    "recurrent": [VECTOR],
    "optimized_lstm": [VECTOR],
    "shared": [VECTOR, FRAMES],
    "independent": [VECTOR, ENTITIES],
    "shared_lstm": [VECTOR, FRAMES],
}
CASES = [
    (name, observation_space, action_space)
    for name, spaces in POLICY_SPACES.items()
    for observation_space in spaces
    for action_space in (
        [BOX_ACTIONS] if name == "continuous" else [DISCRETE, MULTI_DISCRETE, BOX_ACTIONS]
    )
]


def test_every_registered_policy_is_checked():
    assert set(POLICY_SPACES) == set(POLICIES)


@pytest.mark.parametrize(
    "name, observation_space, action_space",
    CASES,
    ids=[f"{n}-{o.__class__.__name__}{getattr(o, 'shape', '')}-{a}" for n, o, a in CASES],
)
def test_docs_debugging_checks(name, observation_space, action_space):
    """The guide's two checks: output shapes for the policy's spaces, and a finite gradient for
    every parameter (both the rollout and update paths of a recurrent policy)."""
    torch.manual_seed(0)
    policy = POLICIES[name].cls(observation_space, action_space)
    check_output_shapes(policy, observation_space, action_space, batch_size=4)
    check_gradients(policy, observation_space, batch_size=2)
    if isinstance(action_space, gym.spaces.Box):
        outputs = policy(sample_observations(observation_space, 3))
        if is_recurrent(policy):
            outputs = outputs[:-1]
        mean, std, _ = outputs
        assert mean.shape == std.shape == (3, 2)
        torch.testing.assert_close(std, torch.ones_like(std))  # log-std starts at 0


def test_checks_catch_a_parameter_without_gradient():
    policy = BasicPolicy(VECTOR, DISCRETE)
    policy.unused = nn.Linear(2, 2)
    with pytest.raises(AssertionError, match=r"no gradient for unused\.weight"):
        check_gradients(policy, VECTOR)


def test_auto_picks_from_the_spaces():
    assert auto_policy_name(FRAMES) == "cnn"
    assert auto_policy_name(DICT) == "multi_input"
    assert auto_policy_name(gym.spaces.Tuple((VECTOR, DISCRETE))) == "multi_input"
    assert auto_policy_name(VECTOR) == "mlp"
    assert auto_policy_name(gym.spaces.Box(0.0, 1.0, (3, 8, 8), np.float32)) == "mlp"
    mean, std, _ = build_policy("auto", VECTOR, BOX_ACTIONS)(torch.zeros(1, 6))
    assert mean.shape == std.shape == (1, 2)


def test_list_policies_names_every_policy_on_one_line_each():
    lines = list_policies().splitlines()
    assert [line.split()[0] for line in lines] == ["auto", *POLICIES, "package.module:Class"]


def test_attention_attends_across_tokens():
    """Changing one token changes what the others' attention produces: the guide's sketch (one
    token) cannot do this."""
    torch.manual_seed(0)
    policy = AttentionPolicy(VECTOR, DISCRETE, num_tokens=3)
    attention = policy.encoder
    assert (attention.num_tokens, attention.token_size) == (3, 2)
    x = attention.attention_norm(attention.embed(attention.tokens(torch.randn(1, 6))))
    other = x.clone()
    other[0, 2] += 1.0
    first = attention.attention(x, x, x, need_weights=False)[0][0, 0]
    changed = attention.attention(other, other, other, need_weights=False)[0][0, 0]
    assert not torch.allclose(first, changed)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        AttentionPolicy(gym.spaces.Box(-1, 1, (1,), np.float32), DISCRETE)


def test_multi_input_takes_flat_rows_or_the_dict_itself():
    torch.manual_seed(0)
    policy = MultiInputPolicy(DICT, DISCRETE)
    flat = sample_observations(DICT, 3)
    structured = unflatten_observations(flat, DICT)
    for expected, actual in zip(policy(flat), policy(structured), strict=True):
        torch.testing.assert_close(expected, actual)
    encoders = policy.encoder[0].encoders
    assert set(encoders) == {"extra/0", "extra/1", "extra/2", "image", "mode", "vector"}
    assert encoders["image"].output_size == 64 * 1 * 1  # Nature convs on 40×40
    assert encoders["mode"].output_size == 16 and encoders["extra/0"].output_size == 32


def test_discrete_leaves_embed_every_value_of_every_dimension_from_its_start():
    encoder = DiscreteEncoder(gym.spaces.MultiDiscrete([2, 4], start=[5, -1]))
    rows = encoder.embedding.weight
    values = torch.tensor([[5, -1], [6, 2]])
    expected = torch.stack([rows[[0, 2]].flatten(), rows[[1, 5]].flatten()])
    torch.testing.assert_close(encoder(values), expected)
    mode = DiscreteEncoder(gym.spaces.Discrete(3, start=1))
    torch.testing.assert_close(mode(torch.tensor([1, 3])), mode.embedding.weight[[0, 2]])


def test_attention_cuts_vectors_into_chunks_without_empty_tokens():
    for size, tokens, token_size in [(4, 4, 1), (10, 5, 2), (17, 6, 3), (64, 8, 8)]:
        space = gym.spaces.Box(-1.0, 1.0, (size,), np.float32)
        attention = AttentionPolicy(space, DISCRETE).encoder
        assert (attention.num_tokens, attention.token_size) == (tokens, token_size), size
        assert attention.padding < token_size


def test_cnn_takes_channels_last_and_small_images():
    for shape in [(96, 96, 3), (4, 4, 3), (3, 10, 10)]:
        space = gym.spaces.Box(0, 255, shape, np.uint8)
        assert auto_policy_name(space) == "cnn"
        policy = build_policy("auto", space, DISCRETE)
        check_output_shapes(policy, space, DISCRETE, batch_size=2)
    assert ImageEncoder(gym.spaces.Box(0, 255, (4, 4, 3), np.uint8)).channels_last
    assert not ImageEncoder(gym.spaces.Box(0, 255, (3, 10, 10), np.uint8)).channels_last


def test_multi_input_reads_channels_last_images():
    encoder = MultiInputPolicy(gym.spaces.Dict({"grid": GRID}), DISCRETE).encoder[0]
    image = encoder.encoders["grid"]
    assert image.channels_last and image.convs[0].in_channels == 3
    assert image.output_size == 64 * 4 * 4


def test_policy_with_unflatten_uses_the_image_and_vector_keys():
    policy = PolicyWithUnflatten(DICT, DISCRETE)
    assert set(policy.encoder[0].encoders) == {"image", "vector"}
    logits, value = policy(sample_observations(DICT, 2))
    assert logits.shape == (2, 5) and value.shape == (2, 1)
    with pytest.raises(ValueError, match="keys image, vector"):
        PolicyWithUnflatten(gym.spaces.Dict({"image": FRAMES}), DISCRETE)


def test_running_mean_std_matches_numpy_over_all_batches():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=(n, 2, 3)) for n in (1, 7, 64, 2)]
    stats = RunningMeanStd((2, 3))
    for batch in batches:
        stats.update(torch.from_numpy(batch))
    seen = np.concatenate(batches)
    np.testing.assert_allclose(stats.mean.numpy(), seen.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.var.numpy(), seen.var(0), rtol=1e-12)
    assert stats.count == len(seen)


def _normalized_by_formula(stats: RunningMeanStd, x: torch.Tensor) -> torch.Tensor:
    if stats.count == 0:
        return x.float()
    scale = torch.rsqrt(stats.var.float() + 1e-8)
    return ((x.float() - stats.mean.float()) * scale).clamp(-10.0, 10.0)


def test_running_mean_std_normalizes_by_its_statistics_whenever_they_change():
    """normalize() keeps its float32 shift and scale between calls; whatever changes the
    statistics (an update, a loaded state, a move to another dtype) must show at the next
    call, bit for bit as the formula gives it, and so must compiling it."""
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0)) * 4 + 2
    stats = RunningMeanStd((3,))
    assert torch.equal(stats.normalize(x), x)  # nothing to normalise by yet
    stats.update(x)
    assert torch.equal(stats.normalize(x), _normalized_by_formula(stats, x))
    stats.update(x[:2] * 3)
    assert torch.equal(stats.normalize(x), _normalized_by_formula(stats, x))
    loaded = {
        "mean": torch.full((3,), 1.0, dtype=torch.float64),
        "var": torch.full((3,), 4.0, dtype=torch.float64),
        "count": torch.tensor(7.0, dtype=torch.float64),
    }
    stats.load_state_dict(loaded)
    torch.testing.assert_close(stats.normalize(x), (x - 1) / 2)
    with torch.no_grad():
        stats.mean[1] = 3.0  # a write in place, by hand
    assert torch.equal(stats.normalize(x), _normalized_by_formula(stats, x))
    stats.float()  # new tensors, the same values
    assert torch.equal(stats.normalize(x), _normalized_by_formula(stats, x))
    fresh = RunningMeanStd((3,))
    fresh.normalize(x)
    fresh.load_state_dict(stats.state_dict())
    assert torch.equal(fresh.normalize(x), _normalized_by_formula(stats, x))
    compiled = torch.compile(stats.normalize, backend="eager", fullgraph=True)
    assert torch.equal(compiled(x), _normalized_by_formula(stats, x))


def test_running_mean_std_normalizes_a_row_in_three_ops():
    """At rollout batch sizes each ATen op is microseconds of dispatch: once it has statistics,
    a normalisation is a subtraction, a multiplication and a clamp."""
    stats = RunningMeanStd((4,))
    stats.update(torch.randn(16, 4, dtype=torch.float64))
    row = torch.randn(1, 4)
    stats.normalize(row)
    with RecordedOps() as recorded:
        stats.normalize(row)
    assert recorded.names == ["aten.sub.Tensor", "aten.mul.Tensor", "aten.clamp.default"]


def test_normalized_policy_feeds_normalised_observations():
    torch.manual_seed(0)
    policy = NormalizedPolicy(VECTOR, DISCRETE)
    observations = torch.randn(100, 6) * 5 + 3
    policy.update_normalization(observations)
    normalised = policy.normalize(observations)
    torch.testing.assert_close(normalised.mean(0), torch.zeros(6), atol=1e-5, rtol=0)
    torch.testing.assert_close(normalised.std(0, correction=0), torch.ones(6), atol=1e-5, rtol=0)
    torch.testing.assert_close(policy(observations), policy.policy(normalised))
    assert {"obs_rms.mean", "obs_rms.var", "obs_rms.count"} <= set(policy.state_dict())
    with pytest.raises(ValueError, match="float Box"):
        NormalizedPolicy(FRAMES, DISCRETE)


def test_normalized_policy_acts_on_raw_observations_until_it_has_statistics():
    torch.manual_seed(0)
    policy = NormalizedPolicy(VECTOR, DISCRETE)
    observations = torch.randn(4, 6) * 30.0  # would be clipped to ±10 by mean 0, var 1
    torch.testing.assert_close(policy(observations), policy.policy(observations))


def test_a_recurrent_policy_needs_the_recurrent_wrapper():
    with pytest.raises(ValueError, match="normalize_observations"):
        NormalizedPolicy(VECTOR, DISCRETE, POLICIES["lstm"].cls(VECTOR, DISCRETE))
    wrapped = normalize_observations(POLICIES["lstm"].cls(VECTOR, DISCRETE), VECTOR, DISCRETE)
    assert is_recurrent(wrapped)
    check_gradients(wrapped, VECTOR)


def test_layer_init_orthogonal_weights_and_constant_bias():
    layer = layer_init(nn.Linear(64, 32), std=2.0, bias_const=0.5)
    weight = layer.weight.detach()
    # Orthogonal rows scaled by std: W Wᵀ = std² I.
    torch.testing.assert_close(weight @ weight.T, 4.0 * torch.eye(32), atol=1e-4, rtol=1e-4)
    assert torch.all(layer.bias == 0.5)


def test_layer_init_works_on_conv_and_returns_the_layer():
    conv = nn.Conv2d(3, 32, kernel_size=8, stride=4)
    assert layer_init(conv) is conv
    flat = conv.weight.detach().reshape(32, -1)
    torch.testing.assert_close(flat @ flat.T, 2.0 * torch.eye(32), atol=1e-4, rtol=1e-4)
    assert torch.all(conv.bias == 0.0)


@pytest.mark.parametrize(
    "action_space, head",
    [(gym.spaces.Discrete(3), 3), (gym.spaces.MultiDiscrete([2, 5]), 7)],
)
def test_basic_policy_shapes(action_space, head):
    space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    policy = BasicPolicy(space, action_space)
    logits, value = policy(torch.randn(32, *space.shape))
    assert logits.shape == (32, head)
    assert value.shape == (32, 1)


def test_basic_policy_every_parameter_gets_a_finite_gradient():
    space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    policy = BasicPolicy(space, gym.spaces.Discrete(2))
    obs = torch.randn(1, 4, requires_grad=True)
    logits, value = policy(obs)
    (logits.sum() + value.sum()).backward()
    for name, parameter in policy.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name


def test_basic_policy_heads_use_documented_init_scales():
    policy = BasicPolicy(gym.spaces.Box(-1, 1, (4,), np.float32), gym.spaces.Discrete(2))
    actor, critic = policy.actor.weight.detach(), policy.critic.weight.detach()
    torch.testing.assert_close(actor @ actor.T, 1e-4 * torch.eye(2), atol=1e-7, rtol=1e-4)
    torch.testing.assert_close(critic @ critic.T, torch.ones(1, 1), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["mlp", "continuous", "separate_mlp"])
def test_box_actions_start_at_the_log_std_asked_for(name):
    """``log_std_init`` (SB3's keyword) sets where the Gaussian's std starts; 0 (std 1) unless
    given, as in CleanRL; it stays a parameter the update trains."""
    observations = gym.spaces.Box(-1, 1, (4,), np.float32)
    actions = gym.spaces.Box(-1, 1, (3,), np.float32)
    default = build_policy(name, observations, actions)
    small = build_policy(name, observations, actions, policy_kwargs='{"log_std_init": -2}')
    batch = torch.randn(5, 4)
    torch.testing.assert_close(default(batch)[1], torch.ones(5, 3))
    std = small(batch)[1]
    torch.testing.assert_close(std, torch.full((5, 3), float(np.exp(-2.0))))
    std.sum().backward()
    log_stds = [p for n, p in small.named_parameters() if n.endswith("logstd")]
    assert log_stds and all(p.grad is not None for p in log_stds)


@pytest.mark.parametrize("name", ["mlp", "separate_mlp", "continuous", "lstm", "recurrent"])
def test_the_configs_starting_std_reaches_the_policies_that_take_it(name):
    """``--log-std-init`` (the MuJoCo preset sets it for Ant) is passed as ``log_std_init`` to
    a policy that takes the keyword; a ``log_std_init`` in ``--policy-kwargs`` wins, and a
    policy without the keyword keeps its own std."""
    observations = gym.spaces.Box(-1, 1, (4,), np.float32)
    actions = gym.spaces.Box(-1, 1, (3,), np.float32)

    def log_stds(policy: nn.Module) -> list[float]:
        return [float(p.mean()) for n, p in policy.named_parameters() if n.endswith("logstd")]

    assert log_stds(build_policy(name, observations, actions, log_std_init=-1.0)) == [-1.0]
    kwargs = '{"log_std_init": -2}'
    given = build_policy(name, observations, actions, policy_kwargs=kwargs, log_std_init=-1.0)
    assert log_stds(given) == [-2.0]
    assert log_stds(build_policy("residual", observations, actions, log_std_init=-1.0)) == [0.0]
