"""The sweep's overhead: a sweep running 2 trials at a time (``--jobs 2``) against the same two
runs started by hand at once, in interleaved rounds (sweep, by hand, sweep, ...).

    python experiments/sweep_overhead.py --total-timesteps 100000 --rounds 3 \\
        --output experiments/results/sweep_overhead.json

Both sides train the CartPole-v1 preset twice (the sweep's space is empty, so each trial is
the preset). Two throughputs: each run's training SPS (its last ``charts/SPS``: the runs'
own speed, which the sweep's pinning and watching could slow), and both runs' steps over the
wall time from the first process start to the last exit, which for the sweep includes its own
start-up and its results (table, best config, plots) at the end: a fixed cost per sweep
command, however many trials it runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from puffertrain.seeds import final_figures  # noqa: E402


def _timed(commands: list[list[str]]) -> float:
    start = time.perf_counter()
    processes = [
        subprocess.Popen(c, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for c in commands
    ]
    for process in processes:
        if process.wait() != 0:
            raise SystemExit(f"failed: {' '.join(process.args)}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total-timesteps", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    train = [sys.executable, "-m", "puffertrain", "--env", "CartPole-v1", "--vec", "serial"]
    train += ["--total-timesteps", str(args.total_timesteps)]
    times: dict[str, list[float]] = {"sweep": [], "by_hand": []}
    sps: dict[str, list[float]] = {"sweep": [], "by_hand": []}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        space = root / "empty.toml"
        space.write_text("defaults = false\n")
        for index in range(args.rounds):
            sweep = [*train[:3], "sweep", *train[3:], "--space", str(space), "--trials", "2"]
            sweep += ["--jobs", "2", "--run-dir", str(root / f"sweep{index}")]
            times["sweep"].append(_timed([sweep]))
            hand = [[*train, "--run-dir", str(root / f"hand{index}_{n}")] for n in (1, 2)]
            times["by_hand"].append(_timed(hand))
            runs = {
                "sweep": sorted((root / f"sweep{index}").glob("trial_*")),
                "by_hand": sorted(root.glob(f"hand{index}_*")),
            }
            for name, run_dirs in runs.items():
                sps[name] += [final_figures(run_dir)[1] for run_dir in run_dirs]
            print(index, times["sweep"][-1], times["by_hand"][-1], flush=True)
    steps = 2 * args.total_timesteps
    medians = {name: statistics.median(values) for name, values in times.items()}
    run_sps = {name: statistics.median(values) for name, values in sps.items()}
    result = {
        "command": " ".join(sys.argv),
        "seconds": times,
        "median_seconds": medians,
        "steps_per_second": {name: steps / seconds for name, seconds in medians.items()},
        "sweep_wall_throughput_share": medians["by_hand"] / medians["sweep"],
        "run_sps": sps,
        "median_run_sps": run_sps,
        "sweep_run_sps_share": run_sps["sweep"] / run_sps["by_hand"],
    }
    print(json.dumps(result, indent=2))
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
