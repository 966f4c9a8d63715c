"""Checkpoint files: atomic writes, pruning, data-only loading."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from puffertrain.errors import UserError
from puffertrain.trainer import checkpoint as ckpt


def test_a_write_killed_midway_leaves_the_previous_checkpoint_loadable(tmp_path, monkeypatch):
    path = ckpt.checkpoint_path(tmp_path, 100)
    ckpt.save_checkpoint(path, {"global_step": 100, "weights": torch.ones(1000)})

    real_save = torch.save

    def dies_midway(obj, file):
        real_save(obj, file)
        file.truncate(200)  # half a file on disk, then the process "dies"
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(path, {"global_step": 200, "weights": torch.zeros(1000)})
    monkeypatch.undo()

    assert ckpt.load_checkpoint(path)["global_step"] == 100
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind


def test_prune_keeps_the_newest(tmp_path):
    for step in (1, 2, 3, 4, 5):
        ckpt.save_checkpoint(ckpt.checkpoint_path(tmp_path, step), {"global_step": step})
    ckpt.prune_checkpoints(tmp_path, keep=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == [
        "step_000000000004.pt",
        "step_000000000005.pt",
    ]


def test_checkpoints_never_unpickle_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": ckpt.FORMAT_VERSION, "payload": random.Random}, path)
    with pytest.raises(UserError, match="corrupt or not a puffertrain checkpoint"):
        ckpt.load_checkpoint(path)


def test_rng_state_round_trip(tmp_path):
    path = tmp_path / "rng.pt"
    ckpt.save_checkpoint(path, {"rng": ckpt.rng_state()})
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    ckpt.set_rng_state(ckpt.load_checkpoint(path)["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_resume_target_file_or_dir(tmp_path):
    path = ckpt.checkpoint_path(tmp_path, 7)
    ckpt.save_checkpoint(path, {"global_step": 7})
    assert ckpt.resolve_resume(tmp_path) == (tmp_path, path)
    assert ckpt.resolve_resume(path) == (tmp_path, path)
