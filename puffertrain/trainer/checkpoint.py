"""Checkpoint files: written atomically, pruned to the newest K, loaded as data only (their
content is :class:`~puffertrain.trainer.state.TrainingState`)."""

from __future__ import annotations

import os
import pickle
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from puffertrain.errors import UserError
from puffertrain.trainer.state import TrainingState

CHECKPOINT_DIR = "checkpoints"


def checkpoint_path(run_dir: Path, global_step: int) -> Path:
    return run_dir / CHECKPOINT_DIR / f"step_{global_step:012d}.pt"


def best_checkpoint_path(run_dir: Path) -> Path:
    """Where the checkpoint with the best evaluation so far is kept."""
    return run_dir / CHECKPOINT_DIR / "best.pt"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoint files, oldest first."""
    return sorted((run_dir / CHECKPOINT_DIR).glob("step_*.pt"))


def save_checkpoint(path: Path, state: TrainingState) -> None:
    """Write ``state`` so that ``path`` is either the old file or the complete new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(state.to_dict(), file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp_name, 0o644)
        os.replace(temp_name, path)
    except (OSError, RuntimeError) as error:  # a full disk: torch says "unexpected pos ..."
        Path(temp_name).unlink(missing_ok=True)
        reason = getattr(error, "strerror", None) or str(error).strip().split("\n")[0][:200]
        raise UserError(
            f"cannot write the checkpoint {path} ({reason}); the checkpoints written before "
            "are kept"
        ) from None
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints."""
    for old in list_checkpoints(run_dir)[: -max(keep, 1)]:
        old.unlink(missing_ok=True)


def set_aside_newer(run_dir: Path, global_step: int) -> tuple[int, Path | None]:
    """Move the run's checkpoints past ``global_step`` (periodic ones, and a best one) into a
    folder of their own (``checkpoints/replaced_after_<step>[-k]/``) and return how many moved
    and where. A resume from an older checkpoint branches the run there: left in place, the
    old line's newer files were what pruning kept, and it deleted each checkpoint of the new
    line as it was written."""
    newer = [path for path in list_checkpoints(run_dir) if int(path.stem[5:]) > global_step]
    best = best_checkpoint_path(run_dir)
    if best.is_file() and load_checkpoint(best).global_step > global_step:
        newer.append(best)  # the old line's best, which the new line would measure itself by
    if not newer:
        return 0, None
    base = run_dir / CHECKPOINT_DIR / f"replaced_after_{global_step:012d}"
    folder, suffix = base, 1
    while True:  # a second branch from the same step keeps the first one's files too
        try:
            folder.mkdir()
            break
        except FileExistsError:
            suffix += 1
            folder = base.with_name(f"{base.name}-{suffix}")
    for path in newer:
        path.rename(folder / path.name)
    return len(newer), folder


def load_checkpoint(path: Path) -> TrainingState:
    """Load a checkpoint as plain data (never code); ``UserError`` if missing, corrupt or of
    another format."""
    if not path.is_file():
        raise UserError(f"checkpoint '{path}' does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, OSError) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        reason = reason.split(". ")[0][:200]  # an empty file's EOFError says nothing
        raise UserError(
            f"checkpoint '{path}' is corrupt or not a puffertrain checkpoint ({reason}); "
            "an older one in the same folder can be given to --resume"
        ) from None
    return TrainingState.from_dict(payload, str(path))


def resolve_resume(target: Path, flag: str = "--resume") -> tuple[Path, Path]:
    """Map ``--resume RUN_DIR|FILE`` (or ``flag``) to ``(run_dir, checkpoint_file)``."""
    if target.is_dir():
        checkpoints = list_checkpoints(target)
        if not checkpoints:
            message = f"{flag}: '{target}' holds no checkpoints in {CHECKPOINT_DIR}/"
            # a folder of runs (--seeds' parent, a sweep's trials): name them
            runs = sorted(path.name for path in target.iterdir() if list_checkpoints(path))
            if runs:
                shown = ", ".join(runs[:4]) + (", ..." if len(runs) > 4 else "")
                message += f"; the runs in it do ({shown}): give one of them"
            raise UserError(message)
        return target, checkpoints[-1]
    if not target.exists():
        raise UserError(f"{flag}: '{target}' does not exist")
    # a run's checkpoint lies in its checkpoints/ folder, or in a folder of the checkpoints a
    # branch moved aside there (checkpoints/replaced_after_<step>/)
    holder = next((part for part in target.parents if part.name == CHECKPOINT_DIR), None)
    return (holder.parent if holder is not None else target.parent), target


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states as checkpoint-safe data."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy(), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
