"""The learner's flat gradient clipping and Adam step are torch's (Adam bit for bit), and
its KL limit ends an update where SB3's does."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import pytest
import torch
import torch.nn as nn

from puffertrain.buffer import RolloutBuffer
from puffertrain.config import PPOConfig
from puffertrain.ppo.flat_parameters import FlatParameters
from puffertrain.ppo.learner import Learner
from tests.conftest import run_cli
from tests.test_normalization import RESUME_ARGS, RESUME_ITERATIONS
from tests.test_resume import assert_same_run, resume_after_a_crash, scalars


def _flat_and_reference(shapes, lr=3e-4, flat=True):
    """The same parameters twice: one set in :class:`FlatParameters` (flat, or per parameter
    as on a GPU) with its optimizer, the other with a plain torch fused Adam."""
    torch.manual_seed(0)
    ours = [nn.Parameter(torch.randn(shape)) for shape in shapes]
    theirs = [nn.Parameter(parameter.detach().clone()) for parameter in ours]
    mine = torch.optim.Adam(ours, lr=lr, eps=1e-5, fused=True)
    reference = torch.optim.Adam(theirs, lr=lr, eps=1e-5, fused=True)
    return ours, FlatParameters(ours, mine, flat), theirs, reference


def _same_gradients(ours, theirs, skip=()):
    """Fresh random gradients, the same on both sets; none for the indices in ``skip``."""
    for index, (own, other) in enumerate(zip(ours, theirs, strict=True)):
        own.grad = None if index in skip else torch.randn_like(own)
        other.grad = None if own.grad is None else own.grad.clone()


@pytest.mark.parametrize("flat_path", [True, False])
@pytest.mark.parametrize("scale", [1e-3, 10.0])  # a norm under and over max_norm
def test_clip_and_step_is_torchs_clip_then_adam(scale, flat_path):
    shapes = ((64, 4), (64,), (2, 64), (1,))
    ours, flat, theirs, reference = _flat_and_reference(shapes, flat=flat_path)
    flat.zero_grad()
    _same_gradients(ours, theirs)
    for parameter in ours:
        parameter.grad.mul_(scale)
    for parameter in theirs:
        parameter.grad.mul_(scale)
    norm = flat.clip_and_step(0.5)
    expected = nn.utils.clip_grad_norm_(theirs, 0.5)
    reference.step()
    torch.testing.assert_close(norm, expected)  # the same sum, in another order
    for mine, other in zip(ours, theirs, strict=True):
        torch.testing.assert_close(mine, other)
    assert (norm > 0.5) == (scale > 1)


@pytest.mark.parametrize("flat_path", [True, False])
def test_adam_is_torchs_bit_for_bit_across_a_checkpoint_of_either(flat_path):
    shapes = ((64, 4), (64,), (2, 64))
    ours, flat, theirs, reference = _flat_and_reference(shapes, flat=flat_path)
    for step in range(6):
        if step == 2:  # resumed from a checkpoint of the plain optimizer
            flat.optimizer.load_state_dict(reference.state_dict())
        if step == 4:  # and the plain one from a checkpoint of the flat one
            reference.load_state_dict(flat.optimizer.state_dict())
        flat.zero_grad()
        _same_gradients(ours, theirs)
        for group in (*flat.optimizer.param_groups, *reference.param_groups):
            group["lr"] = 3e-4 * (1 - step / 6)
        flat.clip_and_step(1e9)  # the clip's factor is exactly 1
        reference.step()
        for own, other in zip(ours, theirs, strict=True):
            assert torch.equal(own, other)
        assert (flat.shared_step is not None) == flat_path  # every step took one path
    saved = flat.optimizer.state_dict()["state"]
    assert saved.keys() == reference.state_dict()["state"].keys()
    assert [float(state["step"]) for state in saved.values()] == [6.0] * len(shapes)


@pytest.mark.parametrize("flat_path", [True, False])
def test_a_parameter_without_a_gradient_is_skipped_as_torchs_adam_skips_it(flat_path):
    """A multi-agent policy's adapter that no row of a minibatch reached: it keeps its value,
    moments and step count, before and after a checkpoint, exactly as with torch's Adam."""
    shapes = ((8, 3), (8,), (2, 8))
    ours, flat, theirs, reference = _flat_and_reference(shapes, flat=flat_path)
    for step in range(7):
        if step == 5:  # resumed with unequal step counts
            flat.optimizer.load_state_dict(reference.state_dict())
        flat.zero_grad()
        _same_gradients(ours, theirs, skip=(1,) if step in (2, 3) else ())
        flat.clip_and_step(1e9)
        reference.step()
        for own, other in zip(ours, theirs, strict=True):
            assert torch.equal(own, other)
    assert flat.shared_step is None
    steps = [float(state["step"]) for state in flat.optimizer.state_dict()["state"].values()]
    assert steps == [7.0, 5.0, 7.0]


