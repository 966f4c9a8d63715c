"""Rollout collection: time-limit truncations bootstrap, terminations don't."""

from __future__ import annotations

import signal

import numpy as np
import pytest
import torch

from puffertrain.config import PPOConfig, TrainConfig
from puffertrain.trainer import loop
from puffertrain.trainer.checkpoint import list_checkpoints, load_checkpoint
from puffertrain.trainer.loop import Trainer
from tests.envs import SignalledInEval
from tests.test_resume import scalars


def _collect(tmp_path, env_id: str) -> Trainer:
    config = TrainConfig(env=env_id, policy="mlp", num_envs=2, num_steps=12, device="cpu")
    trainer = Trainer(config, tmp_path, None)
    trainer.rollout.collect(trainer.buffer)
    return trainer


def test_truncation_is_bootstrapped_from_the_final_observation(tmp_path):
    trainer = _collect(tmp_path, "tests.envs:counting_truncated")
    buffer, gamma = trainer.buffer, trainer.config.ppo.gamma
    with torch.no_grad():
        final_value = trainer.adapter.value(torch.tensor([[5.0]])).item()
    ends = buffer.episode_ends[:, 0]
    assert ends.tolist() == [0, 0, 0, 0, 1] * 2 + [0, 0]
    expected = torch.where(ends.bool(), 1.0 + gamma * final_value, 1.0)
    torch.testing.assert_close(buffer.rewards[:, 0], expected)


def test_the_bootstrap_leaves_the_engines_rewards_as_the_env_gave_them(tmp_path, monkeypatch):
    trainer = Trainer(
        TrainConfig(env="tests.envs:counting_truncated", policy="mlp", num_envs=2, num_steps=12),
        tmp_path,
        None,
    )
    rollout, engine = trainer.rollout, trainer.rollout.engine
    recv, receive = engine.recv, rollout.receive
    as_stepped, truncations = [], []

    def recording_recv():
        result = recv()
        as_stepped.append(result.rewards.copy())
        return result

    def checking_receive(buffer=None):
        result = receive(buffer)
        truncations.append(result.truncations.any())
        np.testing.assert_array_equal(result.rewards, as_stepped[-1])
        return result

    monkeypatch.setattr(engine, "recv", recording_recv)
    monkeypatch.setattr(rollout, "receive", checking_receive)
    rollout.collect(trainer.buffer)
    assert any(truncations)


def test_termination_is_not_bootstrapped(tmp_path):
    trainer = _collect(tmp_path, "tests.envs:counting_terminated")
    assert trainer.buffer.episode_ends[:, 0].tolist() == [0, 0, 0, 0, 1] * 2 + [0, 0]
    assert torch.all(trainer.buffer.rewards == 1.0)


def test_a_users_policy_class_trains_and_evaluates(tmp_path, capsys):
    from puffertrain.cli import main
    from puffertrain.trainer.checkpoint import list_checkpoints, load_checkpoint

    run_dir = tmp_path / "user"
    main(
        [
            "--env",
            "CartPole-v1",
            "--policy",
            "tests.user_policy:TinyPolicy",
            "--device",
            "cpu",
            "--total-timesteps",
            "512",
            "--run-dir",
            str(run_dir),
        ]
    )
    state = load_checkpoint(list_checkpoints(run_dir)[-1]).policy
    # inside the classic-control preset's observation normalisation
    assert state["policy.body.0.weight"].shape == (16, 4)

    capsys.readouterr()
    main(["eval", "--checkpoint", str(run_dir), "--episodes", "3", "--deterministic"])
    out = capsys.readouterr().out
    assert out.count("game ") == 3 and "CartPole-v1: " in out and "over 3 games" in out


def test_restarted_episodes_after_a_resume_start_from_zero_state(tmp_path, capsys):
    """An env whose state is not saved restarts its episodes on resume: the recurrent state
    and the running returns of the old episodes must not carry over to the new ones."""
    config = TrainConfig(
        env="tests.envs:uncapturable",
        policy="lstm",
        num_envs=2,
        num_steps=8,
        vec="serial",
        normalize_reward=True,
        ppo=PPOConfig(num_minibatches=2),
    )
    trainer = Trainer(config, tmp_path, None)
    for part in trainer.rollout.state:
        part.fill_(1.0)
    trainer.rollout.reward_normalizer.returns[:] = 5.0
    resumed = Trainer(config, tmp_path, load_checkpoint(trainer.save()))
    said = capsys.readouterr()
    assert "its episodes restart" in said.err and said.out == ""  # stdout stays the user's
    assert all(bool((part == 0).all()) for part in resumed.rollout.state)
    assert not resumed.rollout.reward_normalizer.returns.any()


def test_a_budget_that_is_not_whole_updates_is_said(tmp_path, cli):
    result = cli(
        "--env", "CartPole-v1", "--policy", "mlp", "--num-envs", "2", "--num-steps", "100",
        "--total-timesteps", "500", "--vec", "serial", "--run-dir", str(tmp_path / "run"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "training 400 steps: whole updates of 200 (2 rows × 100 steps)" in result.stderr


def test_a_signal_once_the_runs_files_exist_stops_with_a_checkpoint(tmp_path, monkeypatch):
    """A sweep's Ctrl-C reaches a trial as soon as its TensorBoard file exists: the stop handler
    must already be in place (it was installed just after, and such a trial died without a
    checkpoint)."""

    class SignalledLogger(loop.RunLogger):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(loop, "RunLogger", SignalledLogger)
    config = TrainConfig(
        env="CartPole-v1", num_envs=2, num_steps=16, total_timesteps=320, vec="serial", device="cpu"
    )
    trainer = Trainer(config, tmp_path, None)
    try:
        trainer.train()
    except KeyboardInterrupt:
        pytest.fail("the signal arrived before the stop handler")
    assert [load_checkpoint(path).global_step for path in list_checkpoints(tmp_path)] == [32]


def test_a_signal_during_an_evaluation_cuts_it_short_and_saves_that_update(tmp_path, monkeypatch):
    """A stop asked for while the run evaluated was seen only after the next rollout, update
    and evaluation (a CarRacing run checkpointed 75 s after SIGTERM: past the grace period of
    Slurm or `docker stop`)."""
    runs = ("stopped", "straight")
    config = TrainConfig(
        env="tests.envs:signalled_in_eval",
        num_envs=2,
        num_steps=16,
        total_timesteps=320,
        vec="serial",
        device="cpu",
        eval_interval=1,
        eval_episodes=2,
    )
    monkeypatch.setattr(SignalledInEval, "signalled", False)
    trainer = Trainer(config, tmp_path / "stopped", None)
    assert trainer.train() == signal.SIGTERM
    (saved,) = [load_checkpoint(path) for path in list_checkpoints(tmp_path / "stopped")]
    assert saved.global_step == 32 and saved.evaluation["owed"]
    # resumed, it plays the evaluation it owes first: it evaluates when and on the seeds an
    # uninterrupted run does (its every evaluation at every step, the same returns)
    assert Trainer(config, tmp_path / "stopped", saved).train() is None
    assert Trainer(config, tmp_path / "straight", None).train() is None
    stopped, straight = (scalars(tmp_path / run)["eval/episodic_return"] for run in runs)
    assert stopped == straight and [step for step, _ in stopped][:2] == [32, 64]
