"""Recurrent policies: an LSTM between a policy's encoder and its heads.

One set of LSTM weights serves two paths. The rollout steps every env once per call through an
``nn.LSTMCell``; the update runs whole sequences through batched ``nn.LSTM`` calls, with the
state reset exactly where an episode starts inside a sequence (the segments between resets
become the columns of the calls, each segment starting from its own initial state).

State is a tuple ``(h, c)`` of ``(batch, hidden_size)`` tensors, one row per env.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import torch
import torch.nn as nn
from torch.nn.utils.rnn import PackedSequence

from policies.cnn import image_trunk, is_image
from policies.compile_hints import eager_when_compiled
from policies.contract import State, takes_agent_ids
from policies.flatten import is_structured
from policies.heads import EncoderHeads
from policies.mlp import mlp_encoder
from policies.multi_input import MultiInputPolicy


def _lstm_and_cell(input_size: int, hidden_size: int) -> tuple[nn.LSTM, nn.LSTMCell]:
    """An ``nn.LSTM`` and an ``nn.LSTMCell`` holding the same parameter tensors (orthogonal
    weights with gain 1, zero biases)."""
    lstm = nn.LSTM(input_size, hidden_size)
    cell = nn.LSTMCell(input_size, hidden_size)
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        shared = getattr(lstm, f"{name}_l0")
        if name.startswith("weight"):
            nn.init.orthogonal_(shared, 1.0)
        else:
            nn.init.zeros_(shared)
        setattr(cell, name, shared)
    return lstm, cell


class LSTMWrapper(nn.Module):
    """Put an LSTM between ``policy.encode_observations`` and ``policy.decode_actions``.

    ``policy.encode_observations(obs)`` must return ``(batch, input_size)`` features and
    ``policy.decode_actions(hidden)`` must take ``(batch, hidden_size)``. The ``nn.LSTM`` used
    for sequences and the ``nn.LSTMCell`` used for single steps hold the very same parameter
    tensors (orthogonal weights with gain 1, zero biases), so what the update trains is what
    the rollout runs. If the policy's encoder takes ``agent_ids`` (a multi-agent policy), the
    step and sequence paths pass them on.

    ``critic_lstm=True`` gives the critic an LSTM of its own over the same features, as
    sb3-contrib's RecurrentPPO does by default; ``policy.decode_actions(hidden, critic_hidden)``
    must then take the critic's output second. The state then holds both LSTMs' ``(h, c)``
    side by side, ``2 * hidden_size`` wide.
    """

    def __init__(
        self, policy: nn.Module, input_size: int, hidden_size: int, critic_lstm: bool = False
    ) -> None:
        super().__init__()
        self.policy = policy
        self.input_size, self.hidden_size = input_size, hidden_size
        self.lstm, self.cell = _lstm_and_cell(input_size, hidden_size)
        self.critic_lstm, self.critic_cell = (
            _lstm_and_cell(input_size, hidden_size) if critic_lstm else (None, None)
        )

    @property
    def takes_agent_ids(self) -> bool:
        return takes_agent_ids(self.policy)

    def _encode(self, observations: torch.Tensor, agent_ids: torch.Tensor | None) -> torch.Tensor:
        if agent_ids is not None and self.takes_agent_ids:
            return self.policy.encode_observations(observations, agent_ids)
        return self.policy.encode_observations(observations)

    def initial_state(self, batch_size: int, device: torch.device | str = "cpu") -> State:
        """Zero ``(h, c)`` for ``batch_size`` envs."""
        width = self.hidden_size * (2 if self.critic_lstm is not None else 1)
        zeros = torch.zeros(batch_size, width, device=device)
        return zeros, zeros.clone()

    def _split(self, state: State) -> tuple[State, State]:
        """The actor's and the critic's ``(h, c)`` of a state with a critic LSTM."""
        size = self.hidden_size
        return (state[0][:, :size], state[1][:, :size]), (state[0][:, size:], state[1][:, size:])

    def forward_step(
        self, observations: torch.Tensor, state: State, agent_ids: torch.Tensor | None = None
    ) -> tuple[tuple[torch.Tensor, ...], State]:
        """One step for a batch of envs: ``(policy outputs, new state)`` (LSTMCell)."""
        features = self._encode(observations, agent_ids)
        if self.critic_cell is None:
            h, c = self.cell(features, state)
            return self.policy.decode_actions(h), (h, c)
        actor_state, critic_state = self._split(state)
        h, c = self.cell(features, actor_state)
        critic_h, critic_c = self.critic_cell(features, critic_state)
        outputs = self.policy.decode_actions(h, critic_h)
        return outputs, (torch.cat((h, critic_h), 1), torch.cat((c, critic_c), 1))

    def forward_sequence(
        self,
        observations: torch.Tensor,
        state: State,
        episode_starts: torch.Tensor,
        agent_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """The policy outputs for ``observations[T, B, ...]``, rows flat in ``[T, B]`` order.

        Each env starts from its row of ``state``; ``episode_starts[t, b]`` true means env b's
        episode starts at step t, so its state is zeroed before that step (step 0 included).
        ``agent_ids`` are ``[T, B]`` like ``episode_starts``.
        """
        steps, batch = observations.shape[:2]
        if agent_ids is not None:
            agent_ids = agent_ids.flatten(0, 1)
        features = self._encode(observations.flatten(0, 1), agent_ids).view(steps, batch, -1)
        starts = episode_starts.bool()
        if self.critic_lstm is None:
            hidden = lstm_over_segments(self.lstm, features, state, starts)
            return self.policy.decode_actions(hidden.flatten(0, 1))
        actor_state, critic_state = self._split(state)
        hidden = lstm_over_segments(self.lstm, features, actor_state, starts)
        critic_hidden = lstm_over_segments(self.critic_lstm, features, critic_state, starts)
        return self.policy.decode_actions(hidden.flatten(0, 1), critic_hidden.flatten(0, 1))

    def forward(
        self,
        observations: torch.Tensor,
        state: State | None = None,
        agent_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """One step: the policy outputs followed by the new state (zero state when None)."""
        if state is None:
            state = self.initial_state(observations.shape[0], observations.device)
        outputs, state = self.forward_step(observations, state, agent_ids)
        return (*outputs, state)


@dataclass(frozen=True)
class Segments:
    """Each env column of ``episode_starts[T, B]`` cut at its episode starts.

    Elements are numbered env-major (``b * T + t``). ``segment[i]`` is element i's segment,
    ``position[i]`` its step within it; segment k covers ``lengths[k]`` steps of env
    ``env[k]`` and starts from that env's given state times ``keep[k]`` (1 for a segment at
    step 0 without an episode start there, else 0: a new episode starts from zero).
    """

    segment: torch.Tensor
    position: torch.Tensor
    lengths: torch.Tensor
    env: torch.Tensor
    keep: torch.Tensor

    @classmethod
    def of(cls, episode_starts: torch.Tensor) -> Segments:
        steps, batch = episode_starts.shape
        cuts = episode_starts.t().clone()
        cuts[:, 0] = True
        cuts = cuts.flatten()
        segment = torch.cumsum(cuts, 0) - 1
        first = torch.nonzero(cuts).squeeze(1)
        env, start = first // steps, first % steps
        return cls(
            segment=segment,
            position=torch.arange(steps * batch, device=cuts.device) - first[segment],
            lengths=torch.bincount(segment, minlength=first.numel()),
            env=env,
            keep=(~episode_starts[start, env]).unsqueeze(1),
        )

    def initial(self, state: State) -> State:
        """Each segment's initial state, from the env rows of ``state``."""
        return tuple(part[self.env] * self.keep.to(part.dtype) for part in state)


