"""Every user mistake gets one line on stderr, exit code 2, and leaves existing runs alone."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from puffertrain.cli import main
from puffertrain.envs import env_factory
from puffertrain.errors import UserError
from tests.conftest import run_cli

TINY = ["--num-envs", "2", "--num-steps", "16", "--total-timesteps", "64", "--device", "cpu"]


def _error(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("puffertrain: error: ")
    return err


def _digest(directory: Path) -> dict[str, str]:
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def finished_run(tmp_path, capsys) -> Path:
    run_dir = tmp_path / "run"
    main(["--env", "CartPole-v1", "--policy", "mlp", "--run-dir", str(run_dir), *TINY])
    capsys.readouterr()
    return run_dir


def test_unknown_env_suggests_close_ids(capsys):
    err = _error(capsys, "--env", "CartPol-v1")
    assert "unknown env id 'CartPol-v1'" in err and "CartPole-v1" in err


@pytest.mark.parametrize("env_id", ["CartPole-v1", "mpe2.simple_spread_v3:parallel_env"])
def test_env_kwargs_the_env_does_not_take(capsys, tmp_path, env_id):
    run_dir = tmp_path / "r"
    err = _error(capsys, "--env", env_id, "--env-kwargs", '{"nope": 1}', "--run-dir", str(run_dir))
    assert f"--env-kwargs for '{env_id}'" in err and "nope" in err
    assert not run_dir.exists()


def test_unknown_policy_lists_names(capsys):
    err = _error(capsys, "--env", "CartPole-v1", "--policy", "transformerx")
    assert "unknown policy 'transformerx'" in err and "mlp" in err


def test_user_policy_that_is_not_a_module(capsys):
    err = _error(capsys, "--env", "CartPole-v1", "--policy", "tests.envs:counting_truncated")
    assert "not an nn.Module class" in err


def test_bad_input_leaves_no_run_directory(capsys, tmp_path):
    _error(capsys, "--env", "CartPole-v1", "--policy", "cnn", "--run-dir", str(tmp_path / "r"))
    _error(capsys, "--env", "CartPole-v1", "--policy", "nope", "--run-dir", str(tmp_path / "r"))
    assert not (tmp_path / "r").exists()


def test_policy_that_cannot_take_the_spaces(capsys, tmp_path):
    err = _error(
        capsys, "--env", "CartPole-v1", "--policy", "continuous", "--run-dir", str(tmp_path / "r")
    )
    assert "policy 'continuous' cannot take" in err and "Discrete(2)" in err
    assert "policies that can: mlp, separate_mlp, multi_input, attention, residual, lstm" in err
    assert "shared" not in err and "independent" not in err  # multi-agent policies


@pytest.mark.parametrize(
    ("policy", "what"),
    [
        ("GuideRecurrentAsWritten", "forward returned (Tensor, Tensor, tuple), not tensors"),
        ("GuideOptimizedLSTMAsWritten", "it has no forward method"),
    ],
)
def test_the_guides_recurrent_sketches_as_written_are_told_the_recurrent_contract(
    capsys, tmp_path, policy, what
):
    """The guide's RecurrentPolicy (state in and out of forward) failed with "'tuple' object
    has no attribute 'numel'" and its OptimizedLSTMPolicy (no forward) with torch's "missing
    the required forward function"; neither said what a recurrent policy implements here."""
    run_dir = str(tmp_path / "r")
    name = f"tests.user_policy:{policy}"
    err = _error(capsys, "--env", "CartPole-v1", "--policy", name, "--run-dir", run_dir)
    assert what in err and "initial_state, forward_step and forward_sequence" in err
    assert "--policy recurrent and optimized_lstm" in err


def test_a_policy_refusing_an_image_with_bounds_by_entry_says_so_in_one_line(capsys, tmp_path):
    """MiniGrid's image bounds differ by channel, and gymnasium's repr of such a Box spells out
    all 147 entries: a policy refusing MiniGrid printed 57 lines with the reason on the last.
    The spaces are now described by bounds, shape and dtype."""
    run_dir = str(tmp_path / "r")
    err = _error(
        capsys, "--env", "tests.space_envs:grid_image", "--policy", "mlp", "--run-dir", run_dir
    )
    assert "'image': Box(0, 2..10, (7, 7, 3), uint8)" in err
    assert err.endswith("policies that can: multi_input, lstm")


def test_resume_missing(capsys, tmp_path):
    err = _error(capsys, "--resume", str(tmp_path / "nope"))
    assert "does not exist" in err


def test_resume_dir_without_checkpoints(capsys, tmp_path):
    err = _error(capsys, "--resume", str(tmp_path))
    assert "holds no checkpoints" in err


