"""The learner's own gradient clipping is torch's, bitwise."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from puffertrain.ppo.learner import clip_grad_norm


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
