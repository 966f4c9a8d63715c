"""A run directory belongs to one run: made at once for a default name, held while training,
never shared, and --overwrite removes only a run's own files."""

from __future__ import annotations

import pytest

from puffertrain.config import TrainConfig
from puffertrain.errors import UserError
from puffertrain.trainer.run_dir import (
    choose_run_dir,
    lock_run_dir,
    reserve_default_run_dir,
    start_run_dir,
)

TINY = ["--num-envs", "2", "--num-steps", "16", "--total-timesteps", "64", "--device", "cpu"]


def test_runs_started_in_one_second_get_their_own_directories(tmp_path):
    """Two runs started together both printed one default name; one run's files were lost."""
    config = TrainConfig(env="CartPole-v1", policy="mlp")
    first = reserve_default_run_dir(config, tmp_path)
    second = reserve_default_run_dir(config, tmp_path)
    assert first != second and first.is_dir() and second.is_dir()


def test_a_held_run_directory_refuses_a_second_run(tmp_path, cli):
    """Two resumes of one run at once pruned each other's checkpoints; two runs given one
    --run-dir overwrote each other's files; all exited 0."""
    run_dir = tmp_path / "r"
    assert cli("--env", "CartPole-v1", "--run-dir", str(run_dir), *TINY).returncode == 0
    held = lock_run_dir(run_dir)  # as by a run still training there
    try:
        resume = ["--resume", str(run_dir), "--total-timesteps", "128"]
        overwrite = ["--env", "CartPole-v1", "--run-dir", str(run_dir), "--overwrite", *TINY]
        for args in (resume, overwrite):
            result = cli(*args)
            assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
            assert f"{run_dir} is in use by another puffertrain process" in result.stderr
    finally:
        held.close()
    assert cli("--resume", str(run_dir), "--total-timesteps", "128").returncode == 0


def test_a_run_that_began_in_the_chosen_directory_meanwhile_is_not_replaced(tmp_path):
    config = TrainConfig(env="CartPole-v1", run_dir=tmp_path / "r")
    run_dir, made = choose_run_dir(config)
    assert not made and not run_dir.exists()
    start_run_dir(run_dir, config).close()  # another run, started in the same seconds
    with pytest.raises(UserError, match="already holds a run"):
        start_run_dir(run_dir, config)


def test_overwrite_removes_only_the_runs_files(tmp_path, cli):
    run_dir = tmp_path / "r"
    args = ["--env", "CartPole-v1", "--run-dir", str(run_dir), *TINY]
    assert cli(*args).returncode == 0
    (run_dir / "notes.txt").write_text("mine")
    assert cli(*args, "--overwrite", "--seed", "2").returncode == 0
    assert (run_dir / "notes.txt").read_text() == "mine"
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1


def test_a_run_dir_that_is_a_file_is_one_line(tmp_path, cli):
    """It was a FileExistsError traceback, after the trainer was built."""
    path = tmp_path / "file"
    path.write_text("")
    for run_dir in (path, path / "run"):
        result = cli("--env", "CartPole-v1", "--run-dir", str(run_dir), *TINY)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
        assert f"'{path}' is a file, not a directory" in result.stderr


