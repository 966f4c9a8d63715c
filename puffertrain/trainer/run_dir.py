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


def choose_run_dir(config: TrainConfig) -> Path:
    """The new run's directory; refuses one that holds a run unless --overwrite. Creates nothing."""
    run_dir = config.run_dir or default_run_dir(config)
    if holds_run(run_dir) and not config.overwrite:
        raise UserError(
            f"--run-dir '{run_dir}' already holds a run; use --resume {run_dir} to continue "
            "it or --overwrite to replace it"
        )
    return run_dir


def start_run_dir(run_dir: Path, config: TrainConfig) -> None:
    """Create the directory (replacing the old run there, which --overwrite allowed) and write
    config.json. Called once the trainer is built, so bad input never leaves a directory."""
    if holds_run(run_dir):
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(json.dumps(to_dict(config), indent=2) + "\n")
