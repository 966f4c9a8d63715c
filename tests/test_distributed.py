"""Data-parallel training under ``torchrun --nproc-per-node 2`` (gloo on CPU)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from puffertrain.trainer.checkpoint import list_checkpoints, load_checkpoint
from tests.conftest import REPO_ROOT, cli_env, run_cli
from tests.test_resume import scalars

HARNESS = REPO_ROOT / "tests" / "distributed_harness.py"
ROWS_PER_UPDATE = 2 * 4 * 32  # ranks × envs × steps
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
    "3",
    "--num-envs",
    "4",
    "--num-steps",
    "32",
    "--checkpoint-interval",
    "8",
    "--keep-checkpoints",
    "10",
    "--eval-interval",  # the harness counts every row the rollouts receive: training's only
    "0",
]


def torchrun(out_dir: Path, *args: str) -> list[str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        str(HARNESS),
        str(out_dir),
        *args,
    ]


def run_two_ranks(out_dir: Path, *args: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    env = {**cli_env(), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        torchrun(out_dir, *args), env=env, capture_output=True, text=True, timeout=300
    )
    reports = [json.loads((out_dir / f"rank{rank}.json").read_text()) for rank in range(2)]
    return done, reports


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory):
    """A 2-rank run of 16 updates with checkpoints after updates 8 and 16."""
    root = tmp_path_factory.mktemp("two_ranks")
    run_dir = root / "run"
    total = 16 * ROWS_PER_UPDATE
    done, reports = run_two_ranks(
        root / "harness", *ARGS, "--total-timesteps", str(total), "--run-dir", str(run_dir)
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir, reports, done


def test_parameters_are_identical_on_every_rank_after_every_update(two_rank_run):
    _, reports, _ = two_rank_run
    for report in reports:
        assert report["updates"] == 16
        assert report["identical_after_every_update"]
        assert report["first_parameters_sum"] != report["last_parameters_sum"]  # it learned
    # each rank stepped its own envs (seeded apart), so the gradients really were averaged
    assert reports[0]["first_observations"] != reports[1]["first_observations"]


def test_no_gloo_thread_outlives_the_run(two_rank_run):
    """The process group is gone, threads and all, when the CLI returns. It outlived
    destroy_process_group while torch._dynamo, imported after it, held references to it; a gloo
    worker thread still releasing a collective's tensors as the interpreter shut down then
    aborted a rank that had finished (SIGABRT, in CI and in ~1 local run of 5)."""
    _, reports, _ = two_rank_run
    if sys.platform != "linux":
        pytest.skip("thread names come from /proc/self/task")
    for report in reports:
        assert report["threads_after_run"]  # /proc listed them
        assert not [name for name in report["threads_after_run"] if "gloo" in name]


def test_the_global_step_counts_every_rank(two_rank_run):
    run_dir, reports, _ = two_rank_run
    checkpoint = load_checkpoint(list_checkpoints(run_dir)[-1])
    assert checkpoint.global_step == sum(report["local_steps"] for report in reports)
    assert checkpoint.global_step == 16 * ROWS_PER_UPDATE
    assert checkpoint.world_size == 2 and len(checkpoint.ranks[1:]) == 1
    learning_rate_steps = [step for step, _ in scalars(run_dir)["charts/learning_rate"]]
    assert learning_rate_steps == [ROWS_PER_UPDATE * (i + 1) for i in range(16)]


def test_rank_zero_alone_writes_the_run(two_rank_run):
    run_dir, _, done = two_rank_run
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
    assert [path.name for path in list_checkpoints(run_dir)] == [
        f"step_{8 * ROWS_PER_UPDATE:012d}.pt",
        f"step_{16 * ROWS_PER_UPDATE:012d}.pt",
    ]
    assert sorted(path.name for path in run_dir.iterdir()) == [
        ".lock",  # rank 0's hold on the run
        "checkpoints",
        "config.json",
        *(path.name for path in run_dir.glob("events.out.tfevents.*")),
    ]
    assert done.stderr.count("puffertrain: run directory") == 1
    assert "puffertrain: 2 ranks" in done.stderr


def test_a_resumed_two_rank_run_continues_exactly(two_rank_run, tmp_path):
    """Resuming from the checkpoint after update 8 ends where the uninterrupted run did."""
    run_dir, _, _ = two_rank_run
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(run_dir, resumed_dir)
    halfway, final = list_checkpoints(resumed_dir)
    final.unlink()
    done, reports = run_two_ranks(tmp_path / "harness", "--resume", str(halfway))
    assert done.returncode == 0, done.stderr[-3000:]
    assert all(report["updates"] == 8 for report in reports)
    assert all(report["identical_after_every_update"] for report in reports)
    expected = load_checkpoint(list_checkpoints(run_dir)[-1])
    actual = load_checkpoint(list_checkpoints(resumed_dir)[-1])
    assert actual.global_step == expected.global_step == 16 * ROWS_PER_UPDATE
    for name, tensor in expected.policy.items():
        assert torch.equal(actual.policy[name], tensor), name
    assert (
        scalars(resumed_dir)["charts/episodic_return"] == scalars(run_dir)["charts/episodic_return"]
    )


def test_a_two_rank_checkpoint_is_not_resumed_by_one_process(two_rank_run):
    run_dir, _, _ = two_rank_run
    before = [path.stat().st_mtime_ns for path in list_checkpoints(run_dir)]
    done = run_cli("--resume", str(run_dir))
    assert done.returncode == 2
    assert "written by a run of 2 rank(s)" in done.stderr
    assert "Traceback" not in done.stderr
    assert [path.stat().st_mtime_ns for path in list_checkpoints(run_dir)] == before


def test_killing_one_rank_ends_the_job_within_seconds(tmp_path):
    out_dir, run_dir = tmp_path / "harness", tmp_path / "run"
    env = {**cli_env(), "OMP_NUM_THREADS": "1"}
    args = [*ARGS, "--total-timesteps", "10000000", "--run-dir", str(run_dir)]
    args[args.index("--checkpoint-interval") + 1] = "2"
    job = subprocess.Popen(
        torchrun(out_dir, *args), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 120
        while not list_checkpoints(run_dir) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert list_checkpoints(run_dir), "the run never checkpointed"
        victim = int((out_dir / "rank1.pid").read_text())
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        output, _ = job.communicate(timeout=60)
        elapsed = time.monotonic() - killed_at
    finally:
        if job.poll() is None:
            job.kill()
            job.communicate()
    text = output.decode(errors="replace")
    assert job.returncode != 0
    assert elapsed < 15, f"the job took {elapsed:.1f} s to end"
    assert "Signal 9 (SIGKILL)" in text and "rank      : 1" in text, text[-3000:]
    assert "puffertrain: rank 0: error: lost contact with the other ranks" in text
    survivor = int((out_dir / "rank0.pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(survivor, 0)
    load_checkpoint(list_checkpoints(run_dir)[-1])  # what was written is intact


def test_an_env_failure_on_one_rank_checkpoints_and_stops_every_rank(tmp_path):
    """tests.envs:raising fails in the env seeded 3: rank 1's second env (seeds 2 and 3)."""
    run_dir = tmp_path / "run"
    args = ["--env", "tests.envs:raising", "--policy", "mlp", "--vec", "serial"]
    args += ["--device", "cpu", "--seed", "0", "--num-envs", "2", "--num-steps", "8"]
    done, reports = run_two_ranks(tmp_path / "harness", *args, "--run-dir", str(run_dir))
    assert done.returncode != 0
    assert "puffertrain: rank 1: error: " in done.stderr and "the physics exploded" in done.stderr
    assert "puffertrain: rank 0: error: another rank's envs failed" in done.stderr
    assert all(report["updates"] == 0 for report in reports)
    (path,) = list_checkpoints(run_dir)  # the model before the failed rollout, for --resume
    checkpoint = load_checkpoint(path)
    assert checkpoint.global_step == 0 and checkpoint.ranks[0].envs == {"envs": None}


