"""The sweep's overhead: a sweep running 2 trials at a time (``--jobs 2``) against the same
runs started by hand two at once, in interleaved rounds (sweep, by hand, sweep, ...).

    python experiments/sweep_overhead.py --total-timesteps 100000 --rounds 3 \\
        --baseline /work/main --output experiments/results/sweep_overhead.json

Both sides train the CartPole-v1 preset ``--trials`` times (the sweep's space is empty, so
each trial is the preset; by hand, pairs one after the other). Two throughputs: each run's
training SPS (its last ``charts/SPS``: the runs' own speed, which the sweep's pinning and
watching could slow), and all runs' steps over the wall time from the first process start to
the last exit, which for the sweep includes its own start-up and its results at the end: a
fixed cost per sweep command, however many trials it runs. ``--baseline DIR`` also times the
same sweep from another checkout (say main's) in each round, for an A/B of the sweep's code.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from concurrency import timed_together  # noqa: E402  (experiments/, the script's folder)

from puffertrain.seeds import final_figures  # noqa: E402


def _timed(batches: list[list[list[str]]], repo: Path = REPO) -> float:
    """Wall time of running each batch of commands at once, one batch after the other, with
    ``repo``'s puffertrain."""
    env = {**os.environ, "PYTHONPATH": str(repo)}
    return sum(timed_together(commands, env, cwd=repo) for commands in batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total-timesteps", type=int, default=100_000)
    parser.add_argument("--trials", type=int, default=2, help="runs on each side (even)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="another checkout's sweep, timed too")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    if args.trials < 2 or args.trials % 2:
        parser.error("--trials must be even (by hand, runs go in pairs)")
    train = [sys.executable, "-m", "puffertrain", "--env", "CartPole-v1", "--vec", "serial"]
    train += ["--total-timesteps", str(args.total_timesteps)]
    sides = ["sweep", "by_hand", *(["baseline_sweep"] if args.baseline else [])]
    times: dict[str, list[float]] = {side: [] for side in sides}
    sps: dict[str, list[float]] = {side: [] for side in sides}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        space = root / "empty.toml"
        space.write_text("defaults = false\n")
        sweep = [*train[:3], "sweep", *train[3:], "--space", str(space)]
        sweep += ["--trials", str(args.trials), "--jobs", "2"]
        for index in range(args.rounds):
            run_dirs = {side: ["--run-dir", str(root / f"{side}{index}")] for side in sides}
            times["sweep"].append(_timed([[[*sweep, *run_dirs["sweep"]]]]))
            hand = [
                [[*train, "--run-dir", str(root / f"by_hand{index}_{pair}_{n}")] for n in (1, 2)]
                for pair in range(args.trials // 2)
            ]
            times["by_hand"].append(_timed(hand))
            if args.baseline:
                baseline = [[[*sweep, *run_dirs["baseline_sweep"]]]]
                times["baseline_sweep"].append(_timed(baseline, args.baseline))
            runs = {
                "sweep": sorted((root / f"sweep{index}").glob("trial_*")),
                "by_hand": sorted(root.glob(f"by_hand{index}_*")),
                "baseline_sweep": sorted((root / f"baseline_sweep{index}").glob("trial_*")),
            }
            for side in sides:
                sps[side] += [final_figures(run_dir)[1] for run_dir in runs[side]]
            print(index, {side: round(times[side][-1], 1) for side in sides}, flush=True)
    steps = args.trials * args.total_timesteps
    medians = {side: statistics.median(values) for side, values in times.items()}
    run_sps = {side: statistics.median(values) for side, values in sps.items()}
    result = {
        "command": " ".join(sys.argv),
        "seconds": times,
        "median_seconds": medians,
        "steps_per_second": {side: steps / seconds for side, seconds in medians.items()},
        "sweep_wall_throughput_share": medians["by_hand"] / medians["sweep"],
        "round_shares": [
            hand / sweep for hand, sweep in zip(times["by_hand"], times["sweep"], strict=True)
        ],
        "run_sps": sps,
        "median_run_sps": run_sps,
        "sweep_run_sps_share": run_sps["sweep"] / run_sps["by_hand"],
    }
    if args.baseline:
        result["baseline"] = str(args.baseline)
        result["baseline_wall_throughput_share"] = medians["by_hand"] / medians["baseline_sweep"]
    print(json.dumps(result, indent=2))
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