def test_resume_corrupt_checkpoint_leaves_it_alone(capsys, finished_run):
    newest = sorted((finished_run / "checkpoints").glob("*.pt"))[-1]
    newest.write_bytes(newest.read_bytes()[:1000])
    before = _digest(finished_run)
    err = _error(capsys, "--resume", str(finished_run))
    assert "is corrupt" in err
    assert _digest(finished_run) == before


def test_resume_with_contradicting_env_or_policy(capsys, finished_run):
    before = _digest(finished_run)
    err = _error(capsys, "--resume", str(finished_run), "--env", "Acrobot-v1")
    assert "--env Acrobot-v1 (checkpoint: CartPole-v1)" in err
    err = _error(capsys, "--resume", str(finished_run), "--policy", "tests.x:Y")
    assert "--policy tests.x:Y (checkpoint: mlp)" in err
    assert _digest(finished_run) == before


def test_run_dir_that_holds_a_run_is_refused_unless_overwrite(capsys, finished_run):
    before = _digest(finished_run)
    err = _error(capsys, "--env", "CartPole-v1", "--run-dir", str(finished_run), *TINY)
    assert "already holds a run" in err
    assert _digest(finished_run) == before
    main(["--env", "CartPole-v1", "--run-dir", str(finished_run), "--overwrite", *TINY])
    assert _digest(finished_run) != before


def test_values_no_run_can_use(capsys):
    assert "--num-envs must be at least 1, got 0" in _error(
        capsys, "--env", "CartPole-v1", "--num-envs", "0"
    )
    assert "exceeds the batch" in _error(
        capsys, "--env", "CartPole-v1", "--num-minibatches", "10000"
    )
    assert "--eval-step-share must be above 0 (None: no limit), got 0.0" in _error(
        capsys, "--env", "CartPole-v1", "--eval-step-share", "0"
    )
    assert "--adam-betas must each be in [0, 1), got 1.0 0.9" in _error(
        capsys, "--env", "CartPole-v1", "--adam-betas", "1", "0.9"
    )
    for flag in ("--target-kl", "--adaptive-lr-kl"):
        assert f"{flag} must be above 0 (None: off), got -0.1" in _error(
            capsys, "--env", "CartPole-v1", flag, "-0.1"
        )


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--learning-rate", "-1", "--learning-rate must be above 0, got -1.0"),
        ("--clip-coef", "0", "--clip-coef must be above 0, got 0.0"),
        ("--max-grad-norm", "-0.5", "--max-grad-norm must be above 0, got -0.5"),
        ("--gamma", "1.5", "--gamma must be in [0, 1], got 1.5"),
        ("--gae-lambda", "-0.1", "--gae-lambda must be in [0, 1], got -0.1"),
        ("--vf-coef", "-1", "--vf-coef must be 0 or more, got -1.0"),
    ],
)
def test_ppo_values_out_of_range_are_one_line(capsys, flag, value, message):
    """A negative learning rate was a 29-line traceback from Adam; --gamma 1.5 trained."""
    assert message in _error(capsys, "--env", "CartPole-v1", flag, value)


def test_missing_env(capsys):
    assert "--env is required" in _error(capsys, "--policy", "mlp")


def test_bad_flag_exits_nonzero_without_traceback():
    result = run_cli("--env", "CartPole-v1", "--lerning-rate", "3")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--learning-rate" in result.stderr  # tyro suggests the close flag


def test_eval_of_a_missing_checkpoint_names_its_own_flag(capsys, tmp_path):
    err = _error(capsys, "eval", "--checkpoint", str(tmp_path / "nope"))
    assert "--checkpoint: " in err and "does not exist" in err


def test_malformed_policy_kwargs_are_named_as_such(capsys, tmp_path):
    """They were reported as "--env-kwargs is not valid JSON"."""
    run_dir = str(tmp_path / "r")
    err = _error(capsys, "--env", "CartPole-v1", "--policy-kwargs", "{bad", "--run-dir", run_dir)
    assert "--policy-kwargs is not valid JSON" in err and "--env-kwargs" not in err


def test_a_video_of_an_env_that_takes_no_render_mode_names_the_video_not_env_kwargs():
    """Recording asks the env for render_mode; an env whose constructor takes none was reported
    as a bad --env-kwargs, which the user never gave."""
    build = env_factory("tests.envs:PufferTest/Counting-v0", {"render_mode": "rgb_array"})
    with pytest.raises(UserError, match=r"cannot record videos \(--video, --video-interval\)"):
        build()
    with pytest.raises(UserError, match="--env-kwargs for"):
        env_factory("tests.envs:PufferTest/Counting-v0", {"colour": "red"})()


