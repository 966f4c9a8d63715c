"""The learning suite's own logic (experiments/learning_suite.py): resume skips finished runs,
the threshold crossing, the table's medians. No training here: the suite's runs are long."""

from __future__ import annotations

import argparse
import json
import sys

import pytest


@pytest.fixture
def suite(experiment_script):
    return experiment_script("learning_suite")


def fake_result(final: float, steps: int | None) -> dict:
    return {
        "final_mean_return": final,
        "steps_to_threshold": steps,
        "seconds_to_threshold": None if steps is None else steps / 1000,
        "sps": 1000.0,
    }


def test_rerun_skips_finished_runs_and_appends_the_rest(suite, monkeypatch, tmp_path):
    calls = []

    def run_puffertrain(env, seed, run_root, flags):
        calls.append((env.env_id, seed, "puffertrain"))
        return fake_result(500.0, 1000)

    def run_sb3(env, seed, trainer, flags, threads):
        calls.append((env.env_id, seed, trainer))
        return fake_result(500.0, 1000)

    monkeypatch.setattr(suite, "run_puffertrain", run_puffertrain)
    monkeypatch.setattr(suite, "run_sb3", run_sb3)
    results = tmp_path / "results.jsonl"
    args = argparse.Namespace(
        env=["CartPole-v1"],
        family=None,
        seeds=[1, 2],
        trainer=["puffertrain", "zoo"],
        budget=None,
        results=results,
        run_root=tmp_path,
        flags="",
        sb3_threads=0,
    )
    args_seed_1 = argparse.Namespace(**{**vars(args), "seeds": [1]})
    suite.run_suite(args_seed_1)
    assert calls == [("CartPole-v1", 1, "puffertrain"), ("CartPole-v1", 1, "zoo")]
    suite.run_suite(args)
    assert calls[2:] == [("CartPole-v1", 2, "puffertrain"), ("CartPole-v1", 2, "zoo")]
    suite.run_suite(args)
    assert len(calls) == 4
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert [(r["seed"], r["trainer"], r["budget"]) for r in lines] == [
        (1, "puffertrain", 100_000),
        (1, "zoo", 100_000),
        (2, "puffertrain", 100_000),
        (2, "zoo", 100_000),
    ]


def test_threshold_is_crossed_by_the_mean_of_the_last_20(suite):
    episodes = [(100 * (i + 1), 10.0, float(i)) for i in range(19)]
    episodes += [(2000, 10.0, 19.0), (2100, 200.0, 20.0), (2200, 10.0, 21.0)]
    summary = suite.summarize(episodes, threshold=19.0)
    # the window ending at episode 21 holds 19 tens and the 200: mean 19.5
    assert summary["steps_to_threshold"] == 2100
    assert summary["seconds_to_threshold"] == 20.0
    assert summary["best_mean_return"] == pytest.approx(19.5)
    assert summary["final_mean_return"] == pytest.approx(19.5)
    never = suite.summarize(episodes, threshold=100.0)
    assert never["steps_to_threshold"] is None and never["seconds_to_threshold"] is None
    assert suite.summarize(episodes[:5], threshold=1.0)["best_mean_return"] is None


def test_table_shows_medians_over_seeds_and_runs_that_never_reached(suite):
    rows = []
    for seed, (final, steps) in enumerate([(480.0, 60_000), (300.0, None), (490.0, 50_000)]):
        rows.append({"env": "CartPole-v1", "seed": seed, "trainer": "puffertrain"})
        rows[-1] |= {"budget": 100_000, **fake_result(final, steps)}
    for seed in range(3):
        rows.append({"env": "CartPole-v1", "seed": seed, "trainer": "zoo", "budget": 100_000})
        rows[-1] |= fake_result(100.0, None if seed else 90_000)
    rows.append({"env": "CartPole-v1", "seed": 9, "trainer": "zoo", "budget": 5})
    rows[-1] |= fake_result(7.0, None)
    text = suite.table(rows)
    lines = text.splitlines()
    assert len(lines) == 5  # header, rule, the other budget's row, one row per trainer
    assert lines[2].split(" | ")[2:7] == ["5", "ppo.yml CartPole-v1", "zoo", "9", "7.0"]
    ours, theirs = lines[3].split(" | "), lines[4].split(" | ")
    assert ours[4:] == ["puffertrain", "0 1 2", "480.0", "2/3 ≥ 475", "60,000", "60.0", "1,000 |"]
    assert theirs[6:9] == ["100.0", "1/3 ≥ 475", "—"]


