"""Walk every env id the extras install through one tiny training run of the CLI.

Each id runs the CLI in its own process (forked from the walk's, so torch is imported once)
with a timeout, and ends as one of:
``trained`` (exit 0), ``error`` (non-zero exit with one clear line on stderr), ``traceback``
(a Python traceback or a multi-line error reached the user) or ``hang`` (timed out). The
table goes to stdout; ``--out FILE.json`` keeps every row.

    python experiments/catalogue.py --jobs 2 --out experiments/results/catalogue.json
"""

from __future__ import annotations

import json
import multiprocessing as mp
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import tyro

# A handful of ALE games in each id style (v5, v4, NoFrameskip, v0); all 104 share one code
# path, so walking every game would only repeat these.
ALE_SAMPLE = (
    "ALE/Breakout-v5",
    "ALE/Pong-v5",
    "ALE/MontezumaRevenge-v5",
    "ALE/SpaceInvaders-v5",
    "Breakout-v4",
    "BreakoutNoFrameskip-v4",
    "Pong-v0",
)
TINY = ("--num-envs", "2", "--num-steps", "8", "--total-timesteps", "16", "--no-compile")


@dataclass
class Args:
    """Options of the walk."""

    jobs: int = 2
    """Ids run at once."""
    timeout_s: float = 180.0
    """Seconds an id may take before it counts as a hang."""
    only: str = ""
    """Walk only ids containing this text."""
    vec: str = "serial"
    """Engine for non-ALE ids (ALE ids get the native one): serial keeps worker start-up,
    which would dominate a 16-step run, out of the walk."""
    out: Path | None = None
    """Write the rows as JSON here too."""


@dataclass
class Row:
    """One id's outcome."""

    env_id: str
    result: str
    message: str
    seconds: float


def catalogue_ids() -> list[str]:
    """Every gymnasium id, :data:`ALE_SAMPLE`, then every MiniGrid/BabyAI id."""
    import gymnasium as gym
    import minigrid  # noqa: F401  (registers the MiniGrid-* and BabyAI-* ids)

    ids = [
        name
        for name in gym.registry
        if not str(gym.registry[name].entry_point).startswith(("ale_py", "minigrid"))
    ]
    grids = [
        name for name in gym.registry if str(gym.registry[name].entry_point).startswith("minigrid")
    ]
    return [*ids, *ALE_SAMPLE, *grids]


def classify(returncode: int | None, stderr: str) -> tuple[str, str]:
    """The result and the message shown for one finished (or timed-out) run."""
    lines = [line for line in stderr.splitlines() if line.startswith("puffertrain: error")]
    if returncode is None:
        return "hang", ""
    if "Traceback (most recent call last)" in stderr:
        tail = [line for line in stderr.strip().splitlines() if line.strip()]
        return "traceback", tail[-1][:200] if tail else ""
    if returncode == 0:
        return "trained", ""
    if len(lines) == 1:
        return "error", lines[0].removeprefix("puffertrain: error: ")
    return "traceback", stderr.strip().splitlines()[-1][:200] if stderr.strip() else ""


def _train(argv: list[str], log: str) -> None:
    """Child process: the CLI on ``argv`` with stdout and stderr going to ``log``."""
    import os

    from puffertrain.cli import main

    with open(log, "w") as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
        sys.stdout = sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        main(argv)


@dataclass
class Running:
    """An id's child process and where its output goes."""

    env_id: str
    child: Any
    log: Path
    start: float


def _start(env_id: str, vec: str, tmp: Path) -> Running:
    """Fork a child running the CLI on ``env_id`` (torch and puffertrain are imported once,
    in this process, not once per id). Forked from the main thread: the trainer installs
    signal handlers, which Python allows only there."""
    engine = [] if env_id in ALE_SAMPLE else ["--vec", vec]
    run_dir = tmp / env_id.replace("/", "_").replace(":", "_")
    argv = ["--env", env_id, *TINY, *engine, "--device", "cpu", "--run-dir", str(run_dir)]
    log = tmp / f"{run_dir.name}.log"
    child = mp.get_context("fork").Process(target=_train, args=(argv, str(log)))
    child.start()
    return Running(env_id, child, log, time.perf_counter())


def _finish(running: Running, timed_out: bool) -> Row:
    if timed_out:
        running.child.kill()
    running.child.join()
    code = None if timed_out else running.child.exitcode
    result, message = classify(code, running.log.read_text(errors="replace"))
    return Row(running.env_id, result, message, round(time.perf_counter() - running.start, 1))


def walk(ids: list[str], jobs: int, timeout_s: float, vec: str) -> list[Row]:
    """Every id, ``jobs`` at a time, in the order given; each row is printed as it ends."""
    rows: dict[str, Row] = {}
    waiting = list(reversed(ids))
    running: list[Running] = []
    with tempfile.TemporaryDirectory() as tmp:
        while waiting or running:
            while waiting and len(running) < jobs:
                running.append(_start(waiting.pop(), vec, Path(tmp)))
            time.sleep(0.2)
            for item in list(running):
                late = time.perf_counter() - item.start > timeout_s
                if late or not item.child.is_alive():
                    running.remove(item)
                    row = rows[item.env_id] = _finish(item, late and item.child.is_alive())
                    print(
                        f"{row.env_id:40} {row.result:9} {row.seconds:6.1f}s  {row.message}",
                        flush=True,
                    )
    return [rows[env_id] for env_id in ids]


def main(args: Args) -> None:
    # imported once, here, before the forks: each child would spend seconds on them
    import puffertrain.cli
    import puffertrain.trainer.checkpoint
    import puffertrain.trainer.loop
    import puffertrain.trainer.run_dir  # noqa: F401

    ids = [env_id for env_id in catalogue_ids() if args.only in env_id]
    rows = walk(ids, args.jobs, args.timeout_s, args.vec)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.result] = counts.get(row.result, 0) + 1
    print(f"{len(rows)} ids: " + ", ".join(f"{n} {result}" for result, n in sorted(counts.items())))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps([asdict(row) for row in rows], indent=1))


if __name__ == "__main__":
    main(tyro.cli(Args))