def test_ctrl_c_checkpoints_every_rank_at_the_same_update(tmp_path):
    """Ctrl-C in a terminal signals torchrun, which passes it on to the ranks (they run in
    sessions of their own); one checkpoint, at the same update, holds them all."""
    out_dir, run_dir = tmp_path / "harness", tmp_path / "run"
    args = [*ARGS, "--total-timesteps", "10000000", "--run-dir", str(run_dir)]
    args[args.index("--checkpoint-interval") + 1] = "100000"
    job = subprocess.Popen(
        torchrun(out_dir, *args),
        env={**cli_env(), "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not list(run_dir.glob("events.out.tfevents.*")) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2)  # some updates
        os.killpg(job.pid, signal.SIGINT)
        output, _ = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.communicate()
    (path,) = list_checkpoints(run_dir)
    checkpoint = load_checkpoint(path)
    reports = [json.loads((out_dir / f"rank{rank}.json").read_text()) for rank in range(2)]
    assert reports[0]["updates"] == reports[1]["updates"] == checkpoint.iteration > 0
    assert checkpoint.global_step == sum(report["local_steps"] for report in reports)
    assert f"stopped at step {checkpoint.global_step:,}" in output.decode()


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(
            [
                "--env",
                "CartPole-v1",
                "--normalize-obs",
                "--normalize-reward",
                "--target-kl",
                "0.002",
            ],
            id="normalisation-and-target-kl",
        ),
        pytest.param(["--env", "CartPole-v1", "--policy", "lstm"], id="lstm"),
        pytest.param(
            ["--env", "mpe2.simple_spread_v3:parallel_env", "--policy", "independent"],
            id="multi-agent-independent",  # 3 agents: 3 rows per env
        ),
    ],
)
def test_every_path_of_the_update_stays_in_step_across_ranks(tmp_path, args):
    """Paths with collectives of their own (statistics gathered, an early stop agreed on,
    parameters some minibatches leave unused) keep the ranks identical, with no hang."""
    common = ["--vec", "serial", "--device", "cpu", "--num-envs", "2", "--num-steps", "32"]
    done, reports = run_two_ranks(
        tmp_path / "harness",
        *args,
        *common,
        "--total-timesteps",
        str(4 * 2 * 2 * 32 * (3 if "mpe2" in args[1] else 1)),  # 4 updates
        "--run-dir",
        str(tmp_path / "run"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert all(report["updates"] == 4 for report in reports)
    assert all(report["identical_after_every_update"] for report in reports)


def test_a_rank_that_cannot_start_stops_all_before_the_run_directory_exists(tmp_path):
    """tests.envs:reset_raising fails to reset with seed 2: rank 1's first env."""
    run_dir = tmp_path / "run"
    args = ["--env", "tests.envs:reset_raising", "--policy", "mlp", "--vec", "serial"]
    args += ["--device", "cpu", "--seed", "0", "--num-envs", "2", "--run-dir", str(run_dir)]
    done, _ = run_two_ranks(tmp_path / "harness", *args)
    assert done.returncode != 0
    assert "puffertrain: rank 1: error: " in done.stderr and "no level for seed 2" in done.stderr
    assert "puffertrain: rank 0: error: another rank could not start" in done.stderr
    assert not run_dir.exists()


def test_two_nodes_meet_through_torchruns_rendezvous(tmp_path):
    """Two torchrun launches of one rank each (two "nodes" on this machine) train as one job."""
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        port = probe.getsockname()[1]
    run_dir = tmp_path / "run"
    rendezvous = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d"]
    rendezvous += ["--rdzv-endpoint", f"localhost:{port}", "--rdzv-id", "two-nodes"]
    train = [*ARGS, "--total-timesteps", str(4 * ROWS_PER_UPDATE), "--run-dir", str(run_dir)]
    launch = [sys.executable, "-m", "torch.distributed.run", *rendezvous]
    nodes = [
        subprocess.Popen(
            [*launch, "--node-rank", str(node), "-m", "puffertrain", *train],
            env={**cli_env(), "OMP_NUM_THREADS": "1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for node in range(2)
    ]
    errors = [node.communicate(timeout=180)[1] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], errors
    checkpoint = load_checkpoint(list_checkpoints(run_dir)[-1])
    assert checkpoint.world_size == 2 and checkpoint.global_step == 4 * ROWS_PER_UPDATE