def test_a_default_named_run_that_does_not_start_leaves_no_directory(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("--env", "tests.envs:reset_raising", "--num-envs", "3", *TINY[2:])
    assert result.returncode == 2, result.stderr
    assert not list((tmp_path / "runs").iterdir())


def test_a_resume_from_an_older_checkpoint_keeps_the_new_lines_checkpoints(tmp_path, cli):
    """Resumed from an older checkpoint, the run's newer files were what pruning kept: it
    deleted each checkpoint of the new line as it was written, and `--resume RUN` went back
    to the abandoned line."""
    from puffertrain.trainer.checkpoint import checkpoint_path, list_checkpoints, load_checkpoint

    run_dir = tmp_path / "r"
    flags = ["--env", "CartPole-v1", "--num-envs", "2", "--num-steps", "16", "--device", "cpu"]
    first = cli(*flags, "--total-timesteps", "256", "--checkpoint-interval", "1",
                "--keep-checkpoints", "8", "--run-dir", str(run_dir))  # fmt: skip
    assert first.returncode == 0, first.stderr
    older = checkpoint_path(run_dir, 64)
    resumed = cli("--resume", str(older), "--total-timesteps", "128", "--keep-checkpoints", "3")
    assert resumed.returncode == 0, resumed.stderr
    assert "goes on from step 64: its 7 newer checkpoint(s) moved to" in resumed.stderr
    assert [load_checkpoint(path).global_step for path in list_checkpoints(run_dir)] == [
        64,
        96,
        128,
    ]
    assert load_checkpoint(list_checkpoints(run_dir)[-1]).config["total_timesteps"] == 128
    moved = sorted(
        path.name for path in (run_dir / "checkpoints" / "replaced_after_000000000064").iterdir()
    )
    steps = [checkpoint_path(run_dir, step).name for step in range(96, 257, 32)]
    assert moved == ["best.pt", *steps]  # the old line's best too: the new one measures itself
    again = cli("--resume", str(older), "--total-timesteps", "96")  # a second branch there
    assert again.returncode == 0, again.stderr
    assert (run_dir / "checkpoints" / "replaced_after_000000000064-2").is_dir()
    # back to the first line, from its folder: the run goes on in its own directory (a run
    # directory was made inside checkpoints/)
    first_line = run_dir / "checkpoints" / "replaced_after_000000000064" / moved[-1]
    back = cli("--resume", str(first_line), "--total-timesteps", "288")
    assert back.returncode == 0, back.stderr
    assert f"run directory {run_dir}\n" in back.stderr
    assert load_checkpoint(list_checkpoints(run_dir)[-1]).global_step == 288


def test_an_empty_checkpoint_file_is_one_line(tmp_path, cli):
    """An empty file's EOFError has no message: its first line was an IndexError traceback."""
    path = tmp_path / "step_000000000064.pt"
    path.write_bytes(b"")
    result = cli("--resume", str(path))
    assert result.returncode == 2 and "is corrupt or not a puffertrain checkpoint" in result.stderr


def test_the_first_command_with_resume_added_is_taken(tmp_path, cli):
    """`--policy auto` (what the run began with) was refused: 'checkpoint: separate_mlp'."""
    run = ["--env", "CartPole-v1", "--policy", "auto", "--run-dir", str(tmp_path / "r"), *TINY]
    assert cli(*run).returncode == 0
    resumed = cli(*run, "--resume", str(tmp_path / "r"), "--total-timesteps", "128")
    assert resumed.returncode == 0, resumed.stderr


def test_a_refused_resume_from_an_older_checkpoint_moves_nothing(tmp_path, cli, monkeypatch):
    """The newer checkpoints were moved aside before the trainer was built: a resume refused
    then (a torchrun of another size, an env that no longer builds) left `--resume RUN` going
    on from the older step."""
    from puffertrain.trainer import loop
    from puffertrain.trainer.checkpoint import checkpoint_path, list_checkpoints

    run_dir = tmp_path / "r"
    flags = ["--env", "CartPole-v1", "--num-envs", "2", "--num-steps", "16", "--device", "cpu"]
    first = cli(*flags, "--total-timesteps", "128", "--checkpoint-interval", "1",
                "--keep-checkpoints", "8", "--run-dir", str(run_dir))  # fmt: skip
    assert first.returncode == 0, first.stderr
    before = list_checkpoints(run_dir)

    def refused(*args, **kwargs):
        raise UserError("the trainer cannot be built")

    monkeypatch.setattr(loop.Trainer, "__init__", refused)
    result = cli("--resume", str(checkpoint_path(run_dir, 64)))
    assert result.returncode == 2 and "the trainer cannot be built" in result.stderr
    assert list_checkpoints(run_dir) == before
