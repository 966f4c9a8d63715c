"""Each pass of the update sees every stored transition exactly once."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from puffertrain.buffer import RolloutBuffer


def filled_buffer() -> RolloutBuffer:
    buffer = RolloutBuffer(
        16, 4, gym.spaces.Box(-1, 1, (3,), np.float32), gym.spaces.Discrete(5), torch.device("cpu")
    )
    buffer.log_probs.copy_(torch.arange(64.0).reshape(16, 4))  # each transition's own label
    buffer.observations.copy_(buffer.log_probs.unsqueeze(-1).expand(16, 4, 3))
    return buffer


@pytest.mark.parametrize("num_minibatches", [1, 4])
def test_every_pass_covers_the_buffer_once_with_rows_kept_together(num_minibatches):
    buffer = filled_buffer()
    passes = [list(epoch) for epoch in buffer.minibatches(num_minibatches, 3)]
    assert len(passes) == 3
    for minibatches in passes:
        assert len(minibatches) == num_minibatches
        labels = torch.cat([batch.log_probs for batch in minibatches])
        assert sorted(labels.tolist()) == list(range(64))
        for batch in minibatches:  # every field of a row comes from the same transition
            assert torch.equal(batch.observations[:, 0], batch.log_probs)


def test_one_minibatch_is_the_buffer_itself_and_draws_no_random_numbers():
    buffer = filled_buffer()
    generator_state = torch.get_rng_state()
    (batch,) = next(iter(buffer.minibatches(1, 1)))
    assert torch.equal(torch.get_rng_state(), generator_state)
    assert batch.log_probs.data_ptr() == buffer.log_probs.data_ptr()  # a view, not a copy


def recurrent_buffer() -> RolloutBuffer:
    state = (torch.zeros(4, 2), torch.zeros(4, 2))
    buffer = RolloutBuffer(
        16, 4, gym.spaces.Box(-1, 1, (3,), np.float32), gym.spaces.Discrete(5),
        torch.device("cpu"), initial_state=state, sequence_length=8,
    )  # fmt: skip
    buffer.log_probs.copy_(torch.arange(64.0).reshape(16, 4))
    buffer.actions.copy_(torch.arange(64).reshape(16, 4) % 5)
    buffer.observations.copy_(buffer.log_probs.unsqueeze(-1).expand(16, 4, 3))
    return buffer


@pytest.mark.parametrize("num_minibatches", [1, 2])
def test_recurrent_minibatches_are_sequences_with_their_steps_flat(num_minibatches):
    # one minibatch was the buffer's [T, B] columns as they were: the actions reached the
    # score two-dimensional, and `--policy lstm --num-minibatches 1` crashed in it
    (first, *_), *_ = [list(epoch) for epoch in recurrent_buffer().minibatches(num_minibatches, 1)]
    sequences = 8 // num_minibatches
    assert first.observations.shape == (8, sequences, 3)
    assert first.actions.shape == first.log_probs.shape == (8 * sequences,)
    # step t of sequence b is row t * sequences + b of every flat field
    assert torch.equal(first.observations[..., 0].flatten(), first.log_probs)
    assert torch.equal(first.log_probs.long() % 5, first.actions)


def test_as_steps_puts_the_whole_buffers_rows_back_where_they_were_stored():
    from puffertrain.buffer.minibatches import as_steps, whole_buffer

    for buffer in (filled_buffer(), recurrent_buffer()):
        assert torch.equal(as_steps(buffer, whole_buffer(buffer).log_probs), buffer.log_probs)
