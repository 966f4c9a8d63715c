"""``puffertrain sweep``: small studies on CartPole with tiny budgets, on SQLite and on a
PostgreSQL server the test starts itself."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from puffertrain.config import TrainConfig, config_from_file
from puffertrain.errors import UserError
from puffertrain.sweep.objective import score
from puffertrain.sweep.space import (
    Param,
    default_space,
    load_space,
    starting_values,
    trial_flags,
    without_given,
)
from puffertrain.trainer.checkpoint import list_checkpoints, load_checkpoint
from tests.conftest import (
    REPO_ROOT,
    child_pids,
    cli_command,
    cli_env,
    in_process,
    run_cli,
    start_cli,
)
from tests.postgres import postgres_server

FLAGS = ["--env", "CartPole-v1", "--num-envs", "4", "--num-steps", "32", "--vec", "serial"]
FLAGS += ["--threads", "1"]
LR_ONLY = "defaults = false\nlearning-rate = { low = 1e-4, high = 3e-3, log = true }\n"
State = optuna.trial.TrialState


def _study(sweep_dir: Path, name: str = "test") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{sweep_dir / 'sweep.db'}")


def _sweep_args(sweep_dir: Path, space: Path) -> list[str]:
    return ["sweep", *FLAGS, "--study", "test", "--run-dir", str(sweep_dir), "--space", str(space)]


def _space_file(tmp_path: Path, text: str = LR_ONLY) -> Path:
    path = tmp_path / "space.toml"
    path.write_text(text)
    return path


def _in_process(capsys, *args: str) -> tuple[int, str, str]:
    """The CLI in this process (a sweep here starts in a fraction of a new process's time; its
    trials are child processes all the same): its exit status, stdout and stderr."""
    result = in_process(capsys, *args)
    return result.returncode, result.stdout, result.stderr


def _final_step(run_dir: Path) -> int:
    return load_checkpoint(list_checkpoints(run_dir)[-1]).global_step


def test_mujoco_envs_search_the_continuous_presets_sizes():
    """MuJoCo has its own preset (white noise) with the continuous preset's rollouts and
    minibatches, so its sweep searches those sizes, not the generic ones."""
    assert default_space("mujoco", 64).as_dict() == default_space("continuous", 64).as_dict()
    assert default_space("mujoco", 64).as_dict() != default_space("other", 64).as_dict()


def test_a_space_file_changes_the_default_space_and_given_flags_are_not_searched(tmp_path):
    space = without_given(default_space("classic_control", 256), {"gamma", "policy_kwargs"})
    assert "gamma" not in space.params and "policy-kwargs.hidden_size" not in space.params
    path = _space_file(
        tmp_path,
        "gamma = 0.97\nlearning-rate = { low = 1e-4, high = 1e-3 }\n"
        "[policy-kwargs]\nhidden_size = { choices = [32, 64] }\n",
    )
    changed = load_space(path, space)
    assert changed.fixed == {"gamma": 0.97}
    assert (changed.params["learning-rate"].low, changed.params["learning-rate"].log) == (1e-4, 0)
    assert changed.params["policy-kwargs.hidden_size"].choices == (32, 64)
    assert "clip-coef" in changed.params  # the defaults stay unless the file drops them
    alone = load_space(_space_file(tmp_path, LR_ONLY), space)
    assert list(alone.params) == ["learning-rate"] and not alone.fixed
    config = TrainConfig(env="CartPole-v1", policy_kwargs='{"agent_ids": true}')
    values = {"learning-rate": 5e-4, "policy-kwargs.hidden_size": 64, "anneal-lr": False}
    assert trial_flags(values, config) == [
        "--learning-rate",
        "0.0005",
        "--no-anneal-lr",
        "--policy-kwargs",
        '{"agent_ids": true, "hidden_size": 64}',
    ]


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("learning-rat = { low = 1e-4, high = 1e-3 }", "learning-rat'"),
        ("num-envs = { low = 2.5, high = 8 }", "num-envs'"),
        ("learning-rate = { low = 0.0, high = 1e-3, log = true }", "learning-rate'"),
        ("gamma = { choices = [] }", "gamma'"),
        ("vec = { choices = ['serial', 'threads'] }", "vec'"),
        ("clip-coef = { low = 0.3, high = 0.1 }", "clip-coef'"),
        ("ent-coef = { low = 0.0, hi = 0.1 }", "ent-coef'"),
        # values of the flag's type that no run can use failed as trials, after the study
        # held them (the docs say they are refused before it is touched)
        ("gamma = { choices = [0.9, 1.5] }", "gamma': --gamma must be in \\[0, 1\\], got 1.5"),
        ("num-envs = { choices = [0, 4] }", "num-envs': --num-envs must be at least 1, got 0"),
        ("learning-rate = { low = -1e-3, high = 1e-3 }", "learning-rate': --learning-rate"),
        ("update-epochs = 0", "update-epochs': --update-epochs must be at least 1"),
        ("policy = { choices = ['mlp', 'no_such_policy'] }", "policy': unknown policy"),
    ],
)
def test_a_bad_space_file_is_refused_naming_the_key(tmp_path, text, named):
    with pytest.raises(UserError, match=f"key '{named}"):
        load_space(_space_file(tmp_path, text), default_space("classic_control", 256))


def test_objectives_score_the_curve():
    curve = [(100, 10.0), (200, 30.0), (300, 20.0)]
    assert score(curve, "final", 1000, None) == 20.0
    assert score(curve, "final", 1000, None, upto=250) == 30.0
    assert score(curve, "auc", 1000, None) == pytest.approx((20 + 25) * 100 / 200)
    assert score(curve, "steps", 1000, 25.0) == 200.0
    assert score(curve, "steps", 1000, 60.0) == pytest.approx(1000 * (1 + 30 / 60))
    assert score(curve, "final", 1000, None, upto=50) is None


class _Trial:
    def __init__(self) -> None:
        self.reports: dict[int, float] = {}

    def report(self, value: float, step: int) -> None:
        self.reports[step] = value


def test_trials_report_at_points_of_the_budget_and_all_of_them_once_ended(tmp_path):
    from puffertrain.sweep.trial import TrialJob

    trial = _Trial()
    job = TrialJob(None, trial, tmp_path, [], "final", 2000, None, True, lambda: None)  # per 100
    job._report([(100, 1.0), (250, 2.0)])
    assert trial.reports == {1: 1.0, 2: 1.0}  # 300 is not passed yet
    job._report([(100, 1.0), (250, 2.0), (420, 5.0)], ended=True)  # stopped at its target
    assert trial.reports == {1: 1.0, 2: 1.0, 3: 2.0, 4: 2.0} | {n: 5.0 for n in range(5, 21)}


def test_config_round_trip_and_bad_config_files(tmp_path, capsys):
    from puffertrain.cli import parse_train_args

    run_dir = tmp_path / "run"
    trained = run_cli(*FLAGS, "--total-timesteps", "256", "--seed", "7", "--run-dir", str(run_dir))
    assert trained.returncode == 0, trained.stderr
    original = config_from_file(run_dir / "config.json")
    again, _ = parse_train_args(["--config", str(run_dir / "config.json")])
    assert again == TrainConfig(**{**vars(original), "config": run_dir / "config.json"})
    assert (again.seed, again.num_envs, again.run_dir) == (7, 4, None)
    overridden, _ = parse_train_args(["--config", str(run_dir / "config.json"), "--gamma", "0.9"])
    assert (overridden.ppo.gamma, overridden.seed) == (0.9, 7)

    bad, text = tmp_path / "bad.json", (run_dir / "config.json").read_text()
    bad.write_text(text.replace('"gamma"', '"gama"'))
    code, _, stderr = _in_process(capsys, "--config", str(bad))
    assert code == 2
    assert stderr.strip() == f"puffertrain: error: --config {bad}: unknown key 'ppo.gama'"
    bad.write_text(
        (run_dir / "config.json").read_text().replace('"num_envs": 4', '"num_envs": "4"')
    )
    with pytest.raises(UserError, match="key 'num_envs' must be int, got '4'"):
        parse_train_args(["--config", str(bad)])
    bad.write_text(re.sub(r'"adam_betas": \[[^]]*\]', '"adam_betas": [0.9]', text))
    with pytest.raises(UserError, match=r"key 'ppo.adam_betas' must be a list of 2, got \[0.9\]"):
        parse_train_args(["--config", str(bad)])


def test_a_config_file_written_by_hand_sets_its_keys_over_its_envs_preset(tmp_path):
    """A file with only some keys got the dataclass's CleanRL defaults for the rest (128 steps,
    no observation normalisation, value clipping, no evaluations), not the env's preset that
    `--env` on the command line gives."""
    from puffertrain.cli import parse_train_args

    path = tmp_path / "mine.json"
    path.write_text('{"env": "CartPole-v1", "total_timesteps": 2048, "ppo": {"gamma": 0.9}}')
    from_file, _ = parse_train_args(["--config", str(path)])
    flags = ["--env", "CartPole-v1", "--total-timesteps", "2048", "--gamma", "0.9"]
    from_flags, _ = parse_train_args(flags)
    assert from_file == dataclasses.replace(from_flags, config=path)


def test_ctrl_c_stops_the_sweep_and_the_same_command_continues_it(tmp_path, capsys):
    sweep_dir, space = tmp_path / "sweep", _space_file(tmp_path)
    args = [*_sweep_args(sweep_dir, space), "--trials", "2", "--total-timesteps", "3072"]
    process = start_cli(*args)
    first = sweep_dir / "trial_0000"
    deadline = time.monotonic() + 120
    while not list(first.glob("events.*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole group
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == -signal.SIGINT, stderr
    stopped_at = _final_step(first)
    assert 0 < stopped_at < 3072
    trials = _study(sweep_dir).get_trials()
    assert [trial.state for trial in trials] == [State.FAIL, State.WAITING]
    assert trials[1].user_attrs == {"retry_of": 0, "run_dir": "trial_0000"}  # not 0's figures

    bad = [tmp_path / "missing.toml" if arg == str(space) else arg for arg in args]
    code, _, stderr = _in_process(capsys, *map(str, bad))  # a bad command leaves the study
    assert code == 2 and len(stderr.strip().splitlines()) == 1
    assert len(_study(sweep_dir).get_trials()) == 2

    code, _, stderr = _in_process(capsys, *args, "--jobs", "2")  # the retry and trial 2 at once
    assert code == 0, stderr
    trials = _study(sweep_dir).get_trials()
    assert [trial.state for trial in trials] == [State.FAIL] + [State.COMPLETE] * 2
    retry = trials[1]
    assert retry.user_attrs["retry_of"] == 0 and retry.user_attrs["run_dir"] == "trial_0000"
    assert retry.params == trials[0].params
    for name in ("trial_0000", "trial_0002"):  # the retry resumed trial 0's run
        assert _final_step(sweep_dir / name) == 3072
    best = min(trials[1:], key=lambda trial: -trial.value)
    assert config_from_file(sweep_dir / "best_config.json").ppo.learning_rate == pytest.approx(
        best.params["learning-rate"]
    )
    assert not list(sweep_dir.glob("*.png"))  # drawn when asked for (--plots, --summary)


def test_the_pruner_stops_a_trial_whose_eval_curve_lags(tmp_path, capsys):
    sweep_dir, space = tmp_path / "sweep", _space_file(tmp_path)
    args = [*_sweep_args(sweep_dir, space), "--total-timesteps", "8192"]
    args += ["--eval-interval", "2", "--eval-episodes", "2", "--prune-after", "1"]
    code, _, stderr = _in_process(capsys, *args, "--trials", "1")  # the preset's lr 1e-3
    assert code == 0, stderr
    _study(sweep_dir).enqueue_trial({"learning-rate": 1e-4 / 1000})  # a policy that stays put
    code, stdout, stderr = _in_process(capsys, *args, "--trials", "2")
    assert code == 0, stderr
    trials = _study(sweep_dir).get_trials()
    assert [trial.state for trial in trials] == [State.COMPLETE, State.PRUNED], stderr
    assert _final_step(sweep_dir / "trial_0001") < 8192
    assert "PRUNED" in stdout


def _two_workers(tmp_path: Path, storage: list[str], trials: int) -> list[str]:
    """Run two sweep processes on one study at once; return their run dirs' names."""
    space = _space_file(tmp_path)
    workers = [
        subprocess.Popen(
            cli_command(
                *_sweep_args(tmp_path / name, space),
                *storage,
                "--trials",
                str(trials),
                "--total-timesteps",
                "1024",
            ),
            cwd=REPO_ROOT,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    for worker in workers:
        _, stderr = worker.communicate(timeout=300)
        assert worker.returncode == 0, stderr
    return [run.name for name in ("a", "b") for run in (tmp_path / name).glob("trial_*")]


def _check_each_trial_ran_once(study: optuna.Study, runs: list[str], trials: int) -> None:
    states = [trial.state for trial in study.get_trials() if "surplus" not in trial.user_attrs]
    assert states == [State.COMPLETE] * trials
    ran = [
        trial.user_attrs["run_dir"] for trial in study.get_trials() if "run_dir" in trial.user_attrs
    ]
    assert sorted(runs) == sorted(ran) and len(set(runs)) == trials


POP_QUEUED = """
import json, pathlib, sys, time
import optuna
from puffertrain.sweep.study import open_storage
optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.load_study(study_name="queue", storage=open_storage(sys.argv[1]))
pathlib.Path(sys.argv[3]).touch()
while not pathlib.Path(sys.argv[2]).exists():
    time.sleep(0.01)
popped = []
while (trial_id := study._pop_waiting_trial_id()) is not None:
    popped.append(trial_id)
print(json.dumps(popped))
"""


def test_processes_popping_one_sqlite_queue_each_take_a_trial_no_other_takes(tmp_path):
    """Python's sqlite3 driver let two processes read one queued trial as waiting and both
    mark it running (the CI failure of two sweeps on one study: both ran trial 0)."""
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    study = optuna.create_study(study_name="queue", storage=url)
    for x in range(40):
        study.enqueue_trial({"x": x})
    go = tmp_path / "go"
    ready = [tmp_path / f"ready_{worker}" for worker in range(4)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", POP_QUEUED, url, str(go), str(flag)],
            cwd=REPO_ROOT,
            env=cli_env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        for flag in ready
    ]
    deadline = time.monotonic() + 120
    while not all(flag.exists() for flag in ready) and time.monotonic() < deadline:
        time.sleep(0.05)  # each has opened the study: they pop at once
    go.touch()
    popped = [
        trial_id
        for worker in workers
        for trial_id in json.loads(worker.communicate(timeout=120)[0])
    ]
    assert sorted(popped) == sorted(trial._trial_id for trial in study.get_trials())


def test_two_sweeps_on_one_sqlite_study_share_the_trials(tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    runs = _two_workers(tmp_path, ["--storage", storage], trials=4)
    study = optuna.load_study(study_name="test", storage=storage)
    _check_each_trial_ran_once(study, runs, 4)
    summary_dir = tmp_path / "summary"
    code, stdout, stderr = _in_process(
        capsys,
        "sweep",
        "--study",
        "test",
        "--storage",
        storage,
        "--run-dir",
        str(summary_dir),
        "--summary",
    )
    assert code == 0, stderr
    assert stdout.count("COMPLETE") == 4
    assert {path.name for path in summary_dir.glob("*.png")} == {
        "importances.png",
        "history.png",
        "parallel_coordinates.png",
    }


def test_two_sweeps_on_one_postgresql_study_share_the_trials(tmp_path):
    with postgres_server() as url:
        runs = _two_workers(tmp_path, ["--storage", url], trials=4)
        _check_each_trial_ran_once(optuna.load_study(study_name="test", storage=url), runs, 4)


def test_a_storage_whose_tables_another_sweep_is_creating_is_opened_again(monkeypatch):
    import sqlalchemy.exc

    from puffertrain.sweep import study

    real, calls = optuna.storages.RDBStorage, []

    def racing(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:  # what SQLite said when two sweeps started on a new file at once
            message = "table trial_params already exists"
            raise sqlalchemy.exc.OperationalError("CREATE TABLE trial_params", {}, message)
        return real(*args, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", racing)
    monkeypatch.setattr(study.time, "sleep", lambda seconds: None)
    assert isinstance(study.open_storage("sqlite://"), real) and len(calls) == 2


def test_an_unknown_storage_is_one_line(tmp_path, capsys):
    args = [*_sweep_args(tmp_path, _space_file(tmp_path)), "--storage", "nosuch://x"]
    code, _, stderr = _in_process(capsys, *args)
    assert code == 2
    assert stderr.startswith("puffertrain: error: --storage nosuch://x: cannot open it")
    assert len(stderr.strip().splitlines()) == 1


def test_a_database_that_fails_mid_sweep_is_one_line_and_the_study_is_kept(
    tmp_path, monkeypatch, capsys
):
    import sqlite3

    import sqlalchemy.exc

    def locked(storage, trial_id):
        raise sqlalchemy.exc.OperationalError(
            "UPDATE trial_heartbeats", {}, sqlite3.OperationalError("database is locked")
        )

    monkeypatch.setattr(optuna.storages.RDBStorage, "record_heartbeat", locked)
    sweep_dir = tmp_path / "sweep"
    args = [*_sweep_args(sweep_dir, _space_file(tmp_path)), "--total-timesteps", "100000"]
    before = child_pids()
    code, _, stderr = _in_process(capsys, *args)
    assert code == 2 and "Traceback" not in stderr
    url = f"sqlite:///{sweep_dir / 'sweep.db'}"
    last_line = stderr.strip().splitlines()[-1]
    assert last_line.startswith(
        f"puffertrain: error: --storage {url}: the study's database failed: "
        "(sqlite3.OperationalError) database is locked. Trials running here were stopped"
    )
    assert [trial.state for trial in _study(sweep_dir).get_trials()] == [State.RUNNING]
    after = child_pids()
    if after is not None:  # the run was stopped and waited for (earlier tests' children aside)
        assert after <= before


def test_a_sweep_without_optuna_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)  # what an install without the extra has
    code, _, stderr = _in_process(capsys, *_sweep_args(tmp_path, _space_file(tmp_path)))
    assert code == 2
    assert (
        stderr.strip() == "puffertrain: error: sweep needs Optuna: pip install 'puffertrain[sweep]'"
    )


def test_a_config_file_tuple_is_checked_item_by_item():
    import dataclasses

    from puffertrain.config import _checked

    @dataclasses.dataclass
    class Pair:
        pair: tuple[int, str] = (0, "")

    assert _checked({"pair": [1, "a"]}, Pair) == {"pair": (1, "a")}
    with pytest.raises(UserError, match="key 'pair' must be str, got 2"):
        _checked({"pair": [1, 2]}, Pair)


def test_the_first_trial_can_try_every_searched_value_of_the_starting_config():
    """The generic preset trains on 16 minibatches, which the default choices (1, 2, 4, 8) did
    not hold: the first trial, documented to try the starting config, sampled another value."""
    from puffertrain.cli import parse_train_args

    config, _ = parse_train_args(["--env", "Taxi-v4"])
    assert config.ppo.num_minibatches == 16
    space = default_space("other", None, config)
    start = starting_values(space, config, None)
    assert start["num-minibatches"] == 16
    assert set(start) == {flag for flag in space.params if "." not in flag}


def test_the_docs_space_file_example_loads_as_it_reads(tmp_path):
    """Copied from docs/sweeps.md, its bare keys after [learning-rate] belonged to that table
    in TOML, and the file was refused ("unknown field 'anneal-lr'")."""
    docs = (REPO_ROOT / "docs" / "sweeps.md").read_text()
    example = re.search(r"```toml\n(.*?)```", docs, re.S)[1]
    space = load_space(_space_file(tmp_path, example), default_space("classic_control", 256))
    assert space.params["learning-rate"] == Param("learning-rate", 1e-5, 1e-2, log=True)
    assert space.params["num-minibatches"].choices == (1, 2, 4)
    assert space.fixed["gamma"] == 0.99
    assert space.params["policy-kwargs.hidden_size"].choices == (64, 128)


@pytest.mark.parametrize("returncode", [-signal.SIGTERM, 128 + signal.SIGTERM, -signal.SIGINT])
def test_a_trial_its_own_signal_stopped_is_queued_to_resume_not_scored(tmp_path, returncode):
    """A trial's run stopped by a signal of its own (a preemption, a `timeout`) exited 0 and
    was scored as finished at a fraction of its budget, and could become the best; stopped
    before its first evaluation it failed for good although it had a checkpoint."""
    from puffertrain.sweep.trial import TrialJob

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", study_name="s")
    trial = study.ask()
    job = TrialJob(
        study, trial, tmp_path / "trial_0000", [], "final", 10_000, None, False, lambda: None
    )
    assert job.finished(returncode, stopped=False)
    trials = study.get_trials()
    assert [t.state for t in trials] == [State.FAIL, State.WAITING]


def test_a_sweep_folder_whose_database_was_emptied_is_refused(tmp_path, capsys):
    """An emptied sweep.db started a new study over the old trials' folders: new trials
    collided with them (failed with 'flags contradict the checkpoint'), best_config.json was
    overwritten with a worse config, and the command exited 0."""
    sweep_dir, space = tmp_path / "sweep", _space_file(tmp_path)
    (sweep_dir / "trial_0000").mkdir(parents=True)
    (sweep_dir / "trial_0000" / "config.json").write_text("{}")
    (sweep_dir / "sweep.db").write_bytes(b"")
    code, _, stderr = _in_process(capsys, *_sweep_args(sweep_dir, space), "--trials", "2")
    assert code == 2 and len(stderr.strip().splitlines()) == 1
    assert "holds the runs of trials (trial_0000)" in stderr
    assert "has no study 'test' (its database was emptied)" in stderr
    assert sorted(path.name for path in sweep_dir.iterdir()) == ["sweep.db", "trial_0000"]


def test_a_sweep_whose_every_trial_failed_exits_1(tmp_path, capsys):
    """It exited 0 with 'no best config': `sweep ... && train --config best_config.json` went
    on."""
    sweep_dir, space = tmp_path / "sweep", _space_file(tmp_path)
    args = [*_sweep_args(sweep_dir, space), "--trials", "1", "--policy", "cnn"]
    code, _, stderr = _in_process(capsys, *args)
    assert code == 1 and "every trial failed" in stderr
