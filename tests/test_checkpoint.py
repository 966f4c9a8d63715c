"""Checkpoint files: atomic writes, pruning, data-only loading."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from puffertrain.cli import main
from puffertrain.errors import UserError
from puffertrain.trainer import checkpoint as ckpt
from puffertrain.trainer.state import FORMAT_VERSION, RankState, TrainingState

OLD_CHECKPOINT = Path(__file__).parent / "data" / "format1_cartpole_step1024.pt"


def _state(global_step: int, **policy: torch.Tensor) -> TrainingState:
    """A training state with just the fields a test looks at filled in."""
    rank = RankState(rng=ckpt.rng_state(), envs={"envs": None})
    return TrainingState({}, global_step, 0, policy, {}, [rank])


def test_a_write_killed_midway_leaves_the_previous_checkpoint_loadable(tmp_path, monkeypatch):
    path = ckpt.checkpoint_path(tmp_path, 100)
    ckpt.save_checkpoint(path, _state(100, weights=torch.ones(1000)))

    real_save = torch.save

    def dies_midway(obj, file):
        real_save(obj, file)
        file.truncate(200)  # half a file on disk, then the process "dies"
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(path, _state(200, weights=torch.zeros(1000)))
    monkeypatch.undo()

    assert ckpt.load_checkpoint(path).global_step == 100
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind


def test_prune_keeps_the_newest(tmp_path):
    for step in (1, 2, 3, 4, 5):
        ckpt.save_checkpoint(ckpt.checkpoint_path(tmp_path, step), _state(step))
    ckpt.prune_checkpoints(tmp_path, keep=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == [
        "step_000000000004.pt",
        "step_000000000005.pt",
    ]


def test_checkpoints_never_unpickle_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT_VERSION, "payload": random.Random}, path)
    with pytest.raises(UserError, match="corrupt or not a puffertrain checkpoint"):
        ckpt.load_checkpoint(path)


def test_rng_state_round_trip(tmp_path):
    path = tmp_path / "rng.pt"
    ckpt.save_checkpoint(path, _state(0))
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    ckpt.set_rng_state(ckpt.load_checkpoint(path).ranks[0].rng)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_resume_target_file_or_dir(tmp_path):
    path = ckpt.checkpoint_path(tmp_path, 7)
    ckpt.save_checkpoint(path, _state(7))
    assert ckpt.resolve_resume(tmp_path) == (tmp_path, path)
    assert ckpt.resolve_resume(path) == (tmp_path, path)


def test_a_checkpoint_written_before_the_schema_loads_and_resumes(tmp_path):
    """tests/data/format1_cartpole_step1024.pt was written by the trainer before the typed
    schema existed (CartPole-v1, 2 envs × 32 steps, seed 3, 1,024 steps)."""
    run_dir = tmp_path / "old_run"
    (run_dir / "checkpoints").mkdir(parents=True)
    copy = ckpt.checkpoint_path(run_dir, 1024)
    shutil.copy(OLD_CHECKPOINT, copy)
    state = ckpt.load_checkpoint(copy)
    assert (state.global_step, state.iteration, state.world_size) == (1024, 16, 1)
    main(["--resume", str(run_dir), "--total-timesteps", "1536"])
    assert ckpt.load_checkpoint(ckpt.list_checkpoints(run_dir)[-1]).global_step == 1536


@pytest.mark.parametrize(("found", "age"), [(0, "older"), (FORMAT_VERSION + 1, "newer")])
def test_a_checkpoint_of_another_format_is_refused_naming_it(tmp_path, found, age):
    path = tmp_path / "other.pt"
    torch.save({**_state(5).to_dict(), "format": found}, path)
    with pytest.raises(UserError, match=f"has format {found}, an {age} one"):
        ckpt.load_checkpoint(path)


def test_a_resumed_config_is_the_one_saved_and_resuming_warns_of_nothing(tmp_path, recwarn):
    """A checkpoint's config holds ``--seeds`` as a JSON list; read back as a list it made the
    resumed config differ from the saved one, and tyro warned about the field on every
    ``--resume``."""
    from puffertrain.config import TrainConfig, from_dict, to_dict

    config = TrainConfig(env="CartPole-v1", seeds=(1, 2))
    assert from_dict(to_dict(config)) == config
    run_dir = tmp_path / "run"
    main(["--env", "CartPole-v1", "--vec", "serial", "--num-envs", "2", "--num-steps", "16",
          "--total-timesteps", "32", "--run-dir", str(run_dir)])  # fmt: skip
    main(["--resume", str(run_dir), "--total-timesteps", "64"])
    assert not [str(warning.message) for warning in recwarn if "seeds" in str(warning.message)]


@pytest.mark.parametrize(
    "failure", [OSError(28, "No space left on device"), RuntimeError("unexpected pos 64")]
)
def test_a_disk_that_fills_up_is_one_line_and_keeps_the_previous_checkpoint(
    tmp_path, monkeypatch, failure
):
    """A full disk was torch.save's 'RuntimeError: unexpected pos' traceback."""
    path = ckpt.checkpoint_path(tmp_path, 100)
    ckpt.save_checkpoint(path, _state(100, weights=torch.ones(10)))

    def fails(obj, file):
        raise failure

    monkeypatch.setattr(torch, "save", fails)
    newer = ckpt.checkpoint_path(tmp_path, 200)
    with pytest.raises(UserError, match=r"cannot write the checkpoint .*step_000000000200\.pt"):
        ckpt.save_checkpoint(newer, _state(200))
    monkeypatch.undo()
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_eval_video_names_a_video_file_before_it_plays(tmp_path, capsys):
    """A directory or a .txt was imageio's ValueError traceback, after every game played."""
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--checkpoint", str(OLD_CHECKPOINT), "--video", str(tmp_path / "v.txt")])
    assert exit_info.value.code == 2
    assert "--video " in capsys.readouterr().err
