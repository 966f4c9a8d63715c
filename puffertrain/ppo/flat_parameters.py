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

FLAT_ELEMENTS_PER_TENSOR = 16_384
"""The flat path by default up to this many elements per parameter tensor, on average. It saves
~8 us of per-tensor dispatch per tensor and step, and copying the gradients into the flat
tensor costs ~0.3 ns per element (this 2-core Xeon, one thread): break-even near 27k. The
Atari CNN (~170k per tensor) was ~3% slower flat; the classic-control and masked MLPs (under
10k) gained 3-6% (experiments/RESULTS.md, "Parameters, gradients and Adam's moments in flat
tensors")."""


def _views(flat: torch.Tensor, like: list[nn.Parameter]) -> list[torch.Tensor]:
    """``flat`` cut into tensors shaped like ``like``, in order."""
    sizes = [parameter.numel() for parameter in like]
    return [
        part.view_as(parameter)
        for part, parameter in zip(torch.split(flat, sizes), like, strict=True)
    ]


def _clip_factor(norm: torch.Tensor, max_norm: float) -> torch.Tensor:
    """What ``nn.utils.clip_grad_norm_`` multiplies gradients of 2-norm ``norm`` by."""
    return torch.clamp(max_norm / (norm + 1e-6), max=1.0)


class FlatParameters:
    """Runs the one-group fused Adam ``optimizer``'s step, with gradient clipping, for
    ``parameters``. If ``flat`` (by default: on the CPU, for parameters of one dtype and
    :data:`FLAT_ELEMENTS_PER_TENSOR` elements or fewer on average) it moves them into one flat
    tensor (they must share one dtype and device) and the optimizer's moments into two more.

    A step where every parameter has a gradient, in a run where all have stepped together, is
    the flat one: the gradients are copied into one tensor, clipped and stepped. Otherwise
    (a multi-agent policy's adapter that no row of a minibatch reached, say) the step is
    torch's: the parameters without a gradient are skipped, keep their moments and their own
    step counts, and later steps take the per-parameter path. So does every step without flat
    parameters: on a GPU torch's foreach and fused kernels already take all tensors in one
    launch, and moving an ``nn.LSTM``'s weights out of cuDNN's own flat buffer would cost a copy
    at every call; for large tensors copying the gradients costs more than it saves.
    ``optimizer.state_dict()`` is torch's per-parameter layout (of copies), and a state dict
    loaded through ``optimizer`` is copied into the moments (hooks), so checkpoints load
    either way.
    """

    def __init__(
        self,
        parameters: list[nn.Parameter],
        optimizer: torch.optim.Adam,
        flat: bool | None = None,
    ) -> None:
        if len(optimizer.param_groups) != 1:
            raise ValueError("FlatParameters steps a one-group optimizer")
        self.optimizer = optimizer
        self.parameters = parameters
        self.device = parameters[0].device
        kinds = {(parameter.dtype, parameter.device) for parameter in parameters}
        if flat is None:
            elements = sum(parameter.numel() for parameter in parameters)
            small = elements <= FLAT_ELEMENTS_PER_TENSOR * len(parameters)
            flat = len(kinds) == 1 and self.device.type == "cpu" and small
        if flat and len(kinds) > 1:
            raise ValueError(
                f"flat parameters must share one dtype and device, got {sorted(map(str, kinds))}"
            )
        self.flat = flat
        if self.flat:
            with torch.no_grad():
                self.values = torch.cat([parameter.reshape(-1) for parameter in parameters])
            for parameter, value in zip(parameters, _views(self.values, parameters), strict=True):
                parameter.data = value
            self.gradients = torch.zeros_like(self.values)
            self.gradient_views = _views(self.gradients, parameters)
            self.moments = {name: torch.zeros_like(self.values) for name in _MOMENTS}
            self.moment_views = {
                name: _views(moment, parameters) for name, moment in self.moments.items()
            }
        else:
            self.moment_views = {
                name: [torch.zeros_like(parameter) for parameter in parameters] for name in _MOMENTS
            }
        # the fused kernel's step count, a float32 tensor on the parameters' device, shared by
        # every parameter's state while all step together on the flat path (None otherwise)
        self.shared_step: torch.Tensor | None = None
        self._set_steps([0.0] * len(parameters), shared=self.flat)
        optimizer.register_state_dict_post_hook(self._independent_state)
        optimizer.register_load_state_dict_post_hook(self._adopt_loaded_state)

    def _set_steps(self, steps: list[float], shared: bool) -> None:
        """Point the optimizer's per-parameter state at the moments and at step counts
        ``steps``: one tensor they all share if ``shared`` (they must agree), else one each."""
        if shared:
            self.shared_step = torch.tensor(steps[0], device=self.device)
            counts = [self.shared_step] * len(steps)
        else:
            self.shared_step = None
            counts = [torch.tensor(step, device=self.device) for step in steps]
        for index, parameter in enumerate(self.parameters):
            self.optimizer.state[parameter] = {"step": counts[index]} | {
                name: views[index] for name, views in self.moment_views.items()
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
        """After ``optimizer.load_state_dict``: the loaded moments copied into this object's
        (zero for a parameter without state), and the loaded step counts."""
        loaded = [optimizer.state.get(parameter, {}) for parameter in self.parameters]
        with torch.no_grad():
            for name, views in self.moment_views.items():
                for view, state in zip(views, loaded, strict=True):
                    if name in state:
                        view.copy_(state[name])
                    else:
                        view.zero_()
        steps = [float(state.get("step", 0.0)) for state in loaded]
        self._set_steps(steps, shared=self.flat and len(set(steps)) == 1)

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
        if self.stepping_flat and all(grad is not None for grad in gradients):
            torch.cat([grad.reshape(-1) for grad in gradients], out=self.gradients)
            return self.clip_and_step_written(max_norm)
        return self._clip_and_step_each(max_norm)

    @property
    def stepping_flat(self) -> bool:
        """Whether the parameters step together on the flat path (None off the CPU), so that
        a step may take gradients written into :attr:`gradients` (:attr:`gradient_views`)."""
        return self.shared_step is not None

    def clip_and_step_written(self, max_norm: float) -> torch.Tensor:
        """:meth:`clip_and_step` on the flat path, with every parameter's gradient already in
        :attr:`gradients` (the ``.grad`` fields are not read)."""
        norm = torch.linalg.vector_norm(self.gradients)
        self.gradients.mul_(_clip_factor(norm, max_norm))
        moments = ([self.moments[name]] for name in _MOMENTS)
        self._adam([self.values], [self.gradients], [self.shared_step], *moments)
        return norm

    def _clip_and_step_each(self, max_norm: float) -> torch.Tensor:
        """The per-parameter path: torch's clip and fused Adam over the parameters that have
        a gradient, each with its own step count from now on."""
        if self.shared_step is not None:  # from now on each parameter counts its own steps
            self._set_steps([float(self.shared_step)] * len(self.parameters), shared=False)
        stepped = [parameter for parameter in self.parameters if parameter.grad is not None]
        if not stepped:
            return torch.zeros((), device=self.device)
        gradients = [parameter.grad for parameter in stepped]
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(gradients)))
        torch._foreach_mul_(gradients, _clip_factor(norm, max_norm))
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
