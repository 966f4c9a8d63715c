"""CartPole-v1: env steps and wall-clock seconds until the mean of the last 20 episodic returns
first reaches 475, for several seeds. Prints a table and writes JSON.

    python experiments/cartpole_to_475.py --seeds 1 2 3 [--extra-args "--compile"]
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
from collections import deque
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def first_step_reaching(run_dir: Path, threshold: float, window: int = 20) -> tuple[int, float]:
    """(env step, wall seconds since the first event) where the rolling mean reaches threshold."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    recent: deque[float] = deque(maxlen=window)
    scalars = events.Scalars("charts/episodic_return")
    start = events.Scalars("charts/learning_rate")[0].wall_time if scalars else 0.0
    for event in scalars:
        recent.append(event.value)
        if len(recent) == window and sum(recent) / window >= threshold:
            return event.step, event.wall_time - start
    return -1, float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--total-timesteps", type=int, default=200_000)
    parser.add_argument("--extra-args", default="", help="more trainer flags, quoted")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as root:
        for seed in args.seeds:
            run_dir = Path(root) / f"seed{seed}"
            command = [
                sys.executable,
                "-m",
                "puffertrain",
                "--env",
                "CartPole-v1",
                "--policy",
                "mlp",
                "--seed",
                str(seed),
                "--total-timesteps",
                str(args.total_timesteps),
                "--run-dir",
                str(run_dir),
                *shlex.split(args.extra_args),
            ]
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            wall = time.perf_counter() - started
            step, seconds = first_step_reaching(run_dir, 475.0)
            events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
            events.Reload()
            sps = events.Scalars("charts/SPS")[-1].value
            rows.append(
                {
                    "seed": seed,
                    "steps_to_475": step,
                    "seconds_to_475": seconds,
                    "process_wall_s": wall,
                    "final_sps": sps,
                }
            )
            print(
                f"seed {seed}: 475 at step {step} ({seconds:.1f} s of training); "
                f"SPS {sps:,.0f}; process wall {wall:.1f} s",
                flush=True,
            )
    reached = [row for row in rows if row["steps_to_475"] >= 0]
    summary = {
        "extra_args": args.extra_args,
        "runs": rows,
        "reached": f"{len(reached)}/{len(rows)}",
        "median_steps_to_475": statistics.median(r["steps_to_475"] for r in reached)
        if reached
        else None,
        "median_seconds_to_475": statistics.median(r["seconds_to_475"] for r in reached)
        if reached
        else None,
        "median_sps": statistics.median(r["final_sps"] for r in rows),
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=2))
    if args.output:
        args.output.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
