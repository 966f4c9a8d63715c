"""Rollout collection: time-limit truncations bootstrap, terminations don't."""

from __future__ import annotations

import torch

from puffertrain.config import TrainConfig
from puffertrain.trainer.logger import RunLogger
from puffertrain.trainer.loop import Trainer


def _collect(tmp_path, env_id: str) -> Trainer:
    config = TrainConfig(env=env_id, policy="mlp", num_envs=2, num_steps=12, device="cpu")
    trainer = Trainer(config, tmp_path, None)
    with RunLogger(tmp_path, {}, 100, 0) as logger:
        trainer.collect_rollout(logger)
    return trainer


def test_truncation_is_bootstrapped_from_the_final_observation(tmp_path):
    trainer = _collect(tmp_path, "tests.envs:counting_truncated")
    buffer, gamma = trainer.buffer, trainer.config.ppo.gamma
    with torch.no_grad():
        final_value = trainer.agent.value(torch.tensor([[5.0]])).item()
    ends = buffer.episode_ends[:, 0]
    assert ends.tolist() == [0, 0, 0, 0, 1] * 2 + [0, 0]
    expected = torch.where(ends.bool(), 1.0 + gamma * final_value, 1.0)
    torch.testing.assert_close(buffer.rewards[:, 0], expected)


def test_termination_is_not_bootstrapped(tmp_path):
    trainer = _collect(tmp_path, "tests.envs:counting_terminated")
    assert trainer.buffer.episode_ends[:, 0].tolist() == [0, 0, 0, 0, 1] * 2 + [0, 0]
    assert torch.all(trainer.buffer.rewards == 1.0)
