"""Walk every env id the extras install through one tiny training run of the CLI.

Each id runs ``python -m puffertrain`` in a fresh process with a timeout, and ends as one of:
``trained`` (exit 0), ``error`` (non-zero exit with one clear line on stderr), ``env raised``
(the env's own code raised: one line naming the env, then the env's traceback), ``traceback``
(any other Python traceback or multi-line error reached the user) or ``hang`` (timed out). The
rows go to stdout; ``--out FILE.jsonl`` keeps them, so the walk can go in pieces (each run
walks the ids not yet in it, at most ``--limit``).

    python experiments/catalogue.py --jobs 2 --out experiments/results/catalogue.jsonl --limit 40
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

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
    """Append each row here as it ends (one JSON object a line); ids already in it are not
    walked again, so a walk can go in pieces."""
    limit: int = 0
    """Walk at most this many ids not yet in --out (0: all)."""
    table: Path | None = None
    """Write the table of every walked id here (as results/catalogue.txt)."""


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
    if lines and " raised on " in lines[0]:
        # the env's own code raised: puffertrain's line names the env, then shows the env's
        # traceback on purpose (it is where the env's bug is)
        tail = [line for line in stderr.strip().splitlines() if line.strip()]
        return "env raised", tail[-1][:200]
    if "Traceback (most recent call last)" in stderr:
        tail = [line for line in stderr.strip().splitlines() if line.strip()]
        return "traceback", tail[-1][:200] if tail else ""
    if returncode == 0:
        return "trained", ""
    if len(lines) == 1:
        return "error", lines[0].removeprefix("puffertrain: error: ")
    return "traceback", stderr.strip().splitlines()[-1][:200] if stderr.strip() else ""


@dataclass
class Running:
    """An id's child process and where its output goes."""

    env_id: str
    child: subprocess.Popen
    log: Path
    start: float


def _start(env_id: str, vec: str, tmp: Path) -> Running:
    """Start ``python -m puffertrain`` on ``env_id`` in a fresh process of its own session.
    Not a fork of this process: children forked after torch and the env packages were imported
    hung at start-up (4 ids in the first walk, which trained when run directly), as a fork
    after threads can; a fresh process is also what a user runs."""
    engine = [] if env_id in ALE_SAMPLE else ["--vec", vec]
    run_dir = tmp / env_id.replace("/", "_").replace(":", "_")
    argv = ["--env", env_id, *TINY, *engine, "--device", "cpu", "--run-dir", str(run_dir)]
    log = tmp / f"{run_dir.name}.log"
    with open(log, "w") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "puffertrain", *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Running(env_id, child, log, time.perf_counter())


def _finish(running: Running, timed_out: bool) -> Row:
    if timed_out:  # the whole session: a hung run's rollout workers too
        os.killpg(running.child.pid, signal.SIGKILL)
    running.child.wait()
    code = None if timed_out else running.child.returncode
    result, message = classify(code, running.log.read_text(errors="replace"))
    return Row(running.env_id, result, message, round(time.perf_counter() - running.start, 1))


def walk(
    ids: list[str], jobs: int, timeout_s: float, vec: str, on_row: Callable[[Row], None]
) -> None:
    """Every id, ``jobs`` at a time, in the order given; ``on_row`` gets each row as it ends."""
    waiting = list(reversed(ids))
    running: list[Running] = []
    with tempfile.TemporaryDirectory() as tmp:
        while waiting or running:
            while waiting and len(running) < jobs:
                running.append(_start(waiting.pop(), vec, Path(tmp)))
            time.sleep(0.2)
            for item in list(running):
                late = time.perf_counter() - item.start > timeout_s
                if late or item.child.poll() is not None:
                    running.remove(item)
                    on_row(_finish(item, late and item.child.poll() is None))


def read_rows(path: Path) -> dict[str, Row]:
    """The rows already walked into ``path`` (one JSON object a line), by id."""
    if not path.exists():
        return {}
    rows = (Row(**json.loads(line)) for line in path.read_text().splitlines() if line.strip())
    return {row.env_id: row for row in rows}


def line(row: Row) -> str:
    """One row of the table."""
    return f"{row.env_id:40} {row.result:9} {row.seconds:6.1f}s  {row.message}"


def main(args: Args) -> None:
    done = read_rows(args.out) if args.out else {}
    ids = [env_id for env_id in catalogue_ids() if args.only in env_id]
    todo = [env_id for env_id in ids if env_id not in done]
    print(f"{len(ids)} ids; {len(ids) - len(todo)} already in {args.out}", end="")
    if args.limit:
        todo = todo[: args.limit]
    print(f", walking {len(todo)}")

    def keep(row: Row) -> None:
        done[row.env_id] = row
        print(line(row), flush=True)
        if args.out:
            with args.out.open("a") as out:
                out.write(json.dumps(asdict(row)) + "\n")

    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
    walk(todo, args.jobs, args.timeout_s, args.vec, keep)
    rows = [done[env_id] for env_id in ids if env_id in done]
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.result] = counts.get(row.result, 0) + 1
    print(
        f"{len(rows)} of {len(ids)} ids: "
        + ", ".join(f"{n} {r}" for r, n in sorted(counts.items()))
    )
    if args.table:
        args.table.write_text("".join(line(row) + "\n" for row in rows))


if __name__ == "__main__":
    main(tyro.cli(Args))
