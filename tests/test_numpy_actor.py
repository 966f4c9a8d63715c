"""The numpy actor acts as the torch adapter does, follows the weights, and the rollout uses it."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info

from policies.normalize import normalize_observations
from puffertrain.buffer import RolloutBuffer
from puffertrain.engine import make_engine
from puffertrain.policy_loader import build_policy
from puffertrain.ppo import PolicyAdapter
from puffertrain.ppo.numpy_actor import NumpyActor
from puffertrain.rollout import Rollout

OBSERVATIONS = gym.spaces.Box(-5, 5, (5,), dtype=np.float64)

CASES = [
    ("mlp", gym.spaces.Discrete(3)),
    ("separate_mlp", gym.spaces.Discrete(4)),
    ("mlp", gym.spaces.MultiDiscrete([2, 3])),
    ("continuous", gym.spaces.Box(-1, 1, (2,))),
    ("separate_mlp", gym.spaces.Box(-1, 1, (3,))),
]


def adapter_for(name: str, action_space: gym.spaces.Space, normalized: bool) -> PolicyAdapter:
    torch.manual_seed(0)
    policy = build_policy(name, OBSERVATIONS, action_space)
    if normalized:
        policy = normalize_observations(policy, OBSERVATIONS, action_space)
        policy.update_normalization(torch.randn(50, 5) * 3 + 1)
    return PolicyAdapter(policy, action_space)


def both_paths(adapter: PolicyAdapter, observations: np.ndarray, deterministic: bool, **masks):
    """The torch adapter's and the numpy actor's ``(actions, log_probs, values)`` from the
    same generator state, and whether both left the generator in the same state."""
    torch.manual_seed(7)
    with torch.no_grad():
        mask = masks.get("mask")
        torch_mask = None if mask is None else torch.from_numpy(mask)
        obs = torch.from_numpy(observations).float()
        torch_out = adapter.act(obs, None, deterministic, None, torch_mask)[:3]
    after_torch = torch.get_rng_state()
    torch.manual_seed(7)
    numpy_out = NumpyActor.of(adapter).act(observations, deterministic, mask)
    same_draws = torch.equal(after_torch, torch.get_rng_state())
    return [t.numpy() for t in torch_out], numpy_out, same_draws


@pytest.mark.parametrize("rows", [1, 64])  # a softmax's normaliser is computed two ways by size
@pytest.mark.parametrize("normalized", [False, True])
@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize(("name", "action_space"), CASES)
def test_numpy_actor_acts_as_the_torch_adapter(name, action_space, deterministic, normalized, rows):
    adapter = adapter_for(name, action_space, normalized)
    observations = np.random.default_rng(1).normal(size=(rows, 5)) * 4
    (actions, log_probs, values), numpy_out, same_draws = both_paths(
        adapter, observations, deterministic
    )
    np.testing.assert_allclose(numpy_out[0], actions, rtol=0, atol=1e-6)
    np.testing.assert_allclose(numpy_out[1], log_probs, rtol=0, atol=1e-5)
    np.testing.assert_allclose(numpy_out[2], values, rtol=0, atol=1e-5)
    assert numpy_out[0].dtype == actions.dtype and numpy_out[1].dtype == np.float32
    assert same_draws  # the same random numbers: a resumed run draws what the torch path would


def test_numpy_actor_samples_only_allowed_actions():
    adapter = adapter_for("mlp", gym.spaces.Discrete(4), normalized=False)
    mask = np.zeros((64, 4), dtype=bool)
    mask[:, 2] = True
    mask[::2, 0] = True
    observations = np.random.default_rng(2).normal(size=(64, 5))
    for rows in (slice(0, 64), slice(0, 1)):  # the normaliser of many logits, then of few
        (actions, log_probs, _), numpy_out, _ = both_paths(
            adapter, observations[rows], False, mask=mask[rows]
        )
        assert mask[rows][np.arange(len(actions)), numpy_out[0]].all()
        np.testing.assert_array_equal(numpy_out[0], actions)
        np.testing.assert_allclose(numpy_out[1], log_probs, atol=1e-5)


def test_numpy_actor_follows_the_parameters_from_each_refresh_and_the_statistics_always():
    adapter = adapter_for("separate_mlp", gym.spaces.Discrete(3), normalized=True)
    actor = NumpyActor.of(adapter)
    observations = np.random.default_rng(3).normal(size=(8, 5))

    def agrees() -> bool:
        with torch.no_grad():
            obs = torch.from_numpy(observations).float()
            expected = adapter.act(obs, None, True)[2].numpy()
        return np.allclose(actor.act(observations, True)[2], expected, atol=1e-5)

    assert agrees()
    with torch.no_grad():  # in place, as the optimizer writes
        adapter.policy.policy.critic.weight.add_(1.0)
    assert not agrees()  # a copy: the rollout refreshes it as it starts acting
    actor.refresh()
    assert agrees()
    critic = adapter.policy.policy.critic
    critic.weight.data = critic.weight.detach() * 2  # new memory, as the flat optimizer moves it
    critic.bias.data = torch.full_like(critic.bias, 3.0)
    actor.refresh()
    assert agrees()
    adapter.policy.load_state_dict({k: v * 0.5 for k, v in adapter.policy.state_dict().items()})
    actor.refresh()
    assert agrees()
    adapter.policy.update_normalization(torch.randn(20, 5) * 10)
    assert agrees()  # the statistics are read at every step


def test_the_rollout_acts_with_the_parameters_as_they_are_when_it_starts_acting():
    engine, _ = make_engine("serial", "CartPole-v1", 2, {})
    policy = build_policy(
        "separate_mlp", engine.policy_observation_space, engine.single_action_space
    )
    adapter = PolicyAdapter(policy, engine.single_action_space)
    rollout = Rollout(engine, adapter, torch.device("cpu"))
    rollout.reset(0)
    observations = rollout.observations.copy()
    with torch.no_grad():
        policy.critic.bias.add_(5.0)
    with rollout.acting():
        values = rollout._values(observations, np.arange(2))
    with torch.no_grad():
        expected = adapter.value(torch.from_numpy(observations)).numpy()
    engine.close()
    np.testing.assert_allclose(values, expected, atol=1e-5)


def test_the_rollout_outside_acting_acts_with_the_parameters_as_they_are_now():
    """The numpy actor's copy is taken when acting starts; a step sent outside that region
    acts by the torch path, so a parameter change since is never missed."""
    engine, _ = make_engine("serial", "CartPole-v1", 2, {})
    policy = build_policy("mlp", engine.policy_observation_space, engine.single_action_space)
    rollout = Rollout(
        engine, PolicyAdapter(policy, engine.single_action_space), torch.device("cpu")
    )
    rollout.reset(0)
    with rollout.acting():  # the copy is taken here
        pass
    sent = []
    engine.send = lambda actions, row_ids: sent.append(np.asarray(actions).tolist())
    for favoured in (0, 1):
        with torch.no_grad():
            policy.actor.bias.copy_(torch.tensor([10.0, -10.0]) * (1 - 2 * favoured))
        rollout.send(np.arange(2), deterministic=True)
    engine.close()
    assert sent == [[0, 0], [1, 1]]


def test_no_numpy_actor_for_a_recurrent_policy():
    policy = build_policy("lstm", OBSERVATIONS, gym.spaces.Discrete(2))
    assert NumpyActor.of(PolicyAdapter(policy, gym.spaces.Discrete(2))) is None


def test_no_numpy_actor_under_autocast():
    policy = build_policy("mlp", OBSERVATIONS, gym.spaces.Discrete(2))
    adapter = PolicyAdapter(policy, gym.spaces.Discrete(2), autocast_dtype=torch.bfloat16)
    assert NumpyActor.of(adapter) is None


def collected(numpy_actor: bool) -> tuple[RolloutBuffer, int]:
    """A CartPole rollout of 4 envs × 32 steps from seed 0, and the BLAS threads numpy had
    while acting."""
    engine, _ = make_engine("serial", "CartPole-v1", 4, {})
    torch.manual_seed(0)
    policy = build_policy("mlp", engine.policy_observation_space, engine.single_action_space)
    adapter = PolicyAdapter(policy, engine.single_action_space)
    rollout = Rollout(engine, adapter, torch.device("cpu"))
    assert rollout.numpy_actor is not None
    if not numpy_actor:
        rollout.numpy_actor = None
    buffer = RolloutBuffer(
        32, 4, engine.policy_observation_space, engine.single_action_space, torch.device("cpu")
    )
    rollout.reset(0)
    rollout.collect(buffer)
    with rollout.acting():
        blas = [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]
    engine.close()
    assert rollout.acting_threads == 1
    return buffer, max(blas, default=1)


def test_the_rollout_acts_in_numpy_and_fills_the_same_buffer():
    from_numpy, blas_threads = collected(numpy_actor=True)
    from_torch, _ = collected(numpy_actor=False)
    torch.testing.assert_close(from_numpy.actions, from_torch.actions, rtol=0, atol=0)
    torch.testing.assert_close(from_numpy.observations, from_torch.observations)
    torch.testing.assert_close(from_numpy.rewards, from_torch.rewards)
    torch.testing.assert_close(from_numpy.log_probs, from_torch.log_probs, rtol=0, atol=1e-5)
    torch.testing.assert_close(from_numpy.values, from_torch.values, rtol=0, atol=1e-5)
    assert blas_threads == 1  # numpy's BLAS keeps to the acting threads: no spinning second


def test_training_acts_with_the_parameters_the_update_changed(tmp_path):
    """The learner keeps the parameters in flat tensors and updates them in place between
    rollouts: each rollout's stored values are the policy's values as they are then."""
    from puffertrain.config import TrainConfig
    from puffertrain.trainer.loop import Trainer

    config = TrainConfig(env="CartPole-v1", policy="mlp", num_envs=2, num_steps=16)
    trainer = Trainer(config, tmp_path, None)
    assert trainer.rollout.numpy_actor is not None
    buffer, adapter = trainer.buffer, trainer.adapter
    for _ in range(2):
        trainer.rollout.collect(buffer)
        with torch.no_grad():
            values = adapter.value(buffer.observations.reshape(32, 4)).reshape(16, 2)
        torch.testing.assert_close(buffer.values, values, rtol=0, atol=1e-5)
        buffer.compute_advantages(trainer.rollout.bootstrap_values(), 0.99, 0.95)
        trainer.learner.update(buffer, 1e-2)
