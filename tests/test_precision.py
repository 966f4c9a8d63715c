"""--precision: bf16 autocast where the device has it, fp32 everywhere the loss looks."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from policies.cnn import CNNPolicy
from policies.mlp import BasicPolicy
from puffertrain.bench import BenchConfig, bench
from puffertrain.cli import main
from puffertrain.config import TrainConfig
from puffertrain.errors import UserError
from puffertrain.ppo import PolicyAdapter
from puffertrain.ppo import precision as precision_module
from puffertrain.ppo.precision import has_fast_bf16, resolve_precision
from puffertrain.rollout import rollout as rollout_module
from puffertrain.trainer.loop import Trainer
from tests.test_learning import best_mean_return, cartpole_args

CPU = torch.device("cpu")
native_bf16 = pytest.mark.skipif(not has_fast_bf16(CPU), reason="this CPU has no native bf16")


def test_fp32_is_plain_and_auto_follows_the_hardware(monkeypatch):
    assert resolve_precision("fp32", CPU)[0] is None
    monkeypatch.setattr(precision_module, "has_fast_bf16", lambda device: False)
    dtype, reason = resolve_precision("auto", CPU)
    assert dtype is None and "no native bf16" in reason
    with pytest.raises(UserError, match=r"--precision bf16: .* no native bfloat16"):
        resolve_precision("bf16", CPU)
    monkeypatch.setattr(precision_module, "has_fast_bf16", lambda device: True)
    assert resolve_precision("auto", CPU)[0] is torch.bfloat16
    assert resolve_precision("bf16", CPU)[0] is torch.bfloat16


@pytest.mark.parametrize("policy_class", [BasicPolicy, CNNPolicy])
def test_bf16_agent_gives_float32_outputs_close_to_fp32_and_float32_gradients(policy_class):
    """bf16 autocast on CPU works whatever the hardware (emulated where not native)."""
    if policy_class is CNNPolicy:
        space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
        obs = torch.randint(0, 255, (16, 4, 84, 84), dtype=torch.uint8)
    else:
        space = gym.spaces.Box(-1, 1, (6,), np.float32)
        obs = torch.rand(16, 6) * 2 - 1
    torch.manual_seed(0)
    policy = policy_class(space, gym.spaces.Discrete(4))
    fp32 = PolicyAdapter(policy, gym.spaces.Discrete(4))
    bf16 = PolicyAdapter(policy, gym.spaces.Discrete(4), torch.bfloat16)
    actions = torch.randint(0, 4, (16,))
    expected = fp32.evaluate(obs, actions)
    got = bf16.evaluate(obs, actions)
    for exact, mixed in zip(expected, got, strict=True):
        assert mixed.dtype == torch.float32
        torch.testing.assert_close(mixed, exact, atol=0.05, rtol=0.05)
    log_probs, entropy, values = got
    (log_probs.mean() + entropy.mean() + values.pow(2).mean()).backward()
    assert all(p.grad.dtype == torch.float32 for p in policy.parameters())
    with torch.no_grad():
        _, log_prob, value, _ = bf16.act(obs)
    assert log_prob.dtype == value.dtype == torch.float32


def test_channels_last_in_the_update_computes_what_the_rollout_computes():
    """Images go channels-last in memory when gradients are on: same numbers either way."""
    torch.manual_seed(0)
    policy = CNNPolicy(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), gym.spaces.Discrete(4))
    obs = torch.randint(0, 255, (8, 4, 84, 84), dtype=torch.uint8)
    with torch.no_grad():
        rollout = policy(obs)
    update = policy(obs)
    for a, b in zip(rollout, update, strict=True):
        torch.testing.assert_close(a, b.detach(), atol=1e-5, rtol=1e-5)


@pytest.mark.slow
@native_bf16
def test_bf16_cartpole_reaches_475_within_100k_steps(tmp_path):
    """The core learning test's budget and threshold, in bf16."""
    main([*cartpole_args(tmp_path / "bf16"), "--precision", "bf16"])
    best = best_mean_return(tmp_path / "bf16")
    assert best >= 475, f"best mean return over 20 episodes: {best:.1f}"


def test_bench_runs_the_policy_in_the_precision_asked_for(tmp_path, monkeypatch):
    """``bench --precision`` measures the rollout as the trainer runs it (the Atari preset
    acts in bf16, in one autocast region per rollout), and says so in its table and JSON."""
    monkeypatch.setattr(precision_module, "has_fast_bf16", lambda device: True)
    dtypes = set()
    regions = []  # per precision region entered: was one already open (a policy call in it)?
    autocast = PolicyAdapter.autocast

    def recording_autocast(self, device):
        dtypes.add(self.autocast_dtype)
        regions.append(torch.is_autocast_enabled(device.type))
        return autocast(self, device)

    monkeypatch.setattr(PolicyAdapter, "autocast", recording_autocast)
    # the rollout counts its policy's FLOPs once when built, a call before any measurement
    monkeypatch.setattr(rollout_module, "policy_flops_per_row", lambda *parts: 1)
    for precision, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        dtypes.clear()
        regions.clear()
        output = tmp_path / f"{precision}.json"
        results = bench(
            BenchConfig(
                env="CartPole-v1",
                vec="serial",
                num_envs=4,
                seconds=0.2,
                windows=1,
                policy="mlp",
                precision=precision,
                output=output,
            )
        )
        assert dtypes == {dtype}
        if dtype is not None:  # one outer region, every policy call inside it
            assert regions.count(False) == 1 and regions.count(True) > 10
        assert results["policy_precision"].startswith(precision)
        assert results["rows"][0]["rollout_sps"] > 0


class _WeightCasts(TorchDispatchMode):
    """Counts dtype conversions of the given tensors' storage (autocast's weight casts)."""

    def __init__(self, tensors: list[torch.Tensor]) -> None:
        super().__init__()
        self.pointers = {tensor.data_ptr() for tensor in tensors}
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._to_copy.default and args[0].data_ptr() in self.pointers:
            self.count += 1
        return func(*args, **kwargs or {})


def test_bf16_rollout_casts_each_weight_once_not_at_every_step(tmp_path, monkeypatch):
    """The rollout runs in one autocast region, so autocast's cache casts the fp32 weights
    to bf16 once per rollout (a cast of every weight at every step cost ~15% of a Nature-CNN
    act at batch 8)."""
    monkeypatch.setattr(precision_module, "has_fast_bf16", lambda device: True)
    config = TrainConfig(
        env="CartPole-v1", policy="mlp", num_envs=2, num_steps=16, precision="bf16"
    )
    trainer = Trainer(config, tmp_path, None)
    try:
        parameters = list(trainer.adapter.parameters())
        with _WeightCasts(parameters) as casts:
            trainer.rollout.collect(trainer.buffer)
    finally:
        trainer.engine.close()
    assert 0 < casts.count <= len(parameters)
