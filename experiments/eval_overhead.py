"""What evaluation during training costs: its share of the run's wall time (and the mean
length of the eval episodes, which the cost grows with).

    python experiments/eval_overhead.py --rounds 3 \\
        --train "--env CartPole-v1 --vec serial --total-timesteps 100000 --eval-interval 10" \\
        --output experiments/results/eval_overhead_cartpole_10.json

The trainer times its evaluations as a phase of its own; the share is the run's last
``perf/eval_fraction`` (evaluation seconds over the seconds since the run started). A share
of the run's own time is not skewed by what else the machine runs, as comparing two runs'
wall times would be. The figure is the median over ``--rounds`` runs.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def eval_share(args: list[str]) -> dict[str, float]:
    """One run of ``args``: its evaluations' share of the wall time, and how many ran."""
    with tempfile.TemporaryDirectory() as folder:
        run_dir = f"{folder}/run"
        command = [sys.executable, "-m", "puffertrain", *args, "--run-dir", run_dir]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"{shlex.join(command)} failed:\n{done.stderr[-2000:]}")
        events = EventAccumulator(run_dir, size_guidance={"scalars": 0})
        events.Reload()
        share = events.Scalars("perf/eval_fraction")[-1].value
        evaluations = len(events.Scalars("eval/episodic_return"))
        lengths = [event.value for event in events.Scalars("eval/episodic_length")]
    return {"eval_share": share, "evaluations": evaluations, "eval_mean_lengths": lengths}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True, help="the run's flags, evaluation included")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    runs = []
    for round_ in range(args.rounds):
        runs.append(eval_share(shlex.split(args.train)))
        print(
            f"run {round_ + 1}: {runs[-1]['evaluations']} evaluations, "
            f"{runs[-1]['eval_share']:.1%} of the wall time",
            flush=True,
        )
    median = statistics.median(run["eval_share"] for run in runs)
    print(f"median: evaluation takes {median:.1%} of the wall time")
    if args.output:
        result = {"train": args.train, "runs": runs, "median_eval_share": median}
        args.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
