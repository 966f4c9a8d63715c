"""Async batches: every env's steps arrive once each, in order, on every backend."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import defaultdict

import numpy as np
import pytest
import torch

from puffertrain.config import TrainConfig
from puffertrain.envs import env_factory
from puffertrain.envs.atari import atari_settings
from puffertrain.trainer.loop import Trainer
from puffertrain.vector import (
    EnvError,
    MultiprocessingVectorEnv,
    NativeAtariVectorEnv,
    SerialVectorEnv,
    VectorEnv,
)
from tests.conftest import run_cli
from tests.test_multiprocessing import no_orphans  # noqa: F401 (a fixture)


def _action_from(observations: np.ndarray, num_actions: int) -> np.ndarray:
    """An action that depends only on the env's own observation, so each env's trajectory is
    the same whatever order the batches come back in."""
    flat = observations.reshape(len(observations), -1).astype(np.float64)
    return (np.abs(flat).sum(axis=1) * 1000).astype(np.int64) % num_actions


def _drive(envs: VectorEnv, steps_per_env: int, num_actions: int) -> dict[int, list]:
    """Step every env exactly ``steps_per_env`` times, batch by batch as the trainer does
    (envs that are done sit idle); return each env's observations in the order they came."""
    seen: dict[int, list] = defaultdict(list)
    observations = envs.reset(0).copy()
    counts = np.zeros(envs.num_envs, dtype=np.int64)
    all_envs = np.arange(envs.num_envs)
    envs.send(_action_from(observations, num_actions), all_envs)
    counts += 1
    in_flight = envs.num_envs
    while in_flight:
        result = envs.recv()
        in_flight -= len(result.env_ids)
        for row, env in enumerate(result.env_ids):
            seen[int(env)].append(result.observations[row].copy())
        going_on = result.env_ids[counts[result.env_ids] < steps_per_env]
        if going_on.size:
            rows = np.isin(result.env_ids, going_on)
            envs.send(_action_from(result.observations[rows], num_actions), going_on)
            counts[going_on] += 1
            in_flight += going_on.size
    return seen


def _assert_same_trajectories(expected: dict[int, list], actual: dict[int, list]) -> None:
    assert sorted(expected) == sorted(actual)
    for env in expected:
        assert len(actual[env]) == len(expected[env]), f"env {env} lost or repeated a step"
        np.testing.assert_array_equal(np.stack(actual[env]), np.stack(expected[env]))


@pytest.mark.parametrize("batch_size", [2, 4])
def test_async_multiprocessing_steps_each_env_once_and_in_order(batch_size, no_orphans):  # noqa: F811
    factory = env_factory("CartPole-v1")
    reference = _drive(SerialVectorEnv([factory] * 8), 60, 2)
    workers = MultiprocessingVectorEnv([factory] * 8, num_workers=4, batch_size=batch_size)
    try:
        assert workers.group_size == 2 and workers.batch_size == batch_size
        _assert_same_trajectories(reference, _drive(workers, 60, 2))
    finally:
        workers.close()


def test_async_serial_matches_synchronous():
    factory = env_factory("CartPole-v1")
    reference = _drive(SerialVectorEnv([factory] * 6), 80, 2)
    _assert_same_trajectories(
        reference, _drive(SerialVectorEnv([factory] * 6, batch_size=3), 80, 2)
    )


def test_async_native_batches_match_synchronous():
    settings = atari_settings("ALE/Breakout-v5", {})
    synchronous = NativeAtariVectorEnv(settings, 8, num_threads=2)
    batched = NativeAtariVectorEnv(settings, 8, num_threads=2, batch_size=4)
    try:
        _assert_same_trajectories(_drive(synchronous, 120, 4), _drive(batched, 120, 4))
    finally:
        synchronous.close()
        batched.close()


def test_send_refuses_part_of_a_group():
    envs = SerialVectorEnv([env_factory("CartPole-v1")] * 4, batch_size=2)
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
            trainer.collect_rollout()
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
        trainer.envs.close()


def _keep_stepping(envs: VectorEnv, batches: int) -> None:
    """Send each returned batch straight back, ``batches`` times (actions 0)."""
    for _ in range(batches):
        result = envs.recv()
        envs.send(np.zeros(len(result.env_ids), dtype=np.int64), result.env_ids)


def test_an_env_that_raises_in_an_async_worker_is_named(no_orphans):  # noqa: F811
    workers = MultiprocessingVectorEnv(
        [env_factory("tests.envs:raising")] * 4, num_workers=2, batch_size=2
    )
    workers.reset(0)
    workers.send(np.zeros(4, dtype=np.int64), np.arange(4))
    with pytest.raises(EnvError, match=r"^env 3 raised:"):
        _keep_stepping(workers, 40)


def test_a_killed_async_worker_is_detected_within_seconds(no_orphans):  # noqa: F811
    workers = MultiprocessingVectorEnv(
        [env_factory("CartPole-v1")] * 4, num_workers=2, batch_size=2
    )
    workers.reset(0)
    workers.send(np.zeros(4, dtype=np.int64), np.arange(4))
    os.kill(workers._processes[1].pid, signal.SIGKILL)
    start = time.monotonic()
    with pytest.raises(EnvError, match=r"env worker 1 \(envs 2-3\): died with exit code -9"):
        _keep_stepping(workers, 10_000)
    assert time.monotonic() - start < 3


def test_training_with_async_batches_runs_end_to_end(tmp_path, no_orphans):  # noqa: F811
    run_dir = tmp_path / "async"
    result = run_cli(
        "--env",
        "CartPole-v1",
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


def test_a_batch_size_that_does_not_divide_the_envs_is_refused(tmp_path):
    result = run_cli(
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


def test_bench_measures_async_batches_beside_gymnasium(tmp_path, no_orphans):  # noqa: F811
    output = tmp_path / "bench.json"
    result = run_cli(
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
    from puffertrain.vector import choose_backend

    factory = env_factory("CartPole-v1")
    backend, reason = choose_backend("auto", "CartPole-v1", factory, 8, batch_size=4)
    if (os.cpu_count() or 1) > 1:
        assert backend == "multiprocessing" and "async batches" in reason
    assert choose_backend("auto", "ALE/Breakout-v5", None, 8, batch_size=4)[0] == "native"
