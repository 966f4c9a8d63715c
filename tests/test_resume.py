"""Exact resume: a stopped and resumed run ends identical to an uninterrupted one."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from puffertrain.trainer.checkpoint import list_checkpoints, load_checkpoint
from tests.conftest import REPO_ROOT, cli_command, cli_env, run_cli

ITERATIONS = 60
ARGS = [
    "--env",
    "CartPole-v1",
    "--policy",
    "mlp",
    "--vec",
    "serial",
    "--device",
    "cpu",
    "--seed",
    "7",
    "--num-envs",
    "8",  # 8 envs × the preset's 32 steps: 256 steps per update
    "--total-timesteps",
    str(256 * ITERATIONS),
    "--checkpoint-interval",
    "10",
    "--keep-checkpoints",
    "100",
]


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar as TensorBoard shows it (purged events dropped)."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)]
        for tag in events.Tags()["scalars"]
        if tag != "charts/SPS" and not tag.startswith("perf/")
    }


def final_policy(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(list_checkpoints(run_dir)[-1]).policy


def assert_same_run(actual: Path, expected: Path, updates: int = ITERATIONS) -> None:
    reference, resumed = final_policy(expected), final_policy(actual)
    assert reference.keys() == resumed.keys()
    for name in reference:
        assert torch.equal(reference[name], resumed[name]), name
    expected_scalars, actual_scalars = scalars(expected), scalars(actual)
    assert expected_scalars.keys() == actual_scalars.keys()
    for tag, points in expected_scalars.items():
        if tag.startswith("losses/"):  # one point per update (episodes may share a step)
            steps = [step for step, _ in actual_scalars[tag]]
            assert len(steps) == len(set(steps)) == updates, tag
        assert actual_scalars[tag] == points, tag


def resume_after_a_crash(run_dir: Path, crashed: Path, iteration: int) -> None:
    """Copy a finished run as if it had died after ``iteration`` (later checkpoints gone, later
    events still logged) and resume the copy."""
    shutil.copytree(run_dir, crashed)
    for path in list_checkpoints(crashed):
        if load_checkpoint(path).iteration > iteration:
            path.unlink()
    result = run_cli("--resume", str(crashed))
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("resume") / "uninterrupted"
    result = run_cli(*ARGS, "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stderr
    assert load_checkpoint(list_checkpoints(run_dir)[-1]).global_step == 256 * ITERATIONS
    return run_dir


def test_resume_after_a_crash_past_a_periodic_checkpoint(uninterrupted, tmp_path):
    """A run that died after iteration 20 but had logged further resumes without duplicates."""
    crashed = tmp_path / "crashed"
    resume_after_a_crash(uninterrupted, crashed, 20)
    assert_same_run(crashed, uninterrupted)


def test_sigint_checkpoints_and_the_resumed_run_is_identical(uninterrupted, tmp_path):
    run_dir = tmp_path / "interrupted"
    process = subprocess.Popen(
        cli_command(*ARGS, "--run-dir", str(run_dir)),
        cwd=REPO_ROOT,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not list_checkpoints(run_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == -signal.SIGINT, stderr  # as Ctrl-C ends a process: a
    assert "SIGINT: saving a checkpoint" in stderr  # shell's loop of runs stops too
    stopped_at = load_checkpoint(list_checkpoints(run_dir)[-1]).global_step
    assert stopped_at < 256 * ITERATIONS, "the run finished before the signal arrived"

    result = run_cli("--resume", str(run_dir))
    assert result.returncode == 0, result.stderr
    assert_same_run(run_dir, uninterrupted)


def test_resume_can_extend_total_timesteps(uninterrupted, tmp_path):
    extended = tmp_path / "extended"
    shutil.copytree(uninterrupted, extended)
    result = run_cli("--resume", str(extended), "--total-timesteps", str(256 * (ITERATIONS + 4)))
    assert result.returncode == 0, result.stderr
    assert load_checkpoint(list_checkpoints(extended)[-1]).global_step == 256 * (ITERATIONS + 4)
    steps = [step for step, _ in scalars(extended)["losses/value_loss"]]
    assert steps == sorted(set(steps)) and steps[-1] == 256 * (ITERATIONS + 4)