def test_a_frozen_parameter_stays_put_and_in_the_optimizers_state():
    """A policy's frozen parameter gets no gradient: it never moves, and the optimizer still
    lists it, as the optimizer states of existing checkpoints do."""
    trained, frozen = nn.Parameter(torch.zeros(3)), nn.Parameter(torch.ones(2), requires_grad=False)
    buffer = RolloutBuffer(
        8, 2, gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2), torch.device("cpu")
    )
    learner = Learner(nn.ParameterList([trained, frozen]), PPOConfig(num_minibatches=2))
    learner.objective = VaryingObjective(trained)
    learner.update(buffer, learning_rate=0.1)
    assert torch.equal(frozen, torch.ones(2)) and not torch.equal(trained, torch.zeros(3))
    assert learner.optimizer.state_dict()["param_groups"][0]["params"] == [0, 1]


def test_mixed_dtypes_take_the_per_parameter_path_unless_flat_is_asked_for():
    parameters = [nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2, dtype=torch.float64))]
    assert not FlatParameters(parameters, torch.optim.Adam(parameters, fused=True)).flat
    with pytest.raises(ValueError, match="one dtype and device"):
        FlatParameters(parameters, torch.optim.Adam(parameters, fused=True), flat=True)


@pytest.mark.parametrize(("shape", "flat"), [((64, 64), True), ((512, 512), False)])
def test_the_flat_path_is_the_default_for_small_tensors_on_the_cpu(shape, flat):
    parameters = [nn.Parameter(torch.zeros(shape)), nn.Parameter(torch.zeros(shape[0]))]
    assert FlatParameters(parameters, torch.optim.Adam(parameters, fused=True)).flat == flat


class ScriptedObjective:
    """Stands in for the PPO loss: each minibatch's approx KL comes from ``kls`` in turn."""

    def __init__(self, parameter: nn.Parameter, kls: list[float]) -> None:
        self.parameter, self.kls = parameter, iter(kls)

    def __call__(self, minibatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.parameter.sum(), {"approx_kl": torch.tensor(next(self.kls))}


@pytest.mark.parametrize(
    ("target_kl", "kls", "steps"),
    [
        # 0.09 > 1.5 x 0.05 on the third minibatch of the first epoch: two steps, not an epoch's 4
        (0.05, [0.0, 0.01, 0.09] + [0.0] * 9, 2),
        (0.05, [0.0, 0.01, 0.07, 0.074] + [0.0] * 4 + [0.2] * 4, 8),  # 0.074 is within 1.5 x
        (0.05, [0.1] + [0.0] * 11, 0),  # past the limit before any step
        (None, [5.0] * 12, 12),
    ],
)
def test_target_kl_ends_the_update_at_the_first_minibatch_past_its_limit(target_kl, kls, steps):
    weight = nn.Parameter(torch.zeros(3))
    buffer = RolloutBuffer(
        8, 2, gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2), torch.device("cpu")
    )
    config = PPOConfig(num_minibatches=4, update_epochs=3, target_kl=target_kl)
    learner = Learner(nn.ParameterList([weight]), config)
    learner.objective = ScriptedObjective(weight, kls)
    results = learner.update(buffer, learning_rate=0.1)
    assert int(learner.optimizer.state[weight].get("step", 0)) == steps
    assert results["approx_kl"] == pytest.approx(sum(kls[: steps + 1]) / min(steps + 1, 12))
    if target_kl is None:
        assert "steps_fraction" not in results
    else:
        assert results["steps_fraction"] == steps / 12