def _env_major(features: torch.Tensor) -> torch.Tensor:
    return features.transpose(0, 1).reshape(features.shape[0] * features.shape[1], -1)


def _time_major(rows: torch.Tensor, steps: int, batch: int) -> torch.Tensor:
    return rows.view(batch, steps, -1).transpose(0, 1)


# Cost of an nn.LSTM call (forward + backward) in units of one padded element-step, measured
# with oneDNN on the 2-core test machine (hidden 128): ~700 µs per call, ~13 µs per step,
# ~6.5 µs per element-step. Only the ratios matter; they decide when to merge length groups.
_CALL_COST = 100.0
_STEP_COST = 2.0


def _length_groups(lengths: list[int]) -> list[int]:
    """Group segments for one LSTM call each: walking the lengths longest first, a new call
    starts where the padding a group has gathered would cost more than the call. Returns each
    segment's group, in the order of ``lengths`` (sorted, longest first)."""
    groups, group, longest, padding = [], 0, lengths[0], 0
    for length in lengths:
        padding += longest - length
        if padding > _CALL_COST + _STEP_COST * length:
            group, longest, padding = group + 1, length, 0
        groups.append(group)
    return groups


@eager_when_compiled
def lstm_over_segments(
    lstm: nn.LSTM, features: torch.Tensor, state: State, episode_starts: torch.Tensor
) -> torch.Tensor:
    """``lstm`` over ``features[T, B, F]`` from ``state``, reset at every episode start.

    Each env's column is cut into segments at its episode starts (:class:`Segments`), and the
    segments run as the columns of ordinary ``nn.LSTM`` calls, padded at their ends: padding
    after a segment cannot change its outputs, so they equal stepping the cell with resets,
    while the time loop runs inside the LSTM kernel (oneDNN on CPU, cuDNN on CUDA). Segments
    of similar length share a call; a new call starts where padding the shorter segments
    would cost more than the call (:func:`_length_groups`). Returns the outputs ``[T, B, H]``.
    """
    steps, batch = episode_starts.shape
    segments = Segments.of(episode_starts)
    rows = _env_major(features)
    initial = segments.initial(state)
    order = torch.argsort(segments.lengths, descending=True, stable=True)
    groups = _length_groups(segments.lengths[order].tolist())
    group = torch.empty_like(order)
    group[order] = torch.as_tensor(groups, device=order.device)
    element_group = group[segments.segment]
    pieces, elements_of_pieces = [], []
    for index in range(groups[-1] + 1):
        members = torch.nonzero(group == index).squeeze(1)
        column = torch.full_like(group, -1)
        column[members] = torch.arange(members.numel(), device=members.device)
        elements = torch.nonzero(element_group == index).squeeze(1)
        where = (segments.position[elements], column[segments.segment[elements]])
        longest = int(segments.lengths[members].max())
        padded = rows.new_zeros(longest, members.numel(), rows.shape[1])
        output, _ = lstm(
            padded.index_put(where, rows[elements]),
            tuple(part[members].unsqueeze(0) for part in initial),
        )
        pieces.append(output[where])
        elements_of_pieces.append(elements)
    hidden = torch.cat(pieces)[torch.argsort(torch.cat(elements_of_pieces))]
    return _time_major(hidden, steps, batch)


