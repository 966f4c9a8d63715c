"""Runs at once vs one after the other: the wall time of two trainer runs (seeds 1 and 2)
started together against the same two run in turn, and one run alone, in interleaved rounds.

    python experiments/concurrency.py --env CartPole-v1 --total-timesteps 100000 --rounds 3 \\
        --output experiments/results/concurrency_cartpole.json
    python experiments/concurrency.py --env CartPole-v1 --total-timesteps 100000 --rounds 3 \\
        --seeds-flag   # also `--seeds 1 2 3` against the three runs in turn

Each round runs: seed 1 alone, seed 2 alone (their sum is "in turn"), then both at once. With
``--python-env KEY=VALUE`` the trainer processes get that environment variable too (to try
OpenMP settings). Wall times include start-up (imports, env probing, compile).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _trainer(env_id: str, steps: int, seed: int, run_dir: Path, extra: list[str]) -> list[str]:
    return [
        *(sys.executable, "-m", "puffertrain", "--env", env_id),
        *("--total-timesteps", str(steps), "--seed", str(seed)),
        *("--run-dir", str(run_dir), "--device", "cpu", *extra),
    ]


def timed_together(
    commands: list[list[str]], environment: dict[str, str], cwd: Path | None = None
) -> float:
    """Wall seconds until every command (started together, in ``cwd``) has finished."""
    start = time.perf_counter()
    processes = [
        subprocess.Popen(
            c, cwd=cwd, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for c in commands
    ]
    for process in processes:
        if process.wait() != 0:
            raise SystemExit(f"failed: {' '.join(process.args)}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True)
    parser.add_argument("--total-timesteps", type=int, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--extra", default="", help="flags for every run")
    parser.add_argument("--python-env", action="append", default=[])
    parser.add_argument("--seeds-flag", action="store_true")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    environment = dict(os.environ)
    environment.update(item.split("=", 1) for item in args.python_env)
    extra = args.extra.split()
    rounds = []
    with tempfile.TemporaryDirectory() as root:
        for index in range(args.rounds):

            def run(seed: int, tag: str, index: int = index) -> list[str]:
                run_dir = Path(root) / f"{index}-{tag}-{seed}"
                return _trainer(args.env, args.total_timesteps, seed, run_dir, extra)

            row = {
                "alone_1": timed_together([run(1, "a")], environment),
                "alone_2": timed_together([run(2, "a")], environment),
                "together": timed_together([run(1, "t"), run(2, "t")], environment),
            }
            row["in_turn"] = row["alone_1"] + row["alone_2"]
            row["ratio"] = row["together"] / row["in_turn"]
            if args.seeds_flag:
                row["alone_3"] = timed_together([run(3, "a")], environment)
                seeds = [sys.executable, "-m", "puffertrain", "--env", args.env]
                seeds += ["--total-timesteps", str(args.total_timesteps), "--device", "cpu"]
                seeds += [*extra, "--seeds", "1", "2", "3"]
                seeds += ["--run-dir", str(Path(root) / f"{index}-seeds")]
                row["seeds_flag"] = timed_together([seeds], environment)
                row["three_in_turn"] = row["in_turn"] + row["alone_3"]
                row["seeds_ratio"] = row["seeds_flag"] / row["three_in_turn"]
            rounds.append(row)
            print(json.dumps(row), flush=True)
    summary = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    result = {
        "command": " ".join(sys.argv),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpus": len(os.sched_getaffinity(0)),
        "rounds": rounds,
        "median": summary,
    }
    print(json.dumps(summary, indent=2))
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
