"""One training run alone and next to another busy program: wall seconds of the whole command.

    python experiments/neighbour_load.py --rounds 2 --variant "" --variant "--threads 2" \\
        --output experiments/results/neighbour_breakout_load_aware.json

The neighbour is a Python busy loop on one core, started by this script (so the trainer sees it
as another process's work) just before the run and killed after it. Each round runs every
variant alone and then beside the neighbour, in turn.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def wall_seconds(flags: list[str], neighbour: bool) -> float:
    """The wall time of ``python -m puffertrain FLAGS`` (beside a busy loop if asked)."""
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if neighbour else None
    try:
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            command = [sys.executable, "-m", "puffertrain", *flags, "--run-dir", f"{folder}/run"]
            subprocess.run(command, check=True, capture_output=True)
            return time.perf_counter() - started
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--train",
        default="--env ALE/Breakout-v5 --policy cnn --total-timesteps 20480 --device cpu",
        help="the run's flags",
    )
    parser.add_argument("--variant", action="append", help="flags added to --train")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    runs: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for variant in args.variant or [""]:
            for neighbour in (False, True):
                key = f"{variant or 'defaults'} {'beside a busy loop' if neighbour else 'alone'}"
                flags = [*shlex.split(args.train), *shlex.split(variant)]
                runs.setdefault(key, []).append(wall_seconds(flags, neighbour))
                print(f"{key}: {runs[key][-1]:.1f} s", flush=True)
    medians = {key: statistics.median(values) for key, values in runs.items()}
    print(json.dumps(medians, indent=1))
    if args.output:
        record = {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M")}
        args.output.write_text(json.dumps(record | {"wall_s": runs, "medians": medians}, indent=2))


if __name__ == "__main__":
    main()
