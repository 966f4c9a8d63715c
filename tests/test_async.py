"""Async batches: every env's steps arrive once each, in order, on every backend."""

from __future__ import annotations

import json
import os
import signal
import time

import numpy as np
import pytest
import torch
import torch.nn as nn

from puffertrain.buffer import RolloutBuffer
from puffertrain.config import TrainConfig
from puffertrain.engine import (
    Engine,
    EnvError,
    NativeAtariEngine,
    SerialEngine,
    multiprocessing_engine,
)
from puffertrain.envs import env_factory
from puffertrain.envs.atari import atari_settings
from puffertrain.ppo import PolicyAdapter
from puffertrain.rollout import Rollout
from puffertrain.trainer.loop import Trainer
from tests.conftest import run_cli
from tests.test_multiprocessing import no_orphans  # noqa: F401 (a fixture)

CPU = torch.device("cpu")


class ObservationHash(nn.Module):
    """Picks an action that depends only on the row's own observation (its logits put all the
    probability on one action), so each env's trajectory is the same whatever order the
    batches come back in."""

    def __init__(self, num_actions: int) -> None:
        super().__init__()
        self.num_actions = num_actions

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        code = (obs.double().abs().flatten(1).sum(1) * 1000).long() % self.num_actions
        logits = torch.nn.functional.one_hot(code, self.num_actions).float() * 1e4
        return logits, torch.zeros(len(obs), 1)


def _drive(envs: Engine, steps_per_env: int, num_actions: int) -> dict[int, list]:
    """Collect one rollout of ``steps_per_env`` steps per env through the trainer's rollout
    step; return each env's observations in the order it acted on them."""
    action_space = envs.single_action_space
    rollout = Rollout(envs, PolicyAdapter(ObservationHash(num_actions), action_space), CPU)
    space = envs.single_observation_space
    buffer = RolloutBuffer(steps_per_env, envs.num_rows, space, action_space, CPU)
    rollout.reset(0)
    rollout.collect(buffer)
    assert (rollout.row_steps == steps_per_env).all()
    return {env: list(buffer.observations[:, env].numpy()) for env in range(envs.num_rows)}


def _assert_same_trajectories(expected: dict[int, list], actual: dict[int, list]) -> None:
    assert sorted(expected) == sorted(actual)
    for env in expected:
        assert len(actual[env]) == len(expected[env]), f"env {env} lost or repeated a step"
        np.testing.assert_array_equal(np.stack(actual[env]), np.stack(expected[env]))


@pytest.mark.parametrize("batch_size", [2, 4])
def test_async_multiprocessing_steps_each_env_once_and_in_order(batch_size, no_orphans):  # noqa: F811
    factory = env_factory("CartPole-v1")
    reference = _drive(SerialEngine([factory] * 8), 60, 2)
    workers = multiprocessing_engine([factory] * 8, num_workers=4, batch_size=batch_size)
    try:
        assert workers.group_size == 2 and workers.batch_size == batch_size
        _assert_same_trajectories(reference, _drive(workers, 60, 2))
    finally:
        workers.close()


def test_async_serial_matches_synchronous():
    factory = env_factory("CartPole-v1")
    reference = _drive(SerialEngine([factory] * 6), 80, 2)
    _assert_same_trajectories(reference, _drive(SerialEngine([factory] * 6, batch_size=3), 80, 2))


def test_async_native_batches_match_synchronous():
    settings = atari_settings("ALE/Breakout-v5", {})
    synchronous = NativeAtariEngine(settings, 8, num_threads=2)
    batched = NativeAtariEngine(settings, 8, num_threads=2, batch_size=4)
    try:
        _assert_same_trajectories(_drive(synchronous, 120, 4), _drive(batched, 120, 4))
    finally:
        synchronous.close()
        batched.close()


def test_send_refuses_part_of_a_group():
    envs = SerialEngine([env_factory("CartPole-v1")] * 4, batch_size=2)
    envs.reset(0)
    with pytest.raises(ValueError, match="not whole groups"):
        envs.send(np.zeros(1, dtype=np.int64), np.array([1]))


@pytest.mark.parametrize("vec", ["serial", "multiprocessing"])
def test_rollout_columns_hold_each_envs_steps_in_order(tmp_path, vec, no_orphans):  # noqa: F811
    config = TrainConfig(
        env="tests.envs:counting_terminated",
        policy="mlp",
        num_envs=6,
        num_steps=13,
        env_batch_size=2,
        num_workers=3,
        vec=vec,
        device="cpu",
    )
    trainer = Trainer(config, tmp_path, None)
    try:
        for _ in range(2):  # the second rollout starts where the first left off
            trainer.rollout.collect(trainer.buffer)
            observations = trainer.buffer.observations[..., 0]
            expected = torch.arange(13).remainder(5)
            if trainer.global_step > 6 * 13:
                expected = torch.arange(13, 26).remainder(5)
            for env in range(6):
                assert observations[:, env].tolist() == expected.tolist()
                assert (
                    trainer.buffer.episode_ends[:, env].tolist() == (expected == 4).float().tolist()
                )
        assert trainer.global_step == 2 * 6 * 13
    finally:
        trainer.engine.close()