def test_flags_reach_puffertrain_and_sb3_with_its_values_but_not_the_zoo(
    suite, monkeypatch, tmp_path
):
    commands = []

    def child(command, **_):
        commands.append(command)
        episodes = [[step, 1.0, step / 1000] for step in range(1, 30)]
        stdout = json.dumps({"sps": 1.0, "episodes": episodes}) + "\n"
        return argparse.Namespace(returncode=0, stdout=stdout, stderr="")

    monkeypatch.setattr(suite.subprocess, "run", child)
    env = suite.SUITE["CartPole-v1"]
    same = suite.run_sb3(env, 2, "sb3", ["--num-envs", "1", "--num-steps", "2048"])
    zoo = suite.run_sb3(env, 2, "zoo", [])
    assert commands[0][commands[0].index("--values") + 1] == "sb3"
    assert "--flags=--num-envs 1 --num-steps 2048" in commands[0]
    assert "--flags=" in commands[1] and commands[1][commands[1].index("--values") + 1] == "zoo"
    assert same["hyperparams"].startswith("SB3 PPO with puffertrain's values with --num-envs 1")
    assert zoo["hyperparams"] == "RL Zoo ppo.yml CartPole-v1"
    assert same["final_mean_return"] == 1.0


def test_suite_refuses_flags_it_sets_and_sb3_on_envs_that_need_memory(suite, tmp_path):
    args = argparse.Namespace(
        env=["CartPole-v1"],
        family=None,
        seeds=[1],
        trainer=["puffertrain"],
        budget=None,
        results=tmp_path / "results.jsonl",
        run_root=tmp_path,
        flags="--seed=4",
    )
    with pytest.raises(SystemExit, match="may not set --seed"):
        suite.run_suite(args)
    args.flags, args.env, args.trainer = "", ["CartPoleNoVel-v1"], ["sb3"]
    with pytest.raises(SystemExit, match=r"CartPoleNoVel-v1.*use zoo"):
        suite.run_suite(args)
    assert not args.results.exists()


def test_sb3_child_builds_with_the_suites_seed_and_budget_then_the_flags(suite, monkeypatch):
    built = []
    monkeypatch.setattr(suite, "sb3_model", lambda env_id, flags: (built.append(flags), None))
    monkeypatch.setattr(suite, "train_logged", lambda model, budget: {"budget": budget})
    argv = ["learning_suite.py", "zoo-run", "--env", "HalfCheetah-v5", "--seed", "2"]
    argv += ["--budget", "4096", "--values", "sb3", "--flags=--num-envs 1"]
    monkeypatch.setattr(sys, "argv", argv)
    suite.main()
    assert built == [["--seed", "2", "--total-timesteps", "4096", "--num-envs", "1"]]


def test_sb3_threads_reach_the_child_which_sets_them_and_the_result_records_them(
    suite, monkeypatch
):
    """Beside another run SB3 on torch's two threads spun against it: one zoo Swimmer-v5 seed
    was unfinished after 20 minutes where alone it takes 4 (experiments/RESULTS.md, "Held out:
    Swimmer-v5")."""
    commands = []

    def child(command, **_):
        commands.append(command)
        stdout = json.dumps({"sps": 1.0, "episodes": [[1, 1.0, 0.001]]}) + "\n"
        return argparse.Namespace(returncode=0, stdout=stdout, stderr="")

    monkeypatch.setattr(suite.subprocess, "run", child)
    result = suite.run_sb3(suite.SUITE["CartPole-v1"], 1, "zoo", [], threads=1)
    assert "--threads=1" in commands[0] and result["sb3_threads"] == 1

    import torch

    monkeypatch.setattr(suite, "zoo_model", lambda env, seed: None)
    monkeypatch.setattr(suite, "train_logged", lambda model, budget: {})
    argv = ["learning_suite.py", "zoo-run", "--env", "CartPole-v1", "--seed", "1"]
    monkeypatch.setattr(sys, "argv", [*argv, "--budget", "64", "--threads", "1"])
    before = torch.get_num_threads()
    try:
        suite.main()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_a_failed_sb3_child_ends_the_suite_with_its_last_line(suite, monkeypatch):
    said = "vs_sb3: SB3 has no counterpart for --action-noise-color 0.5"
    failed = argparse.Namespace(returncode=1, stdout="", stderr=f"some warning\n{said}\n")
    monkeypatch.setattr(suite.subprocess, "run", lambda command, **_: failed)
    with pytest.raises(SystemExit, match=f"the sb3 run failed: {said}"):
        suite.run_sb3(suite.SUITE["Pendulum-v1"], 1, "sb3", [])