def test_resuming_below_the_trained_steps_is_refused_and_a_done_run_says_so(capsys, finished_run):
    """`--resume RUN --total-timesteps N` with N below the run's steps exited 0 in silence,
    its bar at "19,968/9,984 steps"; a finished run resumed as it was said nothing either."""
    before = _digest(finished_run)
    err = _error(capsys, "--resume", str(finished_run), "--total-timesteps", "32")
    assert "--total-timesteps 32 is below the 64 steps the run has trained" in err
    main(["--resume", str(finished_run)])
    assert "nothing to do; a larger --total-timesteps extends it" in capsys.readouterr().err
    assert _digest(finished_run) == before


def test_a_third_output_for_discrete_actions_is_refused_not_read_as_the_value(capsys, tmp_path):
    run_dir = str(tmp_path / "r")
    name = "tests.user_policy:ThreeOutputsForDiscreteActions"
    err = _error(capsys, "--env", "CartPole-v1", "--policy", name, "--run-dir", run_dir)
    assert (
        "forward must return (logits, value) for these actions, got (Tensor, Tensor, Tensor)" in err
    )


def test_resume_with_seeds_is_refused_before_any_folder_is_made(capsys, finished_run, tmp_path):
    """`--resume RUN --seeds 7 8` started a new seeds parent whose children got neither --env
    nor --resume (exit 1, a folder left behind each time); `--resume PARENT --seeds 4 5`
    resumed the parent's own seeds and dropped --seeds without a word."""
    parent = tmp_path / "parent"
    parent.mkdir()
    (parent / "seeds.json").write_text("{}")
    before = sorted(path for path in tmp_path.rglob("*"))
    err = _error(capsys, "--resume", str(finished_run), "--seeds", "7", "8")
    assert "continues one run, and --seeds starts new runs: give one" in err
    err = _error(capsys, "--resume", str(parent), "--seeds", "4", "5")
    assert "continues the seeds its folder holds, and --seeds starts new runs" in err
    assert sorted(path for path in tmp_path.rglob("*")) == before


@pytest.mark.parametrize(
    ("env", "vec", "named"),
    [
        ("array_reward", "serial", "env 0: its step returned the reward array([1.])"),
        ("array_reward", "multiprocessing", ": its step returned the reward array([1.])"),
        ("array_reward_agents", "serial", "agent first: its step returned the reward array([1.])"),
        ("wrong_reset_shape", "serial", "env 0: its reset returned an observation of shape (2,)"),
    ],
)
def test_a_reward_or_observation_its_rows_cannot_hold_is_named_in_one_line(
    cli, tmp_path, env, vec, named
):
    """A reward returned as an array of shape (1,) was a raw 'setting an array element with a
    sequence' traceback (raised from --vec auto's timing of the env, or from the rollout)."""
    run_dir = str(tmp_path / "r")
    result = cli("--env", f"tests.envs:{env}", "--vec", vec, "--run-dir", run_dir, *TINY)
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert last.startswith("puffertrain: error: ") and named in last
    assert "a reward is one number (a float)" in last or "space holds (1,)" in last


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bench", "--num-envs", "0"], "--num-envs must be at least 1, got 0"),
        (["bench", "--seconds", "0"], "--seconds must be above 0, got 0.0"),
        (["bench", "--windows", "0"], "--windows must be at least 1, got 0"),
        (["bench", "--num-workers=-1"], "--num-workers must be 0 (automatic) or more, got -1"),
        (["--num-workers=-1"], "--num-workers must be 0 (automatic) or more, got -1"),
        (["--num-threads=-1"], "--num-threads must be 0 (automatic) or more, got -1"),
    ],
)
def test_bench_and_engine_sizes_no_run_can_use_are_one_line(capsys, args, message):
    """Each was a traceback (IndexError, ZeroDivisionError, StatisticsError) or, for
    --num-threads -1, taken in silence."""
    assert message in _error(capsys, *args, "--env", "CartPole-v1")


def test_colour_atari_frames_are_refused_by_auto_not_fed_raw_to_an_mlp(capsys, tmp_path):
    """With grayscale false the recipe's frames are (4, 84, 84, 3) uint8, and --policy auto
    picked the mlp, which trained on raw 0-255 pixels in silence."""
    run_dir = str(tmp_path / "r")
    flags = ["--env", "ALE/Pong-v5", "--env-kwargs", '{"grayscale": false}', "--run-dir", run_dir]
    err = _error(capsys, *flags)
    assert "no library policy takes uint8 frames of shape (4, 84, 84, 3)" in err


def test_a_folder_of_runs_given_as_a_checkpoint_names_the_runs_in_it(cli, finished_run):
    """`eval --checkpoint` of a --seeds parent said only that it holds no checkpoints."""
    parent = finished_run.parent
    (parent / "seeds.json").write_text("{}")
    result = cli("eval", "--checkpoint", str(parent))
    assert result.returncode == 2
    assert "the runs in it do (run): give one of them" in result.stderr


