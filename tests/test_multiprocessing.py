"""Multiprocessing backend: agrees with serial, and fails loudly and cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import numpy as np
import pytest

from puffertrain.engine import EnvError, SerialEngine, multiprocessing_engine
from puffertrain.envs import env_factory
from tests.conftest import run_cli, run_python, start_cli


def spawned_workers() -> set[int]:
    """PIDs of live spawn-started Python processes (env workers look like this)."""
    result = subprocess.run(
        ["pgrep", "-f", "multiprocessing.spawn import spawn_main"], capture_output=True, text=True
    )
    return {int(pid) for pid in result.stdout.split()}


@pytest.fixture
def no_orphans():
    before = spawned_workers()
    yield
    deadline = time.monotonic() + 5
    while spawned_workers() - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not spawned_workers() - before, "env worker processes were left behind"


def test_serial_and_multiprocessing_produce_the_same_steps(no_orphans):
    factory = env_factory("CartPole-v1")
    serial = SerialEngine([factory] * 6)
    workers = multiprocessing_engine([factory] * 6, num_workers=2)  # 2 envs per process
    try:
        np.testing.assert_array_equal(serial.reset(3), workers.reset(3))
        rng = np.random.default_rng(0)
        episodes = 0
        for _ in range(300):
            actions = rng.integers(0, 2, 6)
            a, b = serial.step(actions), workers.step(actions)
            for field in ("observations", "rewards", "terminations", "truncations"):
                np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
            assert a.episodes == b.episodes
            episodes += len(a.episodes)
        assert episodes > 10
    finally:
        workers.close()


def test_a_script_that_never_closes_its_engine_still_exits(no_orphans):
    """At exit multiprocessing sends SIGTERM to daemon workers left open and waits for them:
    workers that ignored every SIGTERM kept the interpreter waiting forever."""
    script = (
        "from puffertrain.envs import env_factory\n"
        "from puffertrain.engine import multiprocessing_engine\n"
        "engine = multiprocessing_engine([env_factory('CartPole-v1')] * 6, num_workers=2)\n"
        "engine.reset(0)\n"
        "print('reset', flush=True)\n"
    )
    result = run_python(script, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "reset\n"


def test_env_state_travels_through_the_workers(no_orphans):
    factory = env_factory("CartPole-v1")
    workers = multiprocessing_engine([factory] * 6, num_workers=2)
    serial = SerialEngine([factory] * 6)
    try:
        workers.reset(5)
        rng = np.random.default_rng(1)
        for _ in range(40):
            workers.step(rng.integers(0, 2, 6))
        serial.reset(0)
        assert serial.load_state_dict(workers.state_dict(), reseed=0)
        again = multiprocessing_engine([factory] * 6, num_workers=2)
        again.reset(0)
        assert again.load_state_dict(workers.state_dict(), reseed=0)
        for _ in range(100):
            actions = rng.integers(0, 2, 6)
            expected = workers.step(actions).observations
            np.testing.assert_array_equal(serial.step(actions).observations, expected)
            np.testing.assert_array_equal(again.step(actions).observations, expected)
        again.close()
    finally:
        workers.close()


def test_an_env_that_raises_is_named_with_its_traceback(no_orphans):
    workers = multiprocessing_engine([env_factory("tests.envs:raising")] * 4, num_workers=1)
    workers.reset(0)
    with pytest.raises(EnvError) as error:
        for _ in range(10):
            workers.step(np.zeros(4, dtype=np.int64))
    message = str(error.value)
    assert message.startswith("env 3 raised:")
    assert "RuntimeError: the physics exploded" in message and "Traceback" in message


def test_a_killed_worker_is_detected_within_seconds(no_orphans):
    workers = multiprocessing_engine([env_factory("CartPole-v1")] * 6, num_workers=2)
    workers.reset(0)
    os.kill(workers._processes[1].pid, signal.SIGKILL)
    start = time.monotonic()
    with pytest.raises(EnvError, match=r"env worker 1 \(envs 4-5\): died with exit code -9"):
        for _ in range(1000):
            workers.step(np.zeros(6, dtype=np.int64))
    assert time.monotonic() - start < 3


def test_training_stops_on_an_env_error_with_a_checkpoint(tmp_path, no_orphans):
    run_dir = tmp_path / "crash"
    result = run_cli(
        "--env",
        "tests.envs:raising",
        "--policy",
        "mlp",
        "--vec",
        "multiprocessing",
        "--num-envs",
        "4",
        "--num-steps",
        "8",
        "--total-timesteps",
        "320",
        "--device",
        "cpu",
        "--seed",
        "0",
        "--run-dir",
        str(run_dir),
    )
    assert result.returncode == 2
    assert "env 3 raised" in result.stderr and "the physics exploded" in result.stderr
    assert "Traceback" in result.stderr  # the env's, inside the one message
    assert list((run_dir / "checkpoints").glob("step_*.pt"))
    assert result.stderr.count("puffertrain: error:") == 1


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_to_the_group_checkpoints_and_stops_every_worker(
    tmp_path, no_orphans, signum
):
    """Ctrl-C signals the whole process group, and so do systemd, Slurm and ``kill -TERM
    -PGID``: the workers must outlive the signal until the trainer has saved and closed them."""
    run_dir = tmp_path / "interrupted"
    process = start_cli(
        "--env",
        "CartPole-v1",
        "--policy",
        "mlp",
        "--vec",
        "multiprocessing",
        "--num-envs",
        "4",
        "--total-timesteps",
        "10000000",
        "--device",
        "cpu",
        "--run-dir",
        str(run_dir),
    )
    deadline = time.monotonic() + 60
    while not (run_dir / "config.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    os.killpg(process.pid, signum)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == -signum, stderr
    assert "leaked" not in stderr  # ended by the signal, after the exit handlers ran
    assert list((run_dir / "checkpoints").glob("step_*.pt"))


def test_an_env_in_the_trainers_own_share_that_raises_is_named_too(no_orphans):
    workers = multiprocessing_engine([env_factory("tests.envs:raising")] * 4, num_workers=1)
    workers.reset(2)  # seeds 2..5: env 1, in the trainer's share, gets seed 3
    with pytest.raises(EnvError, match=r"^env 1 raised:"):
        for _ in range(10):
            workers.step(np.zeros(4, dtype=np.int64))
    workers.close()


def test_auto_picks_workers_only_where_they_pay():
    """MountainCar has no vector entry point of its own (CartPole-v1 would get it)."""
    from puffertrain.engine import choose_backend

    factory = env_factory("MountainCar-v0")
    assert choose_backend("auto", "MountainCar-v0", factory, 8)[0] == "serial"
    if (os.cpu_count() or 1) > 1:
        backend, reason = choose_backend("auto", "MountainCar-v0", factory, 512)
        assert backend == "multiprocessing" and "round trip" in reason
    assert choose_backend("auto", "ALE/Breakout-v5", None, 8)[0] == "native"
    assert choose_backend("serial", "MountainCar-v0", factory, 512) == ("serial", "asked for")


def test_a_step_stolen_by_another_process_does_not_buy_workers():
    """8 envs whose step is cheap but where one step in 50 waits 20 ms, as one does when other
    work preempts it: the mean step (~400 µs) called for workers, the median does not."""
    from puffertrain.engine import choose_backend

    backend, reason = choose_backend("auto", "preempted", env_factory("tests.envs:preempted"), 8)
    assert backend == "serial", reason


def test_an_env_that_fails_to_build_in_a_worker_is_named(no_orphans):
    with pytest.raises(EnvError) as error:
        envs = multiprocessing_engine(
            [env_factory("tests.envs:broken_in_workers")] * 4, num_workers=1
        )
        envs.reset(0)  # the first command finds the worker gone
    message = str(error.value)
    assert "env worker 0 (envs 2-3): env 2 failed to build" in message
    assert "level file 'maze3.txt' is missing" in message
