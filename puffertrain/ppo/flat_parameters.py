"""The trained parameters, their gradients and Adam's moments, each kept in one flat tensor.

On the CPU, torch's per-parameter loops (``_foreach_norm``, ``_foreach_mul_``, the fused Adam
kernel's per-tensor setup) cost a few microseconds per tensor, which is a small policy's
whole clip or Adam step. With every parameter a view into one tensor, clearing the gradients,
clipping their norm and the Adam step are one kernel each. Adam is elementwise, so the step
is the per-parameter step bit for bit; only the norm sums in another order.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from torch.optim.adam import adam

_MOMENTS = ("exp_avg", "exp_avg_sq")


def _views(flat: torch.Tensor, like: list[nn.Parameter]) -> list[torch.Tensor]:
    """``flat`` cut into tensors shaped like ``like``, in order."""
    sizes = [parameter.numel() for parameter in like]
    return [
        part.view_as(parameter)
        for part, parameter in zip(torch.split(flat, sizes), like, strict=True)
    ]


class FlatParameters:
    """Moves ``parameters`` (one dtype, one device) into one flat tensor, with their gradients
    and the one-group fused Adam ``optimizer``'s moments in two more, and runs that optimizer's
    step on them.

    Backward passes accumulate into the gradient views in place. Every parameter steps at every
    update; one that got no gradient from a minibatch steps with a zero gradient (its moments
    decay), as in optax, where torch's ``Adam`` would skip it. ``optimizer.state_dict()`` is
    torch's per-parameter layout (of copies), and a state dict loaded through ``optimizer`` is
    copied into the flat tensors (hooks), so checkpoints load either way.
    """

    def __init__(self, parameters: list[nn.Parameter], optimizer: torch.optim.Adam) -> None:
        kinds = {(parameter.dtype, parameter.device) for parameter in parameters}
        if len(kinds) > 1:
            raise ValueError(
                f"the policy's trained parameters must share one dtype and device, got {kinds}"
            )
        if len(optimizer.param_groups) != 1:
            raise ValueError("FlatParameters steps a one-group optimizer")
        self.optimizer = optimizer
        self.parameters = parameters
        with torch.no_grad():
            self.values = torch.cat([parameter.reshape(-1) for parameter in parameters])
        self.gradients = torch.zeros_like(self.values)
        self.moments = {name: torch.zeros_like(self.values) for name in _MOMENTS}
        # the fused kernel's step count: a float32 tensor on the parameters' device
        self.step = torch.zeros((), dtype=torch.float32, device=self.values.device)
        self.gradient_views = _views(self.gradients, parameters)
        for parameter, value in zip(parameters, _views(self.values, parameters), strict=True):
            parameter.data = value
        for parameter, gradient in zip(parameters, self.gradient_views, strict=True):
            parameter.grad = gradient
        self._share_state()
        optimizer.register_state_dict_post_hook(self._independent_state)
        optimizer.register_load_state_dict_post_hook(self._adopt_loaded_state)

    def _share_state(self) -> None:
        """Point the optimizer's per-parameter state at views of the flat tensors."""
        views = {name: _views(moment, self.parameters) for name, moment in self.moments.items()}
        for index, parameter in enumerate(self.parameters):
            self.optimizer.state[parameter] = {"step": self.step} | {
                name: views[name][index] for name in _MOMENTS
            }

    @staticmethod
    def _independent_state(
        optimizer: torch.optim.Optimizer, state_dict: dict[str, Any]
    ) -> dict[str, Any]:
        """A state dict of copies: the live state shares one step tensor and views of the flat
        moments, which an optimizer loading it in this process would step in place."""
        state_dict["state"] = {
            key: {name: tensor.clone() for name, tensor in state.items()}
            for key, state in state_dict["state"].items()
        }
        return state_dict

    def _adopt_loaded_state(self, optimizer: torch.optim.Optimizer) -> None:
        """After ``optimizer.load_state_dict``: the loaded moments into the flat tensors (zero
        for a parameter without state), the latest step count as everyone's."""
        loaded = [optimizer.state.get(parameter, {}) for parameter in self.parameters]
        with torch.no_grad():
            for name, moment in self.moments.items():
                for view, state in zip(_views(moment, self.parameters), loaded, strict=True):
                    if name in state:
                        view.copy_(state[name])
                    else:
                        view.zero_()
            steps = [float(state["step"]) for state in loaded if "step" in state]
            self.step.fill_(max(steps, default=0.0))
        self._share_state()

    def zero_grad(self) -> None:
        """Zero every gradient in one kernel; a gradient that other code put in place of its
        view (``zero_grad(set_to_none=True)``, say) gets the view back."""
        self.gradients.zero_()
        for parameter, gradient in zip(self.parameters, self.gradient_views, strict=True):
            if parameter.grad is not gradient:
                parameter.grad = gradient

    def clip_grad_norm(self, max_norm: float) -> torch.Tensor:
        """Scale the gradients to a 2-norm of at most ``max_norm``, as
        ``nn.utils.clip_grad_norm_`` does; return the norm before clipping."""
        total = torch.linalg.vector_norm(self.gradients)
        self.gradients.mul_(torch.clamp(max_norm / (total + 1e-6), max=1.0))
        return total

    def adam_step(self) -> None:
        """The optimizer's step: torch's functional fused Adam on the flat tensors, with the
        optimizer's current hyperparameters (its LR is set per update)."""
        # read at every step: loading a state dict replaces the group
        group: dict[str, Any] = self.optimizer.param_groups[0]
        beta1, beta2 = group["betas"]
        with torch.no_grad():
            adam(
                [self.values],
                [self.gradients],
                [self.moments["exp_avg"]],
                [self.moments["exp_avg_sq"]],
                [],
                [self.step],
                fused=True,
                amsgrad=False,
                beta1=beta1,
                beta2=beta2,
                lr=group["lr"],
                weight_decay=group["weight_decay"],
                eps=group["eps"],
                maximize=group["maximize"],
            )