def lstm_packed(
    lstm: nn.LSTM, features: torch.Tensor, state: State, episode_starts: torch.Tensor
) -> tuple[torch.Tensor, State]:
    """The same outputs as :func:`lstm_over_segments` through one ``PackedSequence`` call, plus
    each env's state after its last step (the packed LSTM returns every segment's final state).
    Exact, but on CPU its backward is quadratic in T, so the update does not use it."""
    steps, batch = episode_starts.shape
    segments = Segments.of(episode_starts)
    count = segments.lengths.numel()
    device = features.device
    # Packed layout: step p holds the segments longer than p, longest first.
    sorted_indices = torch.argsort(segments.lengths, descending=True, stable=True)
    rank = torch.empty_like(sorted_indices)
    rank[sorted_indices] = torch.arange(count, device=device)
    at_least = torch.bincount(segments.lengths, minlength=steps + 1).flip(0).cumsum(0).flip(0)
    batch_sizes = at_least[1 : int(segments.lengths.max()) + 1]
    offsets = torch.cumsum(batch_sizes, 0) - batch_sizes
    packed_index = offsets[segments.position] + rank[segments.segment]
    gather = torch.empty_like(packed_index)
    gather[packed_index] = torch.arange(steps * batch, device=device)

    packed = PackedSequence(_env_major(features)[gather], batch_sizes.cpu(), sorted_indices, rank)
    initial = tuple(part.unsqueeze(0) for part in segments.initial(state))
    output, final = lstm(packed, initial)
    last_segment = segments.segment.view(batch, steps)[:, -1]
    hidden = _time_major(output.data[packed_index], steps, batch)
    return hidden, tuple(part[0, last_segment] for part in final)


