"""Training SPS of `python -m puffertrain --env ALE/Breakout-v5 --policy cnn` with the Atari
preset: several runs of about --seconds each, in turn; median SPS and the wall-time split
(env stepping / policy inference / update / other) as the trainer logged it.

    python experiments/breakout_sps.py --runs 3 --seconds 60 [--extra-args=--no-compile]
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from breakout_curve import breakout_command  # this folder is on sys.path for scripts
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def read_run(run_dir: Path) -> dict[str, float]:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    updates = events.Scalars("losses/value_loss")
    half = updates[len(updates) // 2]
    last = updates[-1]
    result = {
        "steps": last.step,
        "sps_whole_run": events.Scalars("charts/SPS")[-1].value,
        "sps_second_half": (last.step - half.step) / (last.wall_time - half.wall_time),
    }
    for phase in ("env", "inference", "update", "other"):
        result[f"{phase}_fraction"] = events.Scalars(f"perf/{phase}_fraction")[-1].value
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--steps-per-second-guess", type=int, default=350)
    parser.add_argument("--extra-args", default="")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    batch = 8 * 128
    steps = max(batch, int(args.seconds * args.steps_per_second_guess) // batch * batch)
    rows = []
    with tempfile.TemporaryDirectory() as root:
        for run in range(args.runs):
            run_dir = Path(root) / f"run{run}"
            command = breakout_command(steps, run_dir, *shlex.split(args.extra_args))
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            row = read_run(run_dir) | {"process_wall_s": time.perf_counter() - started}
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = {
        "command": "python -m puffertrain --env ALE/Breakout-v5 --policy cnn " + args.extra_args,
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()}",
        "runs": rows,
    }
    for key in rows[0]:
        summary[f"median_{key}"] = statistics.median(row[key] for row in rows)
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=2))
    if args.output:
        args.output.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
