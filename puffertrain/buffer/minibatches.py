"""Minibatches of a filled rollout buffer, as the update consumes them.

Feed-forward policies get minibatches of single transitions; recurrent policies get minibatches
of whole env sequences, each with its stored start state and its episode starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from policies.contract import State

if TYPE_CHECKING:
    from puffertrain.buffer.storage import RolloutBuffer


@dataclass
class Minibatch:
    """Rollout data for one minibatch, flattened over steps and envs.

    For a recurrent policy the minibatch is ``B`` sequences of ``T`` steps: ``observations``
    keep their ``[T, B, ...]`` shape, the other fields are flat in ``[T, B]`` order, and
    ``states`` / ``episode_starts[T, B]`` say where each sequence starts from and resets.

    Multi-agent rollouts add each row's ``agent_ids`` (shaped like ``episode_starts`` for a
    recurrent policy) and ``mask``: 1 where the row's agent acted, 0 for a dead agent's row,
    which then counts in no mean of the loss. A masked env's rollouts add ``action_masks``
    (flat like ``actions``): the masks the actions were sampled under.
    """

    observations: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    values: torch.Tensor
    states: State | None = None
    episode_starts: torch.Tensor | None = None
    agent_ids: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    action_masks: torch.Tensor | None = None


_FIELDS = ("observations", "actions", "log_probs", "advantages", "returns", "values")


def _optional(tensor: torch.Tensor | None, pick: Callable[[torch.Tensor], torch.Tensor]):
    return None if tensor is None else pick(tensor)


def transitions(buffer: RolloutBuffer) -> Minibatch:
    """The whole buffer as one batch of transitions, flat over steps and envs."""
    return Minibatch(
        *(getattr(buffer, field).flatten(0, 1) for field in _FIELDS),
        agent_ids=_optional(buffer.agent_ids, lambda ids: ids.flatten(0, 1)),
        mask=_optional(buffer.alive, lambda alive: alive.flatten(0, 1)),
        action_masks=_optional(buffer.action_masks, lambda masks: masks.flatten(0, 1)),
    )


def _select_transitions(data: Minibatch, index: torch.Tensor) -> Minibatch:
    """Transitions ``index``. ``index_select`` copies whole rows at once, where advanced
    indexing (``tensor[index]``) copies a frame stack element by element."""
    return Minibatch(
        *(getattr(data, field).index_select(0, index) for field in _FIELDS),
        agent_ids=_optional(data.agent_ids, lambda ids: ids.index_select(0, index)),
        mask=_optional(data.mask, lambda mask: mask.index_select(0, index)),
        action_masks=_optional(data.action_masks, lambda masks: masks.index_select(0, index)),
    )


def sequences(buffer: RolloutBuffer) -> Minibatch:
    """The buffer as ``[L, S]`` sequences of ``L = sequence_length`` steps: column
    ``k * num_envs + e`` is env e's k-th sequence, with the state stored at its start."""
    length, num_rows = buffer.sequence_length, buffer.num_rows
    count = buffer.num_steps // length

    def columns(tensor: torch.Tensor) -> torch.Tensor:
        rest = tensor.shape[2:]
        by_sequence = tensor.reshape(count, length, num_rows, *rest).transpose(0, 1)
        return by_sequence.reshape(length, count * num_rows, *rest)

    episode_starts = torch.zeros_like(buffer.episode_ends, dtype=torch.bool)
    episode_starts[1:] = buffer.episode_ends[:-1].bool()
    return Minibatch(
        *(columns(getattr(buffer, field)) for field in _FIELDS),
        states=tuple(part.flatten(0, 1) for part in buffer.start_states),
        episode_starts=columns(episode_starts),
        agent_ids=_optional(buffer.agent_ids, columns),
        mask=_optional(buffer.alive, columns),
        action_masks=_optional(buffer.action_masks, columns),
    )


def whole_buffer(buffer: RolloutBuffer) -> Minibatch:
    """The whole buffer as one minibatch: every transition (feed-forward), or every sequence
    (recurrent) laid out as :func:`_select_sequences` lays out some of them."""
    if buffer.start_states is None:
        return transitions(buffer)
    data = sequences(buffer)
    return _select_sequences(
        data, torch.arange(data.log_probs.shape[1], device=data.log_probs.device)
    )


def whole_buffer_in_parts(buffer: RolloutBuffer, parts: int) -> list[Minibatch]:
    """:func:`whole_buffer` in order: in ``parts`` consecutive runs of transitions
    (feed-forward), so a pass over them holds no more activations than one of the update's
    minibatches; or whole, every sequence at once (recurrent). Their results, concatenated,
    are :func:`as_steps`'s input."""
    data = whole_buffer(buffer)
    if buffer.start_states is not None:
        return [data]
    rows = torch.arange(len(data.actions), device=data.actions.device)
    return [_select_transitions(data, run) for run in rows.chunk(parts)]


def as_steps(buffer: RolloutBuffer, flat: torch.Tensor) -> torch.Tensor:
    """A per-row result over :func:`whole_buffer`'s rows, back in the buffer's
    ``[num_steps, num_rows]`` layout."""
    if buffer.start_states is None:
        return flat.reshape(buffer.num_steps, buffer.num_rows)
    length, num_rows = buffer.sequence_length, buffer.num_rows
    by_sequence = flat.reshape(length, buffer.num_steps // length, num_rows).transpose(0, 1)
    return by_sequence.reshape(buffer.num_steps, num_rows)


def _select_sequences(data: Minibatch, index: torch.Tensor) -> Minibatch:
    """Sequences ``index``: observations, episode starts and agent ids stay ``[T, B, ...]``,
    the rest flat in that order."""
    flat = [getattr(data, field).index_select(1, index).flatten(0, 1) for field in _FIELDS[1:]]
    return Minibatch(
        data.observations.index_select(1, index),
        *flat,
        states=tuple(part.index_select(0, index) for part in data.states),
        episode_starts=data.episode_starts.index_select(1, index),
        agent_ids=_optional(data.agent_ids, lambda ids: ids.index_select(1, index)),
        mask=_optional(data.mask, lambda mask: mask.index_select(1, index).flatten(0, 1)),
        action_masks=_optional(
            data.action_masks, lambda masks: masks.index_select(1, index).flatten(0, 1)
        ),
    )


def shuffled_epochs(
    buffer: RolloutBuffer, num_minibatches: int, epochs: int
) -> Iterator[Iterator[Minibatch]]:
    """``epochs`` passes over the buffer, each a fresh shuffle cut into ``num_minibatches``
    minibatches of transitions (feed-forward) or whole sequences (recurrent). Each pass draws
    its order when it starts, so a caller may stop at any minibatch (``--target-kl``) without
    drawing the passes it skips.

    One minibatch is the whole buffer in every pass, as it is: its loss is a mean over the
    rows, which no order changes, and a shuffled copy of every field cost a small policy's
    update step ~3% (the classic-control preset's 20 passes of one minibatch)."""
    recurrent = buffer.start_states is not None
    if num_minibatches == 1:
        whole = whole_buffer(buffer)
        for _ in range(epochs):
            yield iter((whole,))
        return
    data = sequences(buffer) if recurrent else transitions(buffer)
    select = _select_sequences if recurrent else _select_transitions
    num_samples = data.log_probs.shape[1 if recurrent else 0]  # sequences or transitions
    size = num_samples // num_minibatches
    for _ in range(epochs):
        order = torch.randperm(num_samples, device=data.log_probs.device)
        yield (
            select(data, order[start : start + size])
            for start in range(0, num_samples - size + 1, size)
        )