class LSTMPolicy(LSTMWrapper):
    """``--policy lstm``: encoder chosen from the observation space, LSTM, actor/critic heads.

    Images (channels, height, width): the Nature CNN up to its 512-unit layer, as in CleanRL's
    ppo_atari_lstm (frames stay stacked ×4 here, so ``--policy cnn`` and ``lstm`` see the same
    observations). Vectors: one 128-unit ReLU layer. Dict and Tuple observations (MiniGrid's):
    ``multi_input``'s encoder per leaf, then a ``hidden_size`` ReLU layer, as sb3-contrib's
    MultiInputLstmPolicy. Then an LSTM of ``hidden_size`` units, and with ``critic_lstm`` a
    second one for the critic (:class:`LSTMWrapper`). ``log_std_init``: where Box actions'
    log-std starts.
    """

    def __init__(
        self,
        observation_space: gym.spaces.Space,
        action_space: gym.spaces.Space,
        hidden_size: int = 128,
        critic_lstm: bool = False,
        log_std_init: float = 0.0,
    ) -> None:
        if is_structured(observation_space):  # its flat byte rows go to the leaves unscaled
            heads = MultiInputPolicy(
                observation_space, action_space, hidden_size, log_std_init=log_std_init
            )
            width = hidden_size
        else:
            if is_image(observation_space):
                trunk, width = image_trunk(observation_space, 512), 512
            else:
                trunk, width = mlp_encoder(observation_space, 128), 128
            heads = EncoderHeads(trunk, hidden_size, action_space, log_std_init)
        super().__init__(heads, width, hidden_size, critic_lstm)


class RecurrentPolicy(LSTMWrapper):
    """The guide's RecurrentPolicy: encoder (128, ReLU), LSTM, actor and critic heads.

    ``forward(obs, state)`` runs the ``nn.LSTM`` on a sequence of length 1 with ``(h, c)`` of
    shape ``(1, batch, hidden)``, as documented; training uses the shared-weight
    ``forward_step`` / ``forward_sequence``, which also reset the state at episode starts.
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        action_space: gym.spaces.Space,
        hidden_size: int = 256,
        log_std_init: float = 0.0,
    ) -> None:
        heads = EncoderHeads(
            mlp_encoder(observation_space, 128), hidden_size, action_space, log_std_init
        )
        super().__init__(heads, 128, hidden_size)

    def forward(
        self, observations: torch.Tensor, state: State | None = None
    ) -> tuple[torch.Tensor, ...]:
        """``(logits, value, (h, c))`` for one step; state shapes ``(1, batch, hidden)``."""
        features = self.policy.encode_observations(observations)
        if state is None:
            state = tuple(
                s.unsqueeze(0) for s in self.initial_state(len(features), features.device)
            )
        output, new_state = self.lstm(features.unsqueeze(0), state)
        return (*self.policy.decode_actions(output.squeeze(0)), new_state)


class OptimizedLSTMPolicy(RecurrentPolicy):
    """The guide's OptimizedLSTMPolicy: ``encode_observations`` steps an ``nn.LSTMCell`` (rollout)
    and ``decode_actions`` runs an ``nn.LSTM`` over ``[T, B]`` and returns the final state.

    Unlike the guide's sketch, the cell and the LSTM share their weights (the sketch trains one
    and acts with the other, never-trained one), and ``decode_actions`` takes optional
    ``episode_starts[T, B]`` to reset the state where episodes start. The trainer uses the
    faster ``forward_sequence`` (no final state) instead of ``decode_actions``.
    """

    def encode_observations(
        self, observations: torch.Tensor, state: State | None = None
    ) -> tuple[torch.Tensor | State, ...]:
        """``(logits, value, (h, c))`` for one step; state shapes ``(batch, hidden)``."""
        if state is None:
            state = self.initial_state(observations.shape[0], observations.device)
        outputs, state = self.forward_step(observations, state)
        return (*outputs, state)

    def decode_actions(
        self,
        observations: torch.Tensor,
        actions: torch.Tensor | None = None,
        state: State | None = None,
        episode_starts: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor | State, ...]:
        """``(logits, value, final state)`` for ``observations[T, B, ...]``, rows in ``[T, B]``
        order. ``actions`` is accepted for the guide's signature and unused."""
        steps, batch = observations.shape[:2]
        if state is None:
            state = self.initial_state(batch, observations.device)
        if episode_starts is None:
            episode_starts = torch.zeros(steps, batch, dtype=torch.bool, device=observations.device)
        features = self.policy.encode_observations(observations.flatten(0, 1))
        hidden, state = lstm_packed(
            self.lstm, features.view(steps, batch, -1), state, episode_starts.bool()
        )
        return (*self.policy.decode_actions(hidden.flatten(0, 1)), state)