class VaryingObjective:
    """A loss whose gradient is a fresh random vector every minibatch (Adam's moments then
    depend on its decay rates, which a constant gradient would hide)."""

    def __init__(self, parameter: nn.Parameter) -> None:
        self.parameter, self.generator = parameter, torch.Generator().manual_seed(0)

    def __call__(self, minibatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        direction = torch.randn(self.parameter.shape, generator=self.generator)
        return (self.parameter * direction).sum(), {"approx_kl": torch.tensor(0.0)}


@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.99, 0.99)])
def test_adam_betas_reach_the_optimizer(betas):
    buffer = RolloutBuffer(
        8, 2, gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2), torch.device("cpu")
    )
    config = PPOConfig(num_minibatches=4, update_epochs=3, adam_betas=betas, max_grad_norm=1e9)
    weight = nn.Parameter(torch.zeros(3))
    learner = Learner(nn.ParameterList([weight]), config)
    learner.objective = VaryingObjective(weight)
    for _ in range(3):
        learner.update(buffer, learning_rate=0.1)
    trajectories = {}
    for reference_betas in ((0.9, 0.999), (0.99, 0.99)):
        reference = nn.Parameter(torch.zeros(3))
        adam = torch.optim.Adam([reference], lr=0.1, betas=reference_betas, eps=1e-5)
        objective = VaryingObjective(reference)
        for _ in range(3 * 12):
            adam.zero_grad()
            objective(None)[0].backward()
            adam.step()
        trajectories[reference_betas] = reference.detach()
    assert torch.allclose(weight.detach(), trajectories[betas], atol=1e-6)
    other = next(value for key, value in trajectories.items() if key != betas)
    assert not torch.allclose(weight.detach(), other, atol=1e-3)


def test_adaptive_lr_kl_lowers_the_rate_while_updates_run_hot_and_a_checkpoint_keeps_it():
    weight = nn.Parameter(torch.zeros(3))
    buffer = RolloutBuffer(
        8, 2, gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2), torch.device("cpu")
    )
    config = PPOConfig(
        learning_rate=0.1, anneal_lr=False, num_minibatches=2, update_epochs=1, adaptive_lr_kl=0.2
    )
    learner = Learner(nn.ParameterList([weight]), config)
    # each update's two minibatches share a KL: hot, hot, in the band, cool, cool, cool
    kls = [0.3, 0.5, 0.15, 0.05, 0.01, 0.0]
    learner.objective = ScriptedObjective(weight, [kl for kl in kls for _ in range(2)])
    rates = []
    for _ in kls:
        rates.append(learner.learning_rate(1, 10))
        learner.update(buffer, rates[-1])
    assert rates == pytest.approx([0.1, 0.1 / 1.5, 0.1 / 1.5**2, 0.1 / 1.5**2, 0.1 / 1.5, 0.1])
    assert learner.lr_scale == 1.0  # never above the schedule
    learner.objective = ScriptedObjective(weight, [0.9, 0.9])
    learner.update(buffer, learner.learning_rate(1, 10))
    resumed = Learner(nn.ParameterList([weight]), config)
    resumed.optimizer.load_state_dict(learner.optimizer.state_dict())
    assert resumed.learning_rate(6, 10) == pytest.approx(0.1 / 1.5)
    without = Learner(nn.ParameterList([weight]), dataclasses.replace(config, adaptive_lr_kl=None))
    without.objective = ScriptedObjective(weight, [0.9, 0.9])
    without.update(buffer, 0.1)
    assert without.learning_rate(1, 10) == 0.1


def test_a_run_whose_rate_adapts_resumes_exactly(tmp_path):
    """The factor is part of the checkpoint: a run resumed after a crash logs the same rates
    and ends with the same weights as one that went on."""
    args = [*RESUME_ARGS, "--adaptive-lr-kl", "1e-5"]  # under every update's KL: it binds
    uninterrupted = tmp_path / "uninterrupted"
    result = run_cli(*args, "--run-dir", str(uninterrupted))
    assert result.returncode == 0, result.stderr
    rates = [rate for _, rate in scalars(uninterrupted)["charts/learning_rate"]]
    schedule = [rates[0] * (1 - update / RESUME_ITERATIONS) for update in range(RESUME_ITERATIONS)]
    assert any(rate < planned * 0.99 for rate, planned in zip(rates, schedule, strict=True))
    resume_after_a_crash(uninterrupted, tmp_path / "crashed", 4)
    assert_same_run(tmp_path / "crashed", uninterrupted, updates=RESUME_ITERATIONS)
