"""Creating a new run directory, or reopening one to resume."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from puffertrain.config import TrainConfig, to_dict
from puffertrain.errors import UserError
from puffertrain.trainer.checkpoint import CHECKPOINT_DIR

CONFIG_FILE = "config.json"


def default_run_dir(config: TrainConfig, root: Path = Path("runs")) -> Path:
    """``runs/<env>__<policy>__<seed>__<timestamp>``, made unique if that name is taken."""
    env = config.env.replace("/", "-").replace(":", "-")
    policy = config.policy.rsplit(":", 1)[-1].rsplit(".", 1)[-1]
    base = root / f"{env}__{policy}__{config.seed}__{time.strftime('%Y%m%d-%H%M%S')}"
    path, suffix = base, 1
    while path.exists():
        suffix += 1
        path = base.with_name(f"{base.name}-{suffix}")
    return path


def holds_run(path: Path) -> bool:
    """Whether a directory already contains a run's files."""
    if not path.is_dir():
        return False
    return (
        (path / CONFIG_FILE).exists()
        or (path / CHECKPOINT_DIR).exists()
        or any(path.glob("events.out.tfevents.*"))
    )


def create_run_dir(config: TrainConfig) -> Path:
    """Make the directory for a new run; refuse to reuse one that holds a run unless told to."""
    run_dir = config.run_dir or default_run_dir(config)
    if holds_run(run_dir):
        if not config.overwrite:
            raise UserError(
                f"--run-dir '{run_dir}' already holds a run; use --resume {run_dir} to continue "
                "it or --overwrite to replace it"
            )
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def write_config(run_dir: Path, config: TrainConfig) -> None:
    (run_dir / CONFIG_FILE).write_text(json.dumps(to_dict(config), indent=2) + "\n")
