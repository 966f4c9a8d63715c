"""Temporally correlated ("colored") Gaussian noise for sampling continuous actions.

A Gaussian policy's action is ``mean + std * noise``. White noise (a fresh draw every step)
makes the action jitter about the mean, and its effect over many steps cancels out: a car that
must swing back and forth to climb a hill, or a joint that must push one way for a while, rarely
gets there. Colored noise with a power spectrum of ``1 / f**beta`` keeps each step's draw a
standard normal (so the policy's log-probability and PPO's ratio are unchanged) while
neighbouring steps are correlated: ``beta`` 0 is white, 1 is pink, 2 is a random walk.
Hollenstein et al. (2023) found ``beta`` 0.5 the best default for PPO across continuous-control
suites, and pink noise (Eberhard et al., 2023) solves MountainCarContinuous where white does not.

The noise is drawn from torch's global generator, once per rollout and env row, so a
checkpoint's RNG state (saved after each update) resumes it exactly; written here rather than
taken from a noise package so that it does.
"""

from __future__ import annotations

import torch


def colored_noise(
    beta: float, rows: int, steps: int, dims: int, device: torch.device | None = None
) -> torch.Tensor:
    """``[rows, steps, dims]`` standard-normal draws, independent across rows and dims and
    correlated along ``steps`` with a ``1 / f**beta`` power spectrum (Timmer and König's method:
    random Fourier coefficients scaled to the spectrum, transformed back).

    Every step's marginal is exactly N(0, 1): each coefficient adds the same variance to every
    step, and the total is divided out. The lowest frequency is one cycle per ``steps``."""
    if beta == 0:
        return torch.randn(rows, steps, dims, device=device)
    frequencies = torch.fft.rfftfreq(steps, device=device)
    frequencies[0] = 1 / steps  # the constant component gets the lowest frequency's power
    scale = frequencies ** (-beta / 2)
    real = torch.randn(rows, dims, scale.numel(), device=device) * scale
    imag = torch.randn(rows, dims, scale.numel(), device=device) * scale
    imag[..., 0] = 0  # the constant component is real
    # what each component adds to a step's variance, in units of its scale**2 / steps**2: 1 for
    # the constant and, for an even length, the Nyquist one (real, and irfft ignores its
    # imaginary part); 4 for every other, which enters twice (itself and its mirror image)
    weights = torch.full_like(scale, 4.0)
    weights[0] = 1.0
    if steps % 2 == 0:
        weights[-1] = 1.0
    std = (weights * scale**2).sum().sqrt() / steps
    noise = torch.fft.irfft(torch.complex(real, imag), n=steps) / std
    return noise.transpose(1, 2).contiguous()
