"""The rollout's acting step of the library's small MLPs, in numpy.

At batch 1 an eager-PyTorch step pays a few microseconds of dispatch for each of its ~20 ops
(the layers, the sampling, the log-probability), more than the math of a 2 × 64 MLP; numpy's
calls cost a fraction of that (experiments/RESULTS.md, "Outside eager PyTorch: the numpy
floor"). :class:`NumpyActor` runs :meth:`PolicyAdapter.act <puffertrain.ppo.PolicyAdapter.act>`
for a :class:`~puffertrain.ppo.known_mlp.KnownMLP` on a copy of its parameters laid out for the
fewest numpy calls: an actor's and a critic's trunks stacked, so one ``matmul`` runs a layer of
both, and the heads side by side, so one runs both heads. Half the calls of the layers one by
one: at batch 1 each call costs more than its math. The copy is taken again at every
:meth:`Rollout.acting() <puffertrain.rollout.Rollout.acting>`, the one region the rollout acts
in, so an update or a loaded checkpoint is seen from the next rollout on; a step sent outside
that region acts by the torch path.

The random numbers still come from torch's global generator, one draw per step of the shape the
torch path draws (exponentials for Gumbel-max, standard normals for Box actions): seeding,
checkpoints and resume stay exactly as they were, and for the same weights and generator state
both paths pick the same actions (up to float rounding in the logits).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

from puffertrain.ppo.adapter import PolicyAdapter

_LOG_SQRT_2PI = np.float32(0.5 * math.log(2 * math.pi))
_MASKED_LOGIT = np.float32(torch.finfo(torch.float32).min)
# up to this many logits, a softmax's normaliser costs least as one np.logaddexp.reduce; from
# about 200 its per-entry cost outweighs the calls it saves (a sample of 1 × 2 logits: 0.6× the
# time with max, exp, sum and log; 64 × 2: 0.76×; 64 × 6: 1.2×)
_FEW_LOGITS = 128


def _host_float32(tensor: torch.Tensor) -> bool:
    return tensor.device.type == "cpu" and tensor.dtype == torch.float32


class NumpyActor:
    """:meth:`PolicyAdapter.act` of a known MLP (fp32, on the CPU) in numpy. Build it with
    :meth:`of`, which says None for any other policy, precision or device."""

    def __init__(self, adapter: PolicyAdapter) -> None:
        mlp = adapter.known_mlp
        self.mlp = mlp
        self.continuous = adapter.continuous
        self.splits = np.cumsum(adapter.nvec)[:-1] if adapter.multi_discrete else None
        self.normalizer = mlp.normalizer
        self.stacked = len(mlp.trunks) == 2  # an actor's and a critic's trunk, shaped alike
        self._draws: dict[tuple[int, ...], tuple[torch.Tensor, np.ndarray]] = {}
        self._row_index: dict[int, np.ndarray] = {}
        self.refresh()

    @classmethod
    def of(cls, adapter: PolicyAdapter) -> NumpyActor | None:
        """A numpy actor for ``adapter``'s policy, or None where the torch path must act: not
        a known MLP, autocast, or parameters that are not float32 on the CPU."""
        mlp = adapter.known_mlp
        if mlp is None or adapter.autocast_dtype is not None:
            return None
        if adapter.continuous and mlp.log_std is None:
            return None
        if not all(_host_float32(parameter) for parameter in mlp.parameters()):
            return None
        return cls(adapter)

    def refresh(self) -> None:
        """Copy the parameters as they are now: each layer's weights ``(inputs, outputs)``, a
        layer of two trunks as ``(2, inputs, outputs)`` with biases ``(2, 1, outputs)``; the
        heads as one layer whose outputs are the actor's, then the value (two trunks: the
        actor's outputs in the first block, the value in the first column of the second)."""

        def layer(linear: nn.Linear) -> tuple[np.ndarray, np.ndarray]:
            return linear.weight.detach().numpy().T, linear.bias.detach().numpy()

        mlp = self.mlp
        self.layers = []
        for depth, (_, activation) in enumerate(mlp.trunks[0]):
            weights, biases = zip(*(layer(trunk[depth][0]) for trunk in mlp.trunks), strict=True)
            if self.stacked:
                weight, bias = np.stack(weights), np.stack(biases)[:, None]
            else:
                weight, bias = weights[0].copy(), biases[0].copy()
            self.layers.append((weight, bias, activation is nn.ReLU))
        (actor_weight, actor_bias), (critic_weight, critic_bias) = (
            layer(mlp.actor),
            layer(mlp.critic),
        )
        if self.stacked:
            width, outputs = actor_weight.shape
            weight = np.zeros((2, width, outputs), np.float32)
            bias = np.zeros((2, 1, outputs), np.float32)
            weight[0], weight[1, :, :1] = actor_weight, critic_weight
            bias[0, 0], bias[1, 0, :1] = actor_bias, critic_bias
        else:
            weight = np.concatenate([actor_weight, critic_weight], 1)
            bias = np.concatenate([actor_bias, critic_bias])
        self.heads = weight, bias
        self.log_std = None if mlp.log_std is None else mlp.log_std.detach().numpy().copy()

    def _draw(self, shape: tuple[int, ...], exponential: bool) -> np.ndarray:
        """Random numbers from torch's global generator into a kept tensor of ``shape``."""
        kept = self._draws.get(shape)
        if kept is None:
            tensor = torch.empty(shape)
            kept = self._draws[shape] = (tensor, tensor.numpy())
        tensor, array = kept
        if exponential:
            tensor.exponential_()
        else:
            tensor.normal_()
        return array

    def _features(self, observations: np.ndarray) -> np.ndarray:
        features = observations.reshape(observations.shape[0], -1).astype(np.float32, copy=False)
        if self.normalizer is not None:
            shift, scale = self.normalizer.obs_rms.float32_affine()
            if shift is not None:
                clip = self.normalizer.clip
                normalized = (features - shift.numpy()) * scale.numpy()
                return np.clip(normalized, -clip, clip, out=normalized)
        return features

    def forward(self, observations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The actor's logits or mean and the flat values, as the torch path computes them."""
        hidden = self._features(observations)
        for weight, bias, relu in self.layers:  # two trunks: [2, batch, width] from the first
            hidden = np.matmul(hidden, weight)
            hidden += bias
            if relu:
                np.maximum(hidden, 0, out=hidden)
            else:
                np.tanh(hidden, out=hidden)
        weight, bias = self.heads
        outputs = np.matmul(hidden, weight)
        outputs += bias
        if self.stacked:
            return outputs[0], outputs[1, :, 0]
        return outputs[:, :-1], outputs[:, -1]

    def act(
        self,
        observations: np.ndarray,
        deterministic: bool = False,
        action_mask: np.ndarray | None = None,
        noise: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(actions, log_probs, values)`` as :meth:`PolicyAdapter.act` returns them, for a
        batch of observations (with its action masks, or the colored ``noise`` of a Box
        action)."""
        outputs, values = self.forward(observations)
        if self.continuous:
            log_std = np.broadcast_to(self.log_std, outputs.shape)
            if deterministic:
                return outputs, -(log_std + _LOG_SQRT_2PI).sum(-1), values
            if noise is None:
                noise = self._draw(outputs.shape, exponential=False)
            actions = outputs + np.exp(log_std) * noise
            log_probs = -_LOG_SQRT_2PI * noise.shape[-1] - (log_std + 0.5 * noise * noise).sum(-1)
            return actions, log_probs, values
        if action_mask is not None:
            outputs = np.where(action_mask, outputs, _MASKED_LOGIT)
        if self.splits is None:
            actions, log_probs = self._sample(outputs, deterministic)
            return actions, log_probs, values
        blocks = [self._sample(block, deterministic) for block in np.split(outputs, self.splits, 1)]
        actions, log_probs = zip(*blocks, strict=True)
        return np.stack(actions, -1), np.sum(log_probs, 0, dtype=np.float32), values

    def _sample(self, logits: np.ndarray, deterministic: bool) -> tuple[np.ndarray, np.ndarray]:
        """An action of each row of categorical ``logits`` (Gumbel-max, or the mode) and its
        log-probability."""
        if logits.shape[-1] == 2:  # same bits as the reduce, in 0.7× its time at 1 row, 0.4×
            log_norm = np.logaddexp(logits[:, 0], logits[:, 1])  # at 64, 0.2× at 256
        elif logits.size <= _FEW_LOGITS:  # one call where max, exp, sum and log are four
            log_norm = np.logaddexp.reduce(logits, axis=-1)
        else:  # logaddexp costs more per entry
            peak = logits.max(-1)
            log_norm = np.log(np.exp(logits - peak[:, None]).sum(-1)) + peak
        if deterministic:
            actions = logits.argmax(-1)
        else:  # the max of logits + Gumbel noise, -log of an exponential draw
            gumbel = np.log(self._draw(logits.shape, exponential=True))
            actions = np.subtract(logits, gumbel, out=gumbel).argmax(-1)
        return actions, logits[self._rows(len(actions)), actions] - log_norm

    def _rows(self, count: int) -> np.ndarray:
        """``arange(count)``, kept: the row index that picks each row's chosen log-probability
        (``take_along_axis`` costs five times as much at batch 1)."""
        rows = self._row_index.get(count)
        if rows is None:
            rows = self._row_index[count] = np.arange(count)
        return rows
