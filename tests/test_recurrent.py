"""Recurrent PPO: shared LSTM/LSTMCell weights, exact resets, rollout/update equivalence."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

from policies import POLICIES, LSTMPolicy, OptimizedLSTMPolicy, RecurrentPolicy
from policies.checks import check_gradients, check_output_shapes, sample_observations
from policies.recurrent import Segments, _length_groups, lstm_over_segments, lstm_packed
from puffertrain.buffer.minibatches import sequences
from puffertrain.presets import preset_for
from puffertrain.trainer.checkpoint import list_checkpoints, load_checkpoint
from puffertrain.trainer.loop import Trainer
from tests.conftest import run_cli
from tests.test_resume import assert_same_run, resume_after_a_crash

VECTOR = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
IMAGE = gym.spaces.Box(0, 255, (4, 44, 44), np.uint8)
# MiniGrid's observation: an image whose bounds differ by channel, and a direction
GRID = gym.spaces.Dict(
    {
        "image": gym.spaces.Box(
            0, np.broadcast_to(np.array([10, 5, 2], np.uint8), (5, 5, 3)), dtype=np.uint8
        ),
        "direction": gym.spaces.Discrete(4),
    }
)
ACTIONS = gym.spaces.Discrete(3)
RECURRENT = [
    pytest.param(lambda: LSTMPolicy(VECTOR, ACTIONS, hidden_size=16), VECTOR, id="lstm-mlp"),
    pytest.param(lambda: LSTMPolicy(IMAGE, ACTIONS, hidden_size=16), IMAGE, id="lstm-cnn"),
    pytest.param(lambda: LSTMPolicy(GRID, ACTIONS, hidden_size=16), GRID, id="lstm-dict"),
    pytest.param(
        lambda: LSTMPolicy(VECTOR, ACTIONS, hidden_size=16, critic_lstm=True),
        VECTOR,
        id="lstm-critic-lstm",
    ),
    pytest.param(lambda: RecurrentPolicy(VECTOR, ACTIONS, hidden_size=16), VECTOR, id="docs"),
    pytest.param(
        lambda: OptimizedLSTMPolicy(VECTOR, ACTIONS, hidden_size=16), VECTOR, id="optimized"
    ),
]


def stepped(policy, observations, state, episode_starts):
    """Reference: the LSTMCell one step at a time, state zeroed at each episode start."""
    logits, values = [], []
    for t in range(observations.shape[0]):
        keep = (~episode_starts[t]).float().unsqueeze(1)
        state = tuple(part * keep for part in state)
        (step_logits, step_values), state = policy.forward_step(observations[t], state)
        logits.append(step_logits)
        values.append(step_values)
    return torch.cat(logits), torch.cat(values), state


def random_inputs(space, steps, batch, seed=0):
    generator = torch.Generator().manual_seed(seed)
    if isinstance(space, gym.spaces.Dict):  # flat byte rows, as the engine gives them
        space.seed(seed)
        obs = sample_observations(space, steps * batch).view(steps, batch, -1)
    elif space.dtype == np.uint8:
        obs = torch.randint(0, 256, (steps, batch, *space.shape), generator=generator)
        obs = obs.to(torch.uint8)
    else:
        obs = torch.randn(steps, batch, *space.shape, generator=generator)
    starts = torch.rand(steps, batch, generator=generator) < 0.2
    starts[3, 0] = starts[0, 1] = True  # an episode start inside a sequence and at its start
    return obs, starts


@pytest.mark.parametrize("make, space", RECURRENT)
def test_sequence_path_equals_stepping_with_resets(make, space):
    torch.manual_seed(0)
    policy = make()
    obs, starts = random_inputs(space, steps=12, batch=5)
    state = tuple(torch.randn_like(part) for part in policy.initial_state(5))
    actor_state = tuple(part[:, :16] for part in state)  # a critic LSTM's state comes after
    with torch.no_grad():
        logits, values = policy.forward_sequence(obs, state, starts)
        expected_logits, expected_values, expected_state = stepped(policy, obs, state, starts)
        packed_hidden, packed_state = lstm_packed(
            policy.lstm,
            policy.policy.encode_observations(obs.flatten(0, 1)).view(12, 5, -1),
            actor_state,
            starts,
        )
    torch.testing.assert_close(logits, expected_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(values, expected_values, atol=1e-5, rtol=0)
    for part, expected in zip(packed_state, expected_state, strict=True):
        torch.testing.assert_close(part, expected[:, :16], atol=1e-5, rtol=0)
    torch.testing.assert_close(
        policy.policy.decode_actions(packed_hidden.flatten(0, 1))[0],
        expected_logits,
        atol=1e-5,
        rtol=0,
    )


def test_reset_is_exact():
    """After an episode start, outputs equal feeding the rest alone from a zero state."""
    torch.manual_seed(1)
    policy = LSTMPolicy(VECTOR, ACTIONS, hidden_size=16)
    obs = torch.randn(10, 3, 4)
    starts = torch.zeros(10, 3, dtype=torch.bool)
    starts[6] = True
    state = tuple(torch.randn(3, 16) for _ in range(2))
    with torch.no_grad():
        logits, values = policy.forward_sequence(obs, state, starts)
        fresh_logits, fresh_values = policy.forward_sequence(
            obs[6:], policy.initial_state(3), torch.zeros(4, 3, dtype=torch.bool)
        )
    torch.testing.assert_close(logits.view(10, 3, -1)[6:].flatten(0, 1), fresh_logits)
    torch.testing.assert_close(values.view(10, 3)[6:].flatten(), fresh_values.flatten())
    assert not torch.allclose(logits.view(10, 3, -1)[:6], fresh_logits.view(4, 3, -1)[:1])


def test_segments_of_mixed_lengths_are_exact():
    """Long and short segments mixed, run in several LSTM calls."""
    torch.manual_seed(2)
    lstm = torch.nn.LSTM(8, 8)
    features = torch.randn(64, 6, 8)
    starts = torch.zeros(64, 6, dtype=torch.bool)
    starts[[1, 2, 3, 5, 9, 17, 33], 0] = True
    starts[40, 1] = True
    starts[::3, 2] = True
    state = tuple(torch.randn(6, 8) for _ in range(2))
    lengths = sorted(Segments.of(starts).lengths.tolist(), reverse=True)
    assert len(set(_length_groups(lengths))) > 1
    expected, _ = lstm_packed(lstm, features, state, starts)
    torch.testing.assert_close(lstm_over_segments(lstm, features, state, starts), expected)


def test_lstm_and_cell_share_weights():
    policy = LSTMPolicy(VECTOR, ACTIONS, hidden_size=16)
    weights = policy.lstm.weight_hh_l0.detach()  # orthogonal, gain 1
    torch.testing.assert_close(weights.T @ weights, torch.eye(16), atol=1e-5, rtol=0)
    assert not policy.lstm.bias_ih_l0.any() and not policy.lstm.bias_hh_l0.any()
    policy.double()  # moving or casting the module keeps the tensors shared
    assert policy.cell.weight_ih.dtype == torch.float64
    policy.float()
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        assert getattr(policy.cell, name) is getattr(policy.lstm, f"{name}_l0")
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.1)
    before = policy.cell.weight_hh.detach().clone()
    logits, _ = policy.forward_sequence(
        torch.randn(5, 2, 4), policy.initial_state(2), torch.zeros(5, 2, dtype=torch.bool)
    )
    logits.sum().backward()
    optimizer.step()
    assert not torch.equal(policy.cell.weight_hh, before)  # the cell sees the trained weights


@pytest.mark.parametrize("make, space", RECURRENT)
def test_docs_debugging_checks(make, space):
    policy = make()
    check_output_shapes(policy, space, ACTIONS)
    check_gradients(policy, space)


def test_docs_forward_signatures():
    obs = torch.randn(6, 4)
    logits, value, (h, c) = RecurrentPolicy(VECTOR, ACTIONS)(obs)
    assert logits.shape == (6, 3) and value.shape == (6, 1) and h.shape == c.shape == (1, 6, 256)
    optimized = OptimizedLSTMPolicy(VECTOR, ACTIONS)
    logits, value, (h, c) = optimized.encode_observations(obs, None)
    assert logits.shape == (6, 3) and h.shape == (6, 256)
    logits, value, (h, c) = optimized.decode_actions(torch.randn(5, 6, 4), None, None)
    assert logits.shape == (30, 3) and value.shape == (30, 1) and h.shape == (6, 256)


def make_trainer(tmp_path, sequence_length: int = 0, **changes) -> Trainer:
    config = preset_for("classic_control")
    config = dataclasses.replace(
        config,
        env="CartPole-v1",
        policy="lstm",
        device="cpu",
        num_envs=4,
        num_steps=64,
        total_timesteps=4 * 64 * 2,
        ppo=dataclasses.replace(config.ppo, sequence_length=sequence_length),
        **changes,
    )
    config.validate()
    return Trainer(config, tmp_path / "run", None)


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"vec": "serial"}, id="serial"),
        pytest.param({"vec": "multiprocessing", "num_workers": 1}, id="multiprocessing"),
        pytest.param({"vec": "multiprocessing", "env_batch_size": 1}, id="async"),
        pytest.param({"vec": "serial", "env_batch_size": 2}, id="serial-async"),
    ],
)
@pytest.mark.parametrize("sequence_length", [0, 16])
def test_update_path_recomputes_the_rollout(tmp_path, changes, sequence_length):
    """Before any update, log-probs and values from the update path equal the rollout's.

    Episodes are cut at 16 steps, so every env ends at least three inside the rollout
    whatever the actions: async batches come back in the order the envs finish, which changes
    the sampled actions, and with random-length episodes alone the count fell below the check's
    8 in ~8% of runs.
    """
    trainer = make_trainer(
        tmp_path, sequence_length, env_kwargs='{"max_episode_steps": 16}', **changes
    )
    try:
        trainer.rollout.collect(trainer.buffer)
        trainer.rollout.collect(trainer.buffer)  # the second starts from carried-over states
    finally:
        trainer.engine.close()
    buffer = trainer.buffer
    ends_inside = buffer.episode_ends[:-1].sum()
    assert ends_inside >= 8, "the rollout should hold several episode ends"
    data = sequences(buffer)
    with torch.no_grad():
        log_probs, _, values = trainer.adapter.evaluate(
            data.observations, data.actions.flatten(0, 1), data.states, data.episode_starts
        )
    torch.testing.assert_close(log_probs, data.log_probs.flatten(), atol=1e-5, rtol=0)
    torch.testing.assert_close(values, data.values.flatten(), atol=1e-5, rtol=0)


RESUME_ARGS = [
    "--env",
    "CartPole-v1",
    "--policy",
    "lstm",
    "--vec",
    "serial",
    "--device",
    "cpu",
    "--seed",
    "3",
    "--num-envs",
    "8",  # 256 steps per update: 12 updates
    "--total-timesteps",
    str(256 * 12),
    "--checkpoint-interval",
    "6",
    "--keep-checkpoints",
    "10",
]


def test_resumed_recurrent_run_is_identical(tmp_path):
    """The per-env LSTM state is part of the checkpoint: resuming from iteration 6 ends
    exactly where the uninterrupted run ends."""
    uninterrupted = tmp_path / "uninterrupted"
    result = run_cli(*RESUME_ARGS, "--run-dir", str(uninterrupted))
    assert result.returncode == 0, result.stderr
    state = load_checkpoint(list_checkpoints(uninterrupted)[0]).ranks[0].policy_state
    assert state[0].abs().sum() > 0, "episodes should be in progress at the checkpoint"

    crashed = tmp_path / "crashed"
    resume_after_a_crash(uninterrupted, crashed, 6)
    assert_same_run(crashed, uninterrupted, updates=12)


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--vec", "multiprocessing", "--env-batch-size", "4"], id="async-mp"),
        pytest.param(["--vec", "serial", "--sequence-length", "8", "--compile"], id="compiled"),
    ],
)
def test_lstm_trains_from_the_cli(tmp_path, args):
    run_dir = tmp_path / "run"
    result = run_cli(
        "--env", "CartPole-v1", "--policy", "lstm", "--device", "cpu", "--num-envs", "8",
        "--num-steps", "32", "--total-timesteps", "768", "--run-dir", str(run_dir), *args,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert load_checkpoint(list_checkpoints(run_dir)[-1]).global_step == 768


def test_lstm_trains_on_a_dict_observation(tmp_path, cli):
    """`--policy lstm` on MiniGrid's Dict observations was refused ("needs a Box, Discrete,
    MultiDiscrete or MultiBinary observation space"); it now encodes each leaf as multi_input
    does, as sb3-contrib's MultiInputLstmPolicy."""
    run_dir = tmp_path / "run"
    result = cli(
        "--env", "tests.space_envs:grid_image", "--policy", "lstm", "--num-envs", "2",
        "--num-steps", "16", "--total-timesteps", "64", "--run-dir", str(run_dir),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert load_checkpoint(list_checkpoints(run_dir)[-1]).global_step == 64


def test_lstm_on_breakout_with_the_native_engine(tmp_path, cli):
    """Nature CNN + LSTM on stacked Atari frames, async native batches."""
    run_dir = tmp_path / "run"
    result = cli(
        "--env", "ALE/Breakout-v5", "--policy", "lstm", "--device", "cpu", "--num-envs", "4",
        "--env-batch-size", "2", "--num-steps", "16", "--num-minibatches", "2",
        "--total-timesteps", "128", "--no-compile", "--run-dir", str(run_dir),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    checkpoint = load_checkpoint(list_checkpoints(run_dir)[-1])
    assert checkpoint.global_step == 128
    assert checkpoint.ranks[0].policy_state[0].shape == (4, 128)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sequence-length", "5"], "--sequence-length 5 must divide --num-steps 32"),
        (["--num-envs", "2", "--num-minibatches", "4"], "exceeds the 2 sequences"),
    ],
)
def test_recurrent_settings_a_run_cannot_use(args, message, cli):
    result = cli(
        "--env", "CartPole-v1", "--policy", "lstm", "--num-steps", "32", "--vec", "serial",
        "--total-timesteps", "64", *args,
    )  # fmt: skip
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_policy_list_names_the_recurrent_policies(cli):
    result = cli("--list-policies")
    for name in ("lstm", "recurrent", "optimized_lstm"):
        assert name in POLICIES
        assert f"\n{name} " in result.stdout


def test_eval_plays_a_recurrent_checkpoint(tmp_path, cli):
    run_dir = tmp_path / "run"
    result = cli(
        "--env", "CartPole-v1", "--policy", "lstm", "--vec", "serial", "--device", "cpu",
        "--total-timesteps", "512", "--run-dir", str(run_dir),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    result = cli("eval", "--checkpoint", str(run_dir), "--episodes", "3", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "game 3: score" in result.stdout


def test_bench_measures_a_recurrent_rollout(tmp_path, cli):
    result = cli(
        "bench", "--env", "CartPole-v1", "--policy", "lstm", "--vec", "serial", "--num-envs", "4",
        "--env-batch-size", "2", "--seconds", "1", "--output", str(tmp_path / "bench.json"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "rollout SPS" in result.stdout