@pytest.mark.parametrize(
    ("env", "flags", "named"),
    [
        ("nan_reward", [], "env 1: the reward nan (step 6 of the rollout)"),
        ("inf_reward", [], "env 1: the reward inf (step 6 of the rollout)"),
        ("inf_reward", ["--clip-rewards"], "env 1: the reward inf (step 6 of the rollout)"),
        ("inf_observation", [], "env 1: an observation holding inf (step 7 of the rollout)"),
        ("none_reward", [], "env 1: its step returned the reward None; a reward is one number"),
    ],
)
def test_a_nan_or_none_from_an_env_stops_the_run_before_it_reaches_the_weights(
    cli, tmp_path, env, flags, named
):
    """A nan or None reward, or an inf observation, turned every weight into nan and the run
    went on and exited 0, rotating the good checkpoints out (with evaluation on, it crashed
    in statistics.pstdev with no checkpoint at all)."""
    import torch

    from puffertrain.trainer.checkpoint import list_checkpoints, load_checkpoint

    run_dir = tmp_path / "r"
    # the generic preset scales rewards, evaluates, and takes the nan into its statistics
    flags += ["--env", f"tests.envs:{env}", "--vec", "serial", "--run-dir", str(run_dir)]
    result = cli(*flags, "--num-envs", "2", "--num-steps", "16", "--total-timesteps", "256")
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert last.startswith("puffertrain: error: ") and named in last
    assert f"--resume {run_dir} continues" in last
    saved = load_checkpoint(list_checkpoints(run_dir)[-1])
    assert all(torch.isfinite(value).all() for value in saved.policy.values())
    normalizer = saved.ranks[0].reward_normalizer
    assert normalizer is None or torch.isfinite(normalizer["moments"]).all()


def test_an_evaluation_of_nan_returns_logs_nan_and_goes_on():
    from puffertrain.engine.episodes import Episode
    from puffertrain.trainer.evaluation import EvalResult

    scalars = EvalResult([Episode(0, float("nan"), 3), Episode(1, 2.0, 3)], 6).scalars()
    assert np.isnan(scalars["eval/episodic_return_std"])


def test_an_eval_env_that_raises_ends_the_run_with_a_checkpoint_of_the_update(cli, tmp_path):
    """An eval env's failure (or a frame it could not draw) ended the run with a traceback and
    no checkpoint: everything since the last periodic one was lost."""
    from puffertrain.trainer.checkpoint import list_checkpoints, load_checkpoint

    run_dir = tmp_path / "r"
    flags = ["--env", "tests.envs:eval_raising", "--run-dir", str(run_dir), "--eval-interval", "2"]
    result = cli(*flags, "--num-envs", "2", "--num-steps", "16", "--total-timesteps", "256")
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 2
    assert "puffertrain: error: evaluation: env 0 raised" in result.stderr
    assert last.endswith(f"--resume {run_dir} continues (--eval-interval 0: without evaluating)")
    assert load_checkpoint(list_checkpoints(run_dir)[-1]).global_step == 64  # the 2nd update's
    resumed = cli("--resume", str(run_dir), "--eval-interval", "0")
    assert resumed.returncode == 0, resumed.stderr


def test_frames_this_machine_cannot_draw_are_one_line_before_anything_runs(capsys, tmp_path):
    """A headless MuJoCo's --video-interval run crashed with a traceback at its first
    evaluation, losing the steps trained; `eval --video` too."""
    run_dir = str(tmp_path / "r")
    env = ["--env", "tests.envs:headless_render", "--run-dir", run_dir, *TINY]
    err = _error(capsys, *env, "--video-interval", "1")
    assert "--video-interval: this env cannot render frames here: an OpenGL platform" in err
    assert err.endswith("; without a display, set MUJOCO_GL=egl (or osmesa)")
    assert not Path(run_dir).exists()
    main(env)
    capsys.readouterr()
    err = _error(capsys, "eval", "--checkpoint", run_dir, "--video", str(tmp_path / "v.mp4"))
    assert "--video: this env cannot render frames here: an OpenGL platform" in err


def test_an_update_that_diverges_stops_the_run_before_a_checkpoint_holds_it(cli, tmp_path):
    """An update that turned the weights to nan went on and saved them every interval,
    rotating the good checkpoints out, and the run exited 0."""
    import torch

    from puffertrain.trainer.checkpoint import list_checkpoints, load_checkpoint

    run_dir = tmp_path / "r"
    flags = ["--env", "CartPole-v1", "--learning-rate", "1e30", "--checkpoint-interval", "1"]
    result = cli(*flags, "--run-dir", str(run_dir), *TINY)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "the update turned the policy's weights to nan or inf" in result.stderr
    for path in list_checkpoints(run_dir):
        assert all(torch.isfinite(value).all() for value in load_checkpoint(path).policy.values())
