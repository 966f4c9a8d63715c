"""The one rollout step: training, ``eval`` and ``bench`` all step envs through ``Rollout``."""

from __future__ import annotations

import numpy as np
import pytest

from puffertrain.bench import BenchConfig, bench
from puffertrain.cli import main
from puffertrain.evaluate import EvalConfig, evaluate
from puffertrain.rollout import Rollout


@pytest.fixture
def steps_taken(monkeypatch) -> list[int]:
    """The rows of every batch ``Rollout.receive`` hands back, whoever drives it."""
    taken: list[int] = []
    receive = Rollout.receive

    def counting(self, buffer=None):
        result = receive(self, buffer)
        taken.append(len(result.row_ids))
        return result

    monkeypatch.setattr(Rollout, "receive", counting)
    return taken


def test_train_eval_and_bench_step_through_the_rollout(tmp_path, steps_taken):
    run_dir = tmp_path / "run"
    flags = ["--env", "CartPole-v1", "--num-envs", "2", "--num-steps", "16", "--vec", "serial"]
    main([*flags, "--total-timesteps", "64", "--eval-interval", "0", "--run-dir", str(run_dir)])
    assert steps_taken == [2] * 32  # lockstep: every row comes back at once, 2 updates × 16

    steps_taken.clear()
    scores = evaluate(EvalConfig(checkpoint=run_dir, episodes=2))
    assert len(scores) == 2 and sum(steps_taken) >= 2

    steps_taken.clear()
    config = BenchConfig(
        env="CartPole-v1", num_envs=4, env_batch_size=2, vec="serial", seconds=0.2, windows=2
    )
    config.output = tmp_path / "bench.json"
    bench(config)
    assert steps_taken and set(steps_taken) == {2}  # async batches of 2 envs


def test_bench_holds_no_more_finished_episodes_than_one_step_ends(tmp_path, monkeypatch):
    # kept for a whole measurement they grew, and each garbage collection with them: a
    # quarter of bench's env-only step at 64 CartPole envs
    held = []
    receive = Rollout.receive

    def counting(self, buffer=None):
        held.append(len(self.episodes))
        return receive(self, buffer)

    monkeypatch.setattr(Rollout, "receive", counting)
    config = BenchConfig(env="CartPole-v1", num_envs=4, vec="serial", seconds=0.3, windows=1)
    config.output = tmp_path / "bench.json"
    bench(config)
    assert len(held) > 100 and max(held) <= 4


@pytest.mark.parametrize("rows", [slice(1, 3), np.array([2, 0])])
def test_one_step_for_every_row_writes_where_each_rows_own_step_does(rows):
    import gymnasium as gym
    import torch

    from puffertrain.buffer import RolloutBuffer

    space = gym.spaces.Box(-1.0, 1.0, (2,))
    buffers = [
        RolloutBuffer(4, 3, space, gym.spaces.Discrete(2), torch.device("cpu")) for _ in range(2)
    ]
    for buffer, steps in zip(buffers, (2, np.array([2, 2])), strict=True):
        obs = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
        ones = np.ones(2, dtype=np.float32)
        alive = np.ones(2, dtype=bool)
        buffer.store_step(steps, rows, obs, np.array([1, 0]), ones, ones * 2, None, alive)
        buffer.store_outcome(steps, rows, ones * 3, alive)
        # the path a GPU buffer takes: index tensors, not the numpy views
        step, columns = buffer.index(steps, rows)
        buffer.values[step, columns] += 1
    for name in ("observations", "actions", "log_probs", "values", "rewards", "episode_ends"):
        assert torch.equal(getattr(buffers[0], name), getattr(buffers[1], name)), name
    assert buffers[0].values.sum() == 6  # the writes landed (2 rows × (2 + 1))
