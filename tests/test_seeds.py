"""``--seeds``: one run directory per seed under one parent, resumable together, with a summary
whose numbers are the runs' TensorBoard values."""

from __future__ import annotations

import os
import re
import signal
import statistics
import time

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from puffertrain.seeds import without_flags
from puffertrain.trainer.checkpoint import list_checkpoints, load_checkpoint
from tests.conftest import run_cli, start_cli

FLAGS = ["--env", "CartPole-v1", "--num-envs", "2", "--num-steps", "64", "--vec", "serial"]


def _tensorboard(run_dir):
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    returns = [event.value for event in events.Scalars("charts/episodic_return")]
    return statistics.fmean(returns[-20:]), events.Scalars("charts/SPS")[-1].value


def test_each_seed_is_a_run_and_the_summary_reads_their_curves(tmp_path, cli):
    parent = tmp_path / "seeds"
    result = cli(
        *FLAGS,
        "--total-timesteps",
        "1024",
        "--seeds",
        "1",
        "2",
        "--parallel",
        "2",
        "--run-dir",
        str(parent),
    )
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in parent.iterdir()) == ["seed_1", "seed_2", "seeds.json"]
    table = {}
    for line in result.stdout.splitlines():
        match = re.match(r"\s*(\d+)\s+([\d.]+)\s+([\d,]+)\s+1,024 $", line)  # done: no *
        if match:
            table[int(match[1])] = (float(match[2]), float(match[3].replace(",", "")))
    for seed in (1, 2):
        run_dir = parent / f"seed_{seed}"
        assert load_checkpoint(list_checkpoints(run_dir)[-1]).global_step == 1024
        final, sps = _tensorboard(run_dir)
        assert table[seed] == (round(final, 2), round(sps))
    mean = statistics.fmean(_tensorboard(parent / f"seed_{s}")[0] for s in (1, 2))
    assert re.search(rf"all\s+{mean:.2f} ±", result.stdout)

    resumed = run_cli("--resume", str(parent), "--total-timesteps", "1536")
    assert resumed.returncode == 0, resumed.stderr
    for seed in (1, 2):
        checkpoint = load_checkpoint(list_checkpoints(parent / f"seed_{seed}")[-1])
        assert checkpoint.global_step == 1536 and checkpoint.config["seed"] == seed


def test_ctrl_c_leaves_a_checkpoint_in_every_run(tmp_path):
    parent = tmp_path / "seeds"
    process = start_cli(
        *FLAGS, "--total-timesteps", "10000000", "--seeds", "3", "4", "--run-dir", str(parent)
    )
    runs = [parent / "seed_3", parent / "seed_4"]
    deadline = time.monotonic() + 120
    while not all(any(run.glob("events.*")) for run in runs) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2)  # both are training
    os.killpg(process.pid, signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == -signal.SIGINT, stderr  # it exited 0, as if both had finished
    assert "* short of its budget (stopped or failed)" in stdout  # not read as final returns
    for run in runs:
        assert list_checkpoints(run), f"{run.name} left no checkpoint: {stderr}"
        assert load_checkpoint(list_checkpoints(run)[-1]).global_step < 10_000_000
    assert f"--resume {parent}" in stderr


def test_seed_flags_are_dropped_from_each_runs_command():
    argv = ["--env", "X", "--seeds", "1", "2", "3", "--parallel", "2", "--num-envs", "4"]
    assert without_flags(argv, {"--seeds", "--parallel"}) == ["--env", "X", "--num-envs", "4"]


def test_seeds_of_bad_input_leave_nothing_behind(tmp_path, cli, monkeypatch):
    """Every seed refused the input, and the parent's seeds.json stayed: the corrected command
    was refused ('already holds a multi-seed run'), after an empty summary, exit 1."""
    monkeypatch.chdir(tmp_path)
    bad = [*FLAGS, "--policy", "cnn", "--total-timesteps", "256", "--seeds", "1", "2"]
    for where in (["--run-dir", str(tmp_path / "given")], []):
        result = cli(*bad, *where)
        assert result.returncode == 2, result.stderr
        assert "resume them all" not in result.stderr
    assert not (tmp_path / "given" / "seeds.json").exists()
    assert not list((tmp_path / "runs").iterdir())
