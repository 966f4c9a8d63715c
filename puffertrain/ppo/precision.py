"""Mixed precision: which dtype the policy computes in, and whether the device does it fast.

``bf16`` runs the policy's matmuls and convolutions under ``torch.autocast`` in bfloat16, in
the rollout and in the update; weights, optimizer state, gradients and the loss stay float32
(the agent turns the policy's outputs back to float32 before any log-probability).
"""

from __future__ import annotations

from typing import Literal

import torch

from puffertrain.errors import UserError

Precision = Literal["auto", "fp32", "bf16"]


def has_fast_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 natively: a CUDA GPU that supports it, or a CPU
    with AVX512-BF16 or AMX (elsewhere bf16 is emulated, and slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def resolve_precision(precision: Precision, device: torch.device) -> tuple[torch.dtype | None, str]:
    """The autocast dtype for ``--precision`` on ``device`` (None: plain fp32) and why."""
    fast = has_fast_bf16(device)
    if precision == "bf16" and not fast:
        raise UserError(
            f"--precision bf16: this {device.type.upper()} has no native bfloat16 math "
            "(AVX512-BF16 or AMX on a CPU, an Ampere or newer GPU); use --precision fp32"
        )
    if precision == "fp32" or (precision == "auto" and not fast):
        reason = "asked for" if precision == "fp32" else f"no native bf16 on this {device.type}"
        return None, f"fp32 ({reason})"
    reason = "asked for" if precision == "bf16" else f"native bf16 on this {device.type}"
    return torch.bfloat16, f"bf16 autocast, fp32 weights ({reason})"
