"""The loss's hand-written gradients are autograd's: the PPO objective against CleanRL's formula
through autograd, and the categorical score by finite differences."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from puffertrain.config import PPOConfig
from puffertrain.ppo.adapter import CategoricalScore, mask_logits
from puffertrain.ppo.loss import STATISTICS, ClippedObjective, masked_mean


def cleanrl_loss(new_log_probs, entropy, new_values, old_log_probs, advantages, returns,
                 old_values, mask, config):  # fmt: skip
    """CleanRL's ppo.py loss, every op through autograd: the reference."""
    log_ratio = new_log_probs - old_log_probs
    ratio = log_ratio.exp()
    clip = config.clip_coef
    surrogate = torch.min(advantages * ratio, advantages * ratio.clamp(1 - clip, 1 + clip))
    policy_loss = -masked_mean(surrogate, mask)
    value_error = (new_values - returns) ** 2
    if config.clip_vloss:
        clipped = old_values + (new_values - old_values).clamp(-clip, clip)
        value_error = torch.max(value_error, (clipped - returns) ** 2)
    value_loss = 0.5 * masked_mean(value_error, mask)
    entropy_loss = masked_mean(entropy, mask)
    loss = policy_loss + config.vf_coef * value_loss - config.ent_coef * entropy_loss
    statistics = {
        "policy_loss": policy_loss,
        "value_loss": value_loss,
        "entropy": entropy_loss,
        "old_approx_kl": -masked_mean(log_ratio, mask),
        "approx_kl": masked_mean(ratio - 1 - log_ratio, mask),
        "clipfrac": masked_mean(((ratio - 1).abs() > clip).double(), mask),
    }
    return loss, statistics


def minibatch(rows: int, masked: bool, generator: torch.Generator) -> list[torch.Tensor | None]:
    """Inputs where about half the ratios and value moves fall outside the clip range."""

    def normal(scale: float = 1.0) -> torch.Tensor:
        return torch.randn(rows, dtype=torch.float64, generator=generator) * scale

    mask = (torch.rand(rows, generator=generator) > 0.3).double() if masked else None
    new_values = normal().requires_grad_()
    old_values = (new_values.detach() + normal(0.4)).requires_grad_(False)
    return [
        normal(0.5).requires_grad_(),  # new log-probs: ratios of e^(±0.5) around the old
        normal().abs().requires_grad_(),  # entropies
        new_values,
        normal(0.01),  # old log-probs
        normal(),  # advantages
        normal(),  # returns
        old_values,
        mask,
    ]


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("clip_vloss", [False, True])
@pytest.mark.parametrize("ent_coef", [0.0, 0.01])
def test_objective_matches_autograd_through_cleanrls_formula(masked, clip_vloss, ent_coef):
    config = PPOConfig(clip_vloss=clip_vloss, ent_coef=ent_coef, vf_coef=0.7)
    generator = torch.Generator().manual_seed(int(masked) * 4 + int(clip_vloss) * 2)
    inputs = minibatch(257, masked, generator)
    differentiable = inputs[:3]

    loss, *statistics = ClippedObjective.apply(*inputs, config)
    gradients = torch.autograd.grad(loss, differentiable, allow_unused=True)
    expected_loss, expected = cleanrl_loss(*inputs, config)
    expected_gradients = torch.autograd.grad(expected_loss, differentiable, allow_unused=True)

    torch.testing.assert_close(loss, expected_loss)
    for name, value in zip(STATISTICS, statistics, strict=True):
        torch.testing.assert_close(value, expected[name].detach(), msg=name)
    for name, mine, reference in zip(
        ("log-probs", "entropy", "values"), gradients, expected_gradients, strict=True
    ):
        if ent_coef == 0 and name == "entropy":  # no gradient reaches the entropies at all
            assert mine is None
            continue
        torch.testing.assert_close(mine, reference, msg=name)
    clipped = float(statistics[STATISTICS.index("clipfrac")])
    assert 0.2 < clipped < 0.8, "the inputs must exercise both sides of the clip"


def test_objective_scales_by_the_incoming_gradient():
    config = PPOConfig(ent_coef=0.01)
    inputs = minibatch(64, True, torch.Generator().manual_seed(3))
    loss, *_ = ClippedObjective.apply(*inputs, config)
    once = torch.autograd.grad(loss, inputs[:3], retain_graph=True)
    thrice = torch.autograd.grad(3 * loss, inputs[:3])
    for single, tripled in zip(once, thrice, strict=True):
        torch.testing.assert_close(3 * single, tripled)


class RecordedOps(TorchDispatchMode):
    """The ATen ops run inside the mode, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("masked", [False, True])
def test_objective_builds_no_tensor_from_python_data(masked):
    """``torch.tensor(...)`` on a GPU is a host-to-device copy that waits for the queue: at
    every minibatch it would stall the update's overlap of CPU and GPU."""
    inputs = minibatch(64, masked, torch.Generator().manual_seed(5))
    with RecordedOps() as recorded:
        loss, *_ = ClippedObjective.apply(*inputs, PPOConfig(ent_coef=0.01, clip_vloss=True))
        loss.backward()
    assert "aten.lift_fresh.default" not in recorded.names
    assert "aten.sum.dim_IntList" in recorded.names  # the mode did see the objective's ops


@pytest.mark.parametrize("masked", [False, True])
def test_categorical_score_gradients_by_finite_differences(masked):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 5, dtype=torch.float64, generator=generator, requires_grad=True)
    allowed = torch.rand(16, 5, generator=generator) > 0.4
    allowed[torch.arange(16), torch.randint(0, 5, (16,), generator=generator)] = True
    actions = torch.multinomial(allowed.double(), 1, generator=generator).squeeze(-1)

    def score(raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return CategoricalScore.apply(raw, actions, allowed if masked else None, None)

    assert torch.autograd.gradcheck(score, (logits,))
    log_prob, entropy = score(logits)
    (log_prob.sum() + entropy.sum()).backward()
    assert torch.isfinite(logits.grad).all()
    if masked:  # forbidden actions get no gradient at all
        assert (logits.grad[~allowed] == 0).all()
    # autograd through the same math, masked outside the function, agrees
    reference = logits.detach().clone().requires_grad_()
    log_p = torch.log_softmax(mask_logits(reference, allowed if masked else None), -1)
    reference_entropy = -(log_p.exp() * log_p).sum(-1)
    reference_log_prob = log_p.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    (reference_log_prob.sum() + reference_entropy.sum()).backward()
    torch.testing.assert_close((log_prob, entropy), (reference_log_prob, reference_entropy))
    torch.testing.assert_close(logits.grad, reference.grad)
