"""The learner's own gradient clipping and Adam step are torch's, bitwise."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from puffertrain.ppo.learner import adam_step, clip_grad_norm


@pytest.mark.parametrize("scale", [1e-3, 10.0])  # a norm under and over max_norm
def test_gradient_clipping_is_torchs_bit_for_bit(scale):
    torch.manual_seed(0)
    ours = [nn.Parameter(torch.randn(shape)) for shape in ((64, 4), (64,), (2, 64), (1,))]
    theirs = [nn.Parameter(parameter.detach().clone()) for parameter in ours]
    for mine, reference in zip(ours[:-1], theirs[:-1], strict=True):  # the last gets no grad
        mine.grad = torch.randn_like(mine) * scale
        reference.grad = mine.grad.clone()
    norm = clip_grad_norm(ours, 0.5)
    expected = nn.utils.clip_grad_norm_(theirs, 0.5)
    assert torch.equal(norm, expected)
    for mine, reference in zip(ours[:-1], theirs[:-1], strict=True):
        assert torch.equal(mine.grad, reference.grad)
    assert ours[-1].grad is None
    assert (norm > 0.5) == (scale > 1)


def test_adam_step_is_the_optimizers_bit_for_bit_across_a_checkpoint():
    torch.manual_seed(0)
    shapes = ((64, 4), (64,), (2, 64))
    ours = [nn.Parameter(torch.randn(shape)) for shape in shapes]
    theirs = [nn.Parameter(parameter.detach().clone()) for parameter in ours]

    def adam(parameters):
        return torch.optim.Adam(parameters, lr=3e-4, eps=1e-5, fused=True)

    mine, reference = adam(ours), adam(theirs)
    for step in range(6):
        if step == 3:  # a resumed run: fresh optimizers from a checkpoint of the state
            mine, reference = adam(ours), adam(theirs)
            mine.load_state_dict(reference.state_dict())
            reference.load_state_dict(reference.state_dict())
        for index, (own, other) in enumerate(zip(ours, theirs, strict=True)):
            own.grad = None if (step, index) == (4, 1) else torch.randn_like(own)
            other.grad = None if own.grad is None else own.grad.clone()
        for group in (*mine.param_groups, *reference.param_groups):
            group["lr"] = 3e-4 * (1 - step / 6)
        adam_step(mine, ours)
        reference.step()
        for own, other in zip(ours, theirs, strict=True):
            assert torch.equal(own, other)
    assert mine.state_dict()["state"].keys() == reference.state_dict()["state"].keys()
