"""The same workloads on two source trees, interleaved (A B A B), so machine drift spreads over
both: training SPS (second half of the run) and ``bench`` SPS, with the after/before ratio.

    git worktree add /tmp/before <commit>
    python experiments/before_after.py --tree before=/tmp/before --tree after=. --rounds 2 \\
        --train "--env CartPole-v1 --total-timesteps 100000" \\
        --train "--env ALE/Breakout-v5 --total-timesteps 24576" \\
        --bench "--env ALE/Breakout-v5 --num-envs 16 --env-batch-size 8 --precision auto" \\
        --output experiments/results/before_after.json

Each tree runs as ``python -m puffertrain`` with that tree first on ``PYTHONPATH``. A training
workload also reports the wall seconds of the whole command (start-up included), what a user
waits for.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from breakout_sps import read_run  # this folder is on sys.path for scripts


def _run(tree: Path, args: list[str], folder: Path) -> None:
    environment = dict(os.environ, PYTHONPATH=str(tree.resolve()))
    command = [sys.executable, "-m", "puffertrain", *args]
    done = subprocess.run(command, cwd=folder, env=environment, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")


def measure(kind: str, workload: str, tree: Path, folder: Path) -> dict[str, float]:
    """One run of ``workload`` on ``tree``: training SPS and wall seconds, or bench's
    env-only/rollout SPS."""
    if kind == "train":
        run_dir = folder / "run"
        start = time.perf_counter()
        _run(tree, [*shlex.split(workload), "--device", "cpu", "--run-dir", str(run_dir)], folder)
        wall = time.perf_counter() - start
        return {"sps_second_half": read_run(run_dir)["sps_second_half"], "wall_s": wall}
    output = folder / "bench.json"
    _run(tree, ["bench", *shlex.split(workload), "--output", str(output)], folder)
    row = json.loads(output.read_text())["rows"][0]
    return {"env_sps": row["env_sps"], "rollout_sps": row["rollout_sps"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", required=True, help="NAME=PATH, 2 of them")
    parser.add_argument("--train", action="append", default=[])
    parser.add_argument("--bench", action="append", default=[])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    trees = dict(item.split("=", 1) for item in args.tree)
    workloads = [("train", w) for w in args.train] + [("bench", w) for w in args.bench]
    results: dict[str, dict[str, list[dict[str, float]]]] = {
        f"{kind} {workload}": {name: [] for name in trees} for kind, workload in workloads
    }
    for round_index in range(args.rounds):
        for kind, workload in workloads:
            order = list(trees) if round_index % 2 == 0 else list(reversed(trees))
            for name in order:
                with tempfile.TemporaryDirectory() as folder:
                    row = measure(kind, workload, Path(trees[name]), Path(folder))
                results[f"{kind} {workload}"][name].append(row)
                print(f"round {round_index + 1} {kind} {workload} [{name}]: {row}", flush=True)
    before, after = list(trees)
    summary = {}
    for key, by_tree in results.items():
        medians = {
            name: {m: statistics.median(r[m] for r in rows) for m in rows[0]}
            for name, rows in by_tree.items()
        }
        ratios = {m: medians[after][m] / medians[before][m] for m in medians[after]}
        summary[key] = {"medians": medians, f"{after}/{before}": ratios, "runs": by_tree}
        print(f"{key}: {json.dumps(medians)} ratio {json.dumps(ratios)}")
    if args.output:
        record = {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M")}
        args.output.write_text(json.dumps(record | {"results": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
