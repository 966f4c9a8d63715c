"""The trained parameters, their gradients and Adam's moments, each kept in one flat tensor.

On the CPU, torch's per-parameter loops (``_foreach_norm``, ``_foreach_mul_``, the fused Adam
kernel's per-tensor setup) cost a few microseconds per tensor, which is a small policy's
whole clip or Adam step. With every parameter a view into one tensor, clipping the gradients'
norm and the Adam step are one kernel each. Adam is elementwise, so the step is torch's bit
for bit; only the norm sums in another order.
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
    """Moves ``parameters`` (one dtype, one device) into one flat tensor, and the one-group
    fused Adam ``optimizer``'s moments into two more, and runs that optimizer's step.

    A step where every parameter has a gradient, in a run where all have stepped together, is
    the flat one: the gradients are copied into one tensor, clipped and stepped. Otherwise
    (a multi-agent policy's adapter that no row of a minibatch reached, say) the step is
    torch's: the parameters without a gradient are skipped, keep their moments and their own
    step counts, and later steps take the per-parameter path. ``optimizer.state_dict()`` is
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
        for parameter, value in zip(parameters, _views(self.values, parameters), strict=True):
            parameter.data = value
        # the fused kernel's step count, a float32 tensor on the parameters' device, shared by
        # every parameter's state while all step together (None once they have not)
        self.shared_step: torch.Tensor | None = torch.zeros((), device=self.values.device)
        self._share_state([self.shared_step] * len(parameters))
        optimizer.register_state_dict_post_hook(self._independent_state)
        optimizer.register_load_state_dict_post_hook(self._adopt_loaded_state)

    def _share_state(self, steps: list[torch.Tensor]) -> None:
        """Point the optimizer's per-parameter state at views of the flat moments and at
        ``steps``."""
        views = {name: _views(moment, self.parameters) for name, moment in self.moments.items()}
        for index, parameter in enumerate(self.parameters):
            self.optimizer.state[parameter] = {"step": steps[index]} | {
                name: views[name][index] for name in _MOMENTS
            }

    @staticmethod
    def _independent_state(
        optimizer: torch.optim.Optimizer, state_dict: dict[str, Any]
    ) -> dict[str, Any]:
        """A state dict of copies: the live state shares step tensors and views of the flat
        moments, which an optimizer loading it in this process would step in place."""
        state_dict["state"] = {
            key: {name: tensor.clone() for name, tensor in state.items()}
            for key, state in state_dict["state"].items()
        }
        return state_dict

    def _adopt_loaded_state(self, optimizer: torch.optim.Optimizer) -> None:
        """After ``optimizer.load_state_dict``: the loaded moments into the flat tensors (zero
        for a parameter without state), and one shared step count if they all agree."""
        loaded = [optimizer.state.get(parameter, {}) for parameter in self.parameters]
        with torch.no_grad():
            for name, moment in self.moments.items():
                for view, state in zip(_views(moment, self.parameters), loaded, strict=True):
                    if name in state:
                        view.copy_(state[name])
                    else:
                        view.zero_()
        steps = [float(state.get("step", 0.0)) for state in loaded]
        device = self.values.device
        if len(set(steps)) == 1:
            self.shared_step = torch.tensor(steps[0], device=device)
            self._share_state([self.shared_step] * len(steps))
        else:
            self.shared_step = None
            self._share_state([torch.tensor(step, device=device) for step in steps])

    def zero_grad(self) -> None:
        """Drop the gradients (``zero_grad(set_to_none=True)`` minus its hooks), so that the
        next step can tell which parameters the backward pass reached."""
        for parameter in self.parameters:
            parameter.grad = None

    def clip_and_step(self, max_norm: float) -> torch.Tensor:
        """Scale the gradients to a 2-norm of at most ``max_norm`` (``clip_grad_norm_``), then
        take the optimizer's step with its current hyperparameters (its LR is set per update).
        Returns the norm before clipping."""
        gradients = [parameter.grad for parameter in self.parameters]
        if self.shared_step is not None and all(grad is not None for grad in gradients):
            torch.cat([grad.reshape(-1) for grad in gradients], out=self.gradients)
            norm = torch.linalg.vector_norm(self.gradients)
            self.gradients.mul_(torch.clamp(max_norm / (norm + 1e-6), max=1.0))
            moments = ([self.moments[name]] for name in _MOMENTS)
            self._adam([self.values], [self.gradients], [self.shared_step], *moments)
            return norm
        return self._clip_and_step_each(max_norm)

    def _clip_and_step_each(self, max_norm: float) -> torch.Tensor:
        """The per-parameter path: torch's clip and fused Adam over the parameters that have
        a gradient, each with its own step count from now on."""
        if self.shared_step is not None:
            steps = [self.shared_step.clone() for _ in self.parameters]
            self._share_state(steps)
            self.shared_step = None
        stepped = [parameter for parameter in self.parameters if parameter.grad is not None]
        if not stepped:
            return torch.zeros((), device=self.values.device)
        gradients = [parameter.grad for parameter in stepped]
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(gradients)))
        torch._foreach_mul_(gradients, torch.clamp(max_norm / (norm + 1e-6), max=1.0))
        states = [self.optimizer.state[parameter] for parameter in stepped]
        self._adam(
            stepped,
            gradients,
            [state["step"] for state in states],
            *([state[name] for state in states] for name in _MOMENTS),
        )
        return norm

    def _adam(
        self,
        parameters: list[torch.Tensor],
        gradients: list[torch.Tensor],
        steps: list[torch.Tensor],
        exp_avgs: list[torch.Tensor],
        exp_avg_sqs: list[torch.Tensor],
    ) -> None:
        """torch's functional fused Adam with the optimizer's hyperparameters, read at every
        step (loading a state dict replaces the group), without ``Optimizer.step``'s hooks."""
        group: dict[str, Any] = self.optimizer.param_groups[0]
        beta1, beta2 = group["betas"]
        with torch.no_grad():
            adam(
                parameters,
                gradients,
                exp_avgs,
                exp_avg_sqs,
                [],
                steps,
                fused=True,
                amsgrad=False,
                beta1=beta1,
                beta2=beta2,
                lr=group["lr"],
                weight_decay=group["weight_decay"],
                eps=group["eps"],
                maximize=group["maximize"],
            )
