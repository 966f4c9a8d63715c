"""Creating a new run directory, or reopening one to resume, and holding it for the run."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TextIO

from puffertrain.config import TrainConfig, to_dict
from puffertrain.errors import UserError
from puffertrain.trainer.checkpoint import CHECKPOINT_DIR

CONFIG_FILE = "config.json"
LOCK_FILE = ".lock"
RUN_FILES = (CONFIG_FILE, CHECKPOINT_DIR, "videos", "events.out.tfevents.*")
"""What a run writes in its directory: what --overwrite removes (nothing else there)."""


def reserve_default_run_dir(config: TrainConfig, root: Path = Path("runs")) -> Path:
    """Create ``runs/<env>__<policy>__<seed>__<timestamp>`` (``-2``, ``-3``... where taken)
    and return it: made at once, as two runs started in the same second took one name and
    one of them lost its files to the other."""
    env = config.env.replace("/", "-").replace(":", "-")
    policy = config.policy.rsplit(":", 1)[-1].rsplit(".", 1)[-1]
    return reserve_dir(root / f"{env}__{policy}__{config.seed}__{time.strftime('%Y%m%d-%H%M%S')}")


def reserve_dir(base: Path) -> Path:
    """Create ``base`` (``base-2``, ``base-3``... where taken) and return it: the one process
    that made it owns it."""
    path, suffix = base, 1
    while True:
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            suffix += 1
            path = base.with_name(f"{base.name}-{suffix}")
        except OSError as error:
            raise UserError(f"cannot create the run directory {path}: {error.strerror}") from None


def holds_run(path: Path) -> bool:
    """Whether a directory already contains a run's files."""
    if not path.is_dir():
        return False
    return (
        (path / CONFIG_FILE).exists()
        or (path / CHECKPOINT_DIR).exists()
        or any(path.glob("events.out.tfevents.*"))
    )


def choose_run_dir(config: TrainConfig) -> tuple[Path, bool]:
    """The new run's directory, and whether it was created here (a default name: empty, to
    remove if the run does not start). Refuses a directory that holds a run unless
    --overwrite, and a path that is not a directory."""
    if config.run_dir is None:
        return reserve_default_run_dir(config), True
    run_dir = config.run_dir
    if holds_run(run_dir) and not config.overwrite:
        raise UserError(
            f"--run-dir '{run_dir}' already holds a run; use --resume {run_dir} to continue "
            "it or --overwrite to replace it"
        )
    for part in (run_dir, *run_dir.parents):
        if part.exists() and not part.is_dir():
            raise UserError(f"--run-dir '{run_dir}': '{part}' is a file, not a directory")
    return run_dir, False


def lock_run_dir(run_dir: Path) -> TextIO:
    """Hold ``run_dir`` for this process's run: an exclusive lock on its lock file, which the
    kernel drops when the process ends, however it ends (keep the returned file open). Two
    runs in one directory, or two resumes of one run, overwrote and pruned each other's files;
    the second is refused."""
    try:
        handle = (run_dir / LOCK_FILE).open("a+")
    except OSError as error:
        raise UserError(f"cannot write in the run directory {run_dir}: {error.strerror}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if not isinstance(error, BlockingIOError):  # a filesystem without locks (some NFS)
            print(
                f"puffertrain: note: {run_dir} cannot be locked ({error.strerror}): two runs "
                "started in it are not kept apart",
                file=sys.stderr,
            )
            return handle
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        raise UserError(
            f"{run_dir} is in use by another puffertrain process"
            f"{f' (pid {holder})' if holder else ''}; wait for it to end or stop it"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def start_run_dir(run_dir: Path, config: TrainConfig) -> TextIO:
    """Create the directory, hold it (:func:`lock_run_dir`), remove the old run's files there
    (which --overwrite allowed; only a run's own files) and write config.json. Called once the
    trainer is built, so bad input never leaves a directory. Returns the held lock."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create the run directory {run_dir}: {error.strerror}") from None
    lock = lock_run_dir(run_dir)
    if holds_run(run_dir):
        if not config.overwrite:  # another run started here since this one chose it
            lock.close()
            raise UserError(
                f"--run-dir '{run_dir}' already holds a run; use --resume {run_dir} to "
                "continue it or --overwrite to replace it"
            )
        for pattern in RUN_FILES:
            for path in run_dir.glob(pattern):
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
    (run_dir / CONFIG_FILE).write_text(json.dumps(to_dict(config), indent=2) + "\n")
    return lock