def _keep_stepping(envs: Engine, batches: int) -> None:
    """Send each returned batch straight back, ``batches`` times (actions 0)."""
    for _ in range(batches):
        result = envs.recv()
        envs.send(np.zeros(len(result.row_ids), dtype=np.int64), result.row_ids)


def test_an_env_that_raises_in_an_async_worker_is_named(no_orphans):  # noqa: F811
    workers = multiprocessing_engine(
        [env_factory("tests.envs:raising")] * 4, num_workers=2, batch_size=2
    )
    workers.reset(0)
    workers.send(np.zeros(4, dtype=np.int64), np.arange(4))
    start = time.monotonic()
    # env 3 raises on its fifth step, but which worker answers first is up to the scheduler (on
    # a loaded machine one can answer 40 batches in a row): step for up to 10 s
    with pytest.raises(EnvError, match=r"^env 3 raised:"):
        while time.monotonic() - start < 10:
            _keep_stepping(workers, 10)


def test_a_killed_async_worker_is_detected_within_seconds(no_orphans):  # noqa: F811
    workers = multiprocessing_engine([env_factory("CartPole-v1")] * 4, num_workers=2, batch_size=2)
    workers.reset(0)
    workers.send(np.zeros(4, dtype=np.int64), np.arange(4))
    os.kill(workers._processes[1].pid, signal.SIGKILL)
    start = time.monotonic()
    # worker 0 keeps answering, so the death shows at the next liveness check (every
    # POLL_S): step for up to 3 s, not a count of batches a fast CPU gets through sooner
    with pytest.raises(EnvError, match=r"env worker 1 \(envs 2-3\): died with exit code -9"):
        while time.monotonic() - start < 3:
            _keep_stepping(workers, 100)


def test_training_with_async_batches_runs_end_to_end(tmp_path, no_orphans):  # noqa: F811
    run_dir = tmp_path / "async"
    result = run_cli(
        "--env",
        "MountainCar-v0",  # CartPole-v1 gets its own vector env
        "--policy",
        "mlp",
        "--num-envs",
        "4",
        "--env-batch-size",
        "2",
        "--total-timesteps",
        "512",
        "--device",
        "cpu",
        "--run-dir",
        str(run_dir),
    )
    assert result.returncode == 0, result.stderr
    assert "multiprocessing" in result.stderr and "async batches" in result.stderr
    assert list((run_dir / "checkpoints").glob("step_*.pt"))


def test_a_batch_size_that_does_not_divide_the_envs_is_refused(tmp_path, cli):
    result = cli(
        "--env",
        "CartPole-v1",
        "--num-envs",
        "8",
        "--env-batch-size",
        "3",
        "--run-dir",
        str(tmp_path / "never"),
    )
    assert result.returncode == 2
    assert "--env-batch-size 3 must divide --num-envs 8" in result.stderr
    assert not (tmp_path / "never").exists()


def test_bench_measures_async_batches_beside_gymnasium(tmp_path, no_orphans, cli):  # noqa: F811
    output = tmp_path / "bench.json"
    result = cli(
        "bench",
        "--env",
        "CartPole-v1",
        "--vec",
        "multiprocessing",
        "--num-envs",
        "4",
        "--env-batch-size",
        "2",
        "--seconds",
        "0.3",
        "--windows",
        "1",
        "--compare",
        "--output",
        str(output),
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(output.read_text())["rows"]
    assert [row["engine"] for row in rows] == [
        "puffertrain multiprocessing (batches of 2)",
        "gymnasium SyncVectorEnv",
        "gymnasium AsyncVectorEnv",
    ]
    assert all(row["env_sps"] > 0 and row["rollout_sps"] > 0 for row in rows)


def test_auto_takes_workers_for_async_batches():
    """MountainCar has no vector entry point of its own (CartPole-v1 would get it)."""
    from puffertrain.engine import choose_backend

    factory = env_factory("MountainCar-v0")
    backend, reason = choose_backend("auto", "MountainCar-v0", factory, 8, batch_size=4)
    if (os.cpu_count() or 1) > 1:
        assert backend == "multiprocessing" and "async batches" in reason
    assert choose_backend("auto", "ALE/Breakout-v5", None, 8, batch_size=4)[0] == "native"
