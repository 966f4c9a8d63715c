"""The thread policy: CPUs from affinity, cgroup quotas and ranks; threads from the policy's size;
spins that back off."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from puffertrain.cli import main
from puffertrain.engine import SerialEngine
from puffertrain.engine.worker_process import Spinner
from puffertrain.envs import env_factory
from puffertrain.policy_loader import build_policy
from puffertrain.ppo import PolicyAdapter
from puffertrain.rollout import Rollout
from puffertrain.threads import (
    PARALLEL_FLOPS,
    PROC,
    CpuBudget,
    OtherLoad,
    _own_ticks,
    cgroup_cpu_limit,
    cpu_budget,
    forward_flops,
    plan_threads,
)
from puffertrain.trainer import build
from puffertrain.trainer.checkpoint import list_checkpoints, load_checkpoint


def _cgroup_v2(root, text):
    (root / "cpu.max").write_text(text)
    return root


def _cgroup_v1(root, quota, period=100_000):
    (root / "cpu").mkdir()
    (root / "cpu" / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (root / "cpu" / "cpu.cfs_period_us").write_text(f"{period}\n")
    return root


def test_cpus_follow_the_affinity(tmp_path):
    budget = cpu_budget(affinity=lambda: {0, 3, 5}, cgroup_root=tmp_path)
    assert budget.cpus == 3 and "affinity" in budget.reason


@pytest.mark.parametrize(
    ("make", "cpus"),
    [
        (lambda root: _cgroup_v2(root, "150000 100000\n"), 1),
        (lambda root: _cgroup_v2(root, "200000 100000\n"), 2),
        (lambda root: _cgroup_v2(root, "max 100000\n"), 8),
        (lambda root: _cgroup_v1(root, 300_000), 3),
        (lambda root: _cgroup_v1(root, -1), 8),
    ],
)
def test_a_cgroup_quota_caps_the_cpus(tmp_path, make, cpus):
    root = make(tmp_path)
    assert cpu_budget(affinity=lambda: set(range(8)), cgroup_root=root).cpus == cpus


def test_a_quota_under_one_cpu_still_gives_one(tmp_path):
    assert cgroup_cpu_limit(_cgroup_v2(tmp_path, "50000 100000")) == 0.5
    assert cpu_budget(affinity=lambda: {0, 1}, cgroup_root=tmp_path).cpus == 1


def test_ranks_on_a_node_share_its_cpus(tmp_path):
    budget = cpu_budget(local_ranks=2, affinity=lambda: set(range(8)), cgroup_root=tmp_path)
    assert budget.cpus == 4 and "2 ranks" in budget.reason


def _flops(policy_name: str, space: gym.Space, actions: gym.Space) -> int:
    adapter = PolicyAdapter(build_policy(policy_name, space, actions), actions)
    obs = np.zeros((1, *space.shape), dtype=space.dtype)
    return forward_flops(lambda: adapter.act(torch.from_numpy(obs), None, True))


def test_a_small_mlp_gets_one_thread_and_a_cnn_every_cpu(tmp_path):
    budget = cpu_budget(affinity=lambda: {0, 1, 2, 3}, cgroup_root=tmp_path)
    mlp = _flops("mlp", gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2))
    cnn = _flops("cnn", gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), gym.spaces.Discrete(4))
    assert 0 < mlp < cnn
    small = plan_threads(mlp, 256, 16, budget, env_threads=0)
    large = plan_threads(cnn, 256, 8, budget, env_threads=2)
    assert (small.update, small.acting) == (1, 1) and "under" in small.reason
    assert large.update == 4 and 3 * cnn * 256 >= PARALLEL_FLOPS
    assert large.acting == 1  # 8 frames per act is small work


def test_threads_flag_overrides_the_choice(tmp_path):
    budget = cpu_budget(affinity=lambda: {0, 1}, cgroup_root=tmp_path)
    plan = plan_threads(10.0, 256, 16, budget, env_threads=1, requested=2)
    assert (plan.update, plan.acting) == (2, 1) and "--threads 2" in plan.reason


def test_a_spin_that_never_pays_backs_off_and_one_that_does_grows_again():
    spinner = Spinner(2000)
    for _ in range(20):
        spinner.wait(lambda: False)
    assert spinner.spins == Spinner.FLOOR
    for _ in range(20):
        spinner.wait(lambda: True)
    assert spinner.spins == 2000
    never = Spinner(0)
    never.wait(lambda: False)
    assert never.spins == 0


def test_a_seed_builds_the_same_policy_whatever_the_threads_at_start():
    """Orthogonal init's QR differs in its last bits with torch's thread count, so a seed built
    other parameters in a process that started with other threads (a second run in the same
    process, a container with fewer CPUs). Policies are built on one thread, and the process's
    own count is left as it was."""
    space, actions = gym.spaces.Box(-1.0, 1.0, (8,), np.float32), gym.spaces.Discrete(3)
    before = torch.get_num_threads()
    built = []
    try:
        for threads in (2, 1):
            torch.set_num_threads(threads)
            torch.manual_seed(0)
            built.append(build_policy("mlp", space, actions).state_dict())
            assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
    for name, tensor in built[0].items():
        torch.testing.assert_close(tensor, built[1][name], rtol=0, atol=0, msg=name)


@pytest.mark.parametrize(("hidden_size", "envs", "threads"), [(64, 8, 1), (4096, 64, 4)])
def test_a_rollout_outside_the_trainer_acts_by_the_policys_size(
    monkeypatch, hidden_size, envs, threads
):
    # bench and eval build their own rollouts; acting a small policy on every CPU, two
    # `bench --concurrent 2` processes spun against each other (rollout SPS 0.03x of one alone)
    monkeypatch.setattr(SerialEngine, "policy_threads", lambda self: 4)
    engine = SerialEngine([env_factory("CartPole-v1")] * envs)
    try:
        policy = build_policy(
            "mlp",
            engine.single_observation_space,
            engine.single_action_space,
            policy_kwargs=f'{{"hidden_size": {hidden_size}}}',
        )
        adapter = PolicyAdapter(policy, engine.single_action_space)
        rollout = Rollout(engine, adapter, torch.device("cpu"))
    finally:
        engine.close()
    assert rollout.acting_threads == threads
    assert (rollout.flops_per_row * envs >= PARALLEL_FLOPS) == (threads > 1)


def test_cpus_busy_at_start_leave_a_large_update_fewer_threads(tmp_path):
    budget = cpu_budget(affinity=lambda: {0, 1}, cgroup_root=tmp_path)
    crowded = plan_threads(PARALLEL_FLOPS, 1, 1, budget, env_threads=0, busy=lambda: 1.0)
    quiet = plan_threads(PARALLEL_FLOPS, 1, 1, budget, env_threads=0, busy=lambda: 0.3)
    assert crowded.update == 1 and "1 kept busy by other processes" in crowded.reason
    assert quiet.update == 2 and "busy" not in quiet.reason


def test_a_small_update_a_resumed_run_or_a_share_never_asks_the_load(tmp_path):
    def never() -> float:
        raise AssertionError("the load was asked for")

    budget = cpu_budget(affinity=lambda: {0, 1}, cgroup_root=tmp_path)
    assert plan_threads(10.0, 256, 16, budget, env_threads=0, busy=never).update == 1
    resumed = plan_threads(PARALLEL_FLOPS, 1, 1, budget, env_threads=0, busy=never, kept=1)
    assert resumed.update == 1 and "as the run began" in resumed.reason
    # a quota of 2 of 8 CPUs, or 2 ranks on 4: others' load there is not all competition
    quota = cpu_budget(affinity=lambda: set(range(8)), cgroup_root=_cgroup_v2(tmp_path, "200000"))
    ranks = cpu_budget(2, affinity=lambda: {0, 1, 2, 3}, cgroup_root=tmp_path / "none")
    for share in (quota, ranks):
        assert share.cpus == 2 and not share.whole_affinity
        assert plan_threads(PARALLEL_FLOPS, 1, 1, share, env_threads=0, busy=never).update == 2


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="needs Linux's /proc")
def test_the_load_counts_other_processes_and_not_this_ones_children():
    # (the trainer watches from its start, so two runs started together see each other)
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # like an env worker
    try:
        before = _own_ticks(PROC)
        time.sleep(0.5)
        ran = (_own_ticks(PROC) - before) / os.sysconf("SC_CLK_TCK")
    finally:
        child.kill()
        child.wait()
    assert ran > 0.2
    # a busy loop this process did not start: the shell that starts it exits at once
    started = subprocess.run(
        ["sh", "-c", f"'{sys.executable}' -c 'while True: pass' >/dev/null 2>&1 & echo $!"],
        capture_output=True,
        text=True,
        check=True,
    )
    stranger = int(started.stdout)
    try:
        time.sleep(0.2)
        assert OtherLoad().cpus_busy(min_window_s=0.5) > 0.5
    finally:
        os.kill(stranger, signal.SIGKILL)


def test_a_resumed_run_keeps_the_update_threads_it_began_with(tmp_path, monkeypatch):
    # a policy large enough to want both CPUs, started while another process kept one busy
    monkeypatch.setattr(build, "cpu_budget", lambda ranks: CpuBudget(2, "2 CPU(s) (test)"))
    monkeypatch.setattr(OtherLoad, "cpus_busy", lambda self: 1.0)
    run_dir = tmp_path / "run"
    flags = ["--env", "CartPole-v1", "--vec", "serial", "--num-envs", "4", "--num-steps", "16"]
    flags += ["--num-minibatches", "1", "--update-epochs", "1", "--eval-interval", "0"]
    flags += ["--policy", "mlp", "--policy-kwargs", '{"hidden_size": 2048}', "--device", "cpu"]
    main([*flags, "--total-timesteps", "64", "--run-dir", str(run_dir)])
    assert load_checkpoint(list_checkpoints(run_dir)[-1]).update_threads == 1
    monkeypatch.setattr(OtherLoad, "cpus_busy", lambda self: 0.0)  # the machine is free now
    main(["--resume", str(run_dir), "--total-timesteps", "128"])
    assert load_checkpoint(list_checkpoints(run_dir)[-1]).update_threads == 1
