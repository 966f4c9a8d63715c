"""Evaluation during training: it changes nothing of training, keeps the best checkpoint, stops
at a return, records videos and resumes exactly."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from puffertrain.cli import parse_train_args
from puffertrain.config import TrainConfig
from puffertrain.trainer.checkpoint import best_checkpoint_path, list_checkpoints, load_checkpoint
from puffertrain.trainer.evaluation import EVAL_STEP_LIMIT
from puffertrain.trainer.loop import Trainer
from tests.conftest import run_cli
from tests.test_resume import assert_same_run, resume_after_a_crash

FLAGS = ["--env", "CartPole-v1", "--vec", "serial", "--num-envs", "4", "--seed", "3"]
UPDATE = 4 * 32  # rows × the preset's steps


def _events(run_dir):
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


SMALL = TrainConfig(
    env="CartPole-v1", policy="mlp", num_envs=4, num_steps=32, vec="serial", device="cpu"
)
"""A run of UPDATE steps an update, built in-process."""


def test_training_is_the_same_with_evaluation_on_or_off(tmp_path):
    config = dataclasses.replace(SMALL, total_timesteps=6 * UPDATE)
    evaluated = dataclasses.replace(config, eval_interval=1, eval_episodes=2, eval_stochastic=True)
    finals = []
    for index, run in enumerate((config, evaluated)):
        # the policy's orthogonal init depends on torch's thread count, which the first
        # trainer left at its own choice: start both from the same count
        torch.set_num_threads(2)
        trainer = Trainer(run, tmp_path / str(index), None)
        trainer.train()
        finals.append(trainer.adapter.policy.state_dict())
    assert all(torch.equal(finals[0][name], finals[1][name]) for name in finals[0])


def test_best_checkpoint_and_stop_at_return(tmp_path, cli):
    run_dir = tmp_path / "run"
    flags = [*FLAGS, "--total-timesteps", str(12 * UPDATE), "--eval-interval", "2"]
    result = cli(*flags, "--eval-episodes", "3", "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stderr
    evals = _events(run_dir).Scalars("eval/episodic_return")
    assert [event.step for event in evals] == [2 * UPDATE * k for k in range(1, 7)]
    best = max(evals, key=lambda event: (event.value, -event.step))
    saved = load_checkpoint(best_checkpoint_path(run_dir))
    assert saved.global_step == best.step
    assert saved.evaluation["best"] == pytest.approx(best.value)  # TensorBoard keeps float32
    for tag in ("min", "max", "std"):
        assert len(_events(run_dir).Scalars(f"eval/episodic_return_{tag}")) == 6
    eval_share = _events(run_dir).Scalars("perf/eval_fraction")  # timed as a phase of its own
    assert eval_share and 0 < eval_share[-1].value < 1

    stopped = tmp_path / "stopped"
    flags += ["--stop-at-return", "0", "--run-dir", str(stopped)]
    result = cli(*flags)
    assert result.returncode == 0, result.stderr
    assert "reached --stop-at-return 0" in result.stdout + result.stderr
    assert load_checkpoint(list_checkpoints(stopped)[-1]).global_step == 2 * UPDATE


def test_videos_go_to_the_run_dir_and_tensorboard(tmp_path, cli):
    run_dir = tmp_path / "run"
    flags = [*FLAGS, "--total-timesteps", str(4 * UPDATE), "--eval-interval", "2"]
    result = cli(*flags, "--eval-episodes", "1", "--video-interval", "1", "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stderr
    videos = sorted(path.name for path in (run_dir / "videos").iterdir())
    assert videos == [f"eval_{2 * UPDATE:012d}.mp4", f"eval_{4 * UPDATE:012d}.mp4"]
    images = _events(run_dir).Images("eval/video")
    assert [image.step for image in images] == [2 * UPDATE, 4 * UPDATE]
    assert images[0].encoded_image_string[:6] == b"GIF89a"


def test_a_resumed_run_with_evaluation_is_exact(tmp_path, cli):
    """Evaluations after the resume come at the same updates, play the same seeds and keep the
    same best as the uninterrupted run's (stochastic evaluation, so any RNG leak would show
    too). One is due every update and the step share skips some, so the resumed run must
    also know how many env steps the evaluations before the crash took."""
    flags = [*FLAGS, "--eval-interval", "1", "--eval-step-share", "0.1"]
    flags += ["--eval-episodes", "2", "--eval-stochastic"]
    flags += ["--checkpoint-interval", "2", "--keep-checkpoints", "10"]
    whole, crashed = tmp_path / "whole", tmp_path / "crashed"
    result = cli(*flags, "--total-timesteps", str(8 * UPDATE), "--run-dir", str(whole))
    assert result.returncode == 0, result.stderr
    assert len(_events(whole).Scalars("eval/episodic_return")) < 8  # some were skipped
    resume_after_a_crash(whole, crashed, 4)
    assert_same_run(crashed, whole, updates=8)
    assert load_checkpoint(best_checkpoint_path(crashed)).evaluation == (
        load_checkpoint(best_checkpoint_path(whole)).evaluation
    )


def test_evaluations_take_at_most_their_share_of_env_steps(tmp_path, capsys):
    """With one due every update, an evaluation runs only while those before it stepped at
    most --eval-step-share of training's env steps (2 CartPole episodes against 128 training
    steps an update: most are skipped, and the run says so once); the last update always
    evaluates; with None every one due runs."""
    config = dataclasses.replace(
        SMALL, total_timesteps=12 * UPDATE, eval_interval=1, eval_episodes=2
    )
    schedules = {}
    for share in (0.1, None):
        trainer = Trainer(
            dataclasses.replace(config, eval_step_share=share), tmp_path / str(share), None
        )
        evaluate, schedule = trainer.evaluator.evaluate, []

        def recorded(should_stop=None, trainer=trainer, evaluate=evaluate, schedule=schedule):
            result = evaluate(should_stop)
            schedule.append((trainer.global_step, result.steps))
            return result

        trainer.evaluator.evaluate = recorded
        trainer.train()
        schedules[share] = schedule
    assert [step for step, _ in schedules[None]] == [UPDATE * k for k in range(1, 13)]
    capped = dict(schedules[0.1])
    assert 1 < len(capped) < 12 and 12 * UPDATE in capped
    taken = 0  # env steps of the evaluations so far
    for step in range(UPDATE, 12 * UPDATE, UPDATE):
        assert (step in capped) == (taken <= 0.1 * step), step
        taken += capped.get(step, 0)
    said = " ".join(capsys.readouterr().err.split())  # however the console wrapped it
    assert said.count("the next ones wait until training catches up") == 1


def test_the_presets_evaluate_every_25k_env_steps_and_after_the_last_update(tmp_path, cli):
    """With no eval flag, CartPole's preset evaluates every ~25k env steps, in whole updates of
    the batch the user chose, and once after the last update."""
    config, _ = parse_train_args([*FLAGS, "--total-timesteps", str(3 * UPDATE)])
    assert config.eval_interval == round(25_088 / UPDATE)
    assert config.eval_step_share == 0.1
    notes = []
    given, _ = parse_train_args([*FLAGS, "--eval-interval", "5"], notes)  # exactly as asked
    assert given.eval_step_share is None and any("--eval-step-share 0.1 → None" in n for n in notes)
    both = [*FLAGS, "--eval-interval", "5", "--eval-step-share", "0.2"]
    assert parse_train_args(both)[0].eval_step_share == 0.2
    assert parse_train_args(["--env", "ALE/Breakout-v5"])[0].eval_interval == 0
    run_dir = tmp_path / "run"
    result = cli(*FLAGS, "--total-timesteps", str(3 * UPDATE), "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stderr
    evals = _events(run_dir).Scalars("eval/episodic_return")
    assert [event.step for event in evals] == [3 * UPDATE]
    assert load_checkpoint(best_checkpoint_path(run_dir)).global_step == 3 * UPDATE


def test_stop_at_return_needs_evaluations(cli):
    result = cli(*FLAGS, "--eval-interval", "0", "--stop-at-return", "100")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].endswith("add --eval-interval N (updates)")


def test_games_played_side_by_side_score_as_each_played_alone(tmp_path, cli):
    """``eval`` plays game i on its own env seeded --seed + i, all envs stepping together: each
    game's score and length are those of the same game played alone, and every game counts,
    however long (the first K to finish would favour short ones)."""
    run_dir = tmp_path / "run"
    result = cli(*FLAGS, "--total-timesteps", str(8 * UPDATE), "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stderr

    def games(seed: int, episodes: int) -> list[str]:
        played = cli(
            "eval", "--checkpoint", str(run_dir), "--seed", str(seed),
            "--episodes", str(episodes), "--deterministic",
        )  # fmt: skip
        assert played.returncode == 0, played.stderr
        return re.findall(r"game \d+: (score \S+ \d+ steps)", played.stdout)

    together = games(7, 4)
    assert together == [games(7 + i, 1)[0] for i in range(4)]
    assert len(set(together)) > 1  # the games differ: each env has its own seed


def test_eval_episodes_of_an_env_with_no_time_limit_end_at_a_cap(tmp_path):
    """An env whose episodes never end (and a greedy policy that loops in one) cannot hold
    training up: its eval episodes are truncated at EVAL_STEP_LIMIT steps."""
    run_dir = tmp_path / "run"
    flags = ["--env", "tests.envs:never_ending", "--num-envs", "2", "--num-steps", "16"]
    flags += ["--total-timesteps", "32", "--eval-episodes", "2", "--run-dir", str(run_dir)]
    result = run_cli(*flags, timeout=90)
    assert result.returncode == 0, result.stderr
    lengths = _events(run_dir).Scalars("eval/episodic_length")
    assert [event.value for event in lengths] == [EVAL_STEP_LIMIT]


@pytest.mark.parametrize("env_id", ["tests.envs:dict_env", "CliffWalking-v1"])
def test_eval_builds_the_policy_training_built_for_an_env_with_no_time_limit(tmp_path, cli, env_id):
    """`eval` caps episodes of an env with no time limit by wrapping it in a TimeLimit. That
    wrapper sat over the flattening of Dict and Discrete observations and hid the space the
    policy is built for, so `eval` rebuilt the policy for the flat byte row and failed to load
    the checkpoint (every MiniGrid env, CliffWalking-v1) with a size-mismatch traceback."""
    run_dir = tmp_path / "run"
    flags = ["--env", env_id, "--num-envs", "2", "--num-steps", "16", "--total-timesteps", "32"]
    assert cli(*flags, "--eval-interval", "0", "--run-dir", str(run_dir)).returncode == 0
    result = cli("eval", "--checkpoint", str(run_dir), "--episodes", "1")
    assert result.returncode == 0, result.stderr
    assert "over 1 games" in result.stdout
