"""Env steps and wall-clock seconds until the mean of the last 20 episodic returns first reaches
a threshold (CartPole-v1 with mlp and 475 by default), for several seeds. Prints a table and
writes JSON.

    python experiments/steps_to_return.py --seeds 1 2 3 [--extra-args "--compile"]
    python experiments/steps_to_return.py --total-timesteps 500000 --time-limit 40
    python experiments/steps_to_return.py --env tests.envs:cartpole_no_velocity \
        --policy lstm --threshold 400

``--marks`` adds a learning curve: the mean of the first 10 episodes, and of the last 10 that
ended by each marked env step (``--curve-window`` episodes instead of 10).
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

Episode = tuple[int, float, float]  # (env step, return, wall seconds since training started)


def logged_episodes(run_dir: Path) -> tuple[list[Episode], int, float]:
    """Every episode a run logged, and the env steps and seconds of training at its last
    update.

    Seconds count from the start of training, before the first rollout: the first update's
    SPS (steps ÷ seconds since training started) dates it, so the first rollout and update,
    compile time included, count too.
    """
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    sps = events.Scalars("charts/SPS")
    start = sps[0].wall_time - sps[0].step / sps[0].value
    returns = events.Scalars("charts/episodic_return")
    episodes = [(event.step, event.value, event.wall_time - start) for event in returns]
    return episodes, sps[-1].step, sps[-1].wall_time - start


def first_reaching(
    episodes: list[Episode], threshold: float, window: int = 20
) -> tuple[int, float, float]:
    """(env step, seconds) where the rolling mean of ``window`` returns first reaches threshold
    ((-1, nan) if never), and the best rolling mean."""
    recent: deque[float] = deque(maxlen=window)
    reached, best = (-1, float("nan")), float("-inf")
    for step, value, seconds in episodes:
        recent.append(value)
        if len(recent) == window:
            best = max(best, sum(recent) / window)
            if best >= threshold and reached[0] < 0:
                reached = (step, seconds)
    return *reached, best


def first_step_reaching(
    run_dir: Path, threshold: float, window: int = 20
) -> tuple[int, float, float]:
    """:func:`first_reaching` over the episodes of a run's TensorBoard events."""
    return first_reaching(logged_episodes(run_dir)[0], threshold, window)


def curve(run_dir: Path, marks: list[int], window: int = 10) -> dict[str, float]:
    """Mean of the first ``window`` episodic returns, and of the last ``window`` ended by each
    step in ``marks``."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    points = [(event.step, event.value) for event in events.Scalars("charts/episodic_return")]
    means = {"first": statistics.fmean(value for _, value in points[:window])}
    for mark in marks:
        before = [value for step, value in points if step <= mark][-window:]
        means[str(mark)] = statistics.fmean(before) if before else float("nan")
    return means


def run(command: list[str], time_limit: float | None) -> None:
    """Run one training process to its end, or Ctrl-C it after ``time_limit`` seconds."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, stderr = process.communicate(timeout=time_limit)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate()
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, command, stderr=stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--policy", default="mlp")
    parser.add_argument("--threshold", type=float, default=475.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--total-timesteps", type=int, default=200_000)
    parser.add_argument("--extra-args", default="", help="more trainer flags, quoted")
    parser.add_argument("--marks", type=int, nargs="*", default=[])
    parser.add_argument("--curve-window", type=int, default=10, help="episodes per curve point")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help="stop each run with Ctrl-C after this many seconds (the trainer saves and exits)",
    )
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
                args.env,
                "--policy",
                args.policy,
                "--seed",
                str(seed),
                "--total-timesteps",
                str(args.total_timesteps),
                "--run-dir",
                str(run_dir),
                *shlex.split(args.extra_args),
            ]
            started = time.perf_counter()
            run(command, args.time_limit)
            wall = time.perf_counter() - started
            step, seconds, best = first_step_reaching(run_dir, args.threshold)
            events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
            events.Reload()
            sps = events.Scalars("charts/SPS")[-1].value
            rows.append(
                {
                    "seed": seed,
                    "steps_to_threshold": step,
                    "seconds_to_threshold": seconds,
                    "best_mean_return": best,
                    "process_wall_s": wall,
                    "final_sps": sps,
                    "curve": curve(run_dir, args.marks, args.curve_window),
                }
            )
            print(
                f"seed {seed}: {args.threshold:g} at step {step} ({seconds:.1f} s of training); "
                f"best mean of 20: {best:.1f}; SPS {sps:,.0f}; process wall {wall:.1f} s",
                flush=True,
            )
            if args.marks:
                print(
                    f"  curve (mean of {args.curve_window} episodes):",
                    json.dumps(rows[-1]["curve"]),
                    flush=True,
                )
    reached = [row for row in rows if row["steps_to_threshold"] >= 0]
    summary = {
        "env": args.env,
        "policy": args.policy,
        "threshold": args.threshold,
        "total_timesteps": args.total_timesteps,
        "extra_args": args.extra_args,
        "runs": rows,
        "reached": f"{len(reached)}/{len(rows)}",
        "median_steps_to_threshold": statistics.median(r["steps_to_threshold"] for r in reached)
        if reached
        else None,
        "median_seconds_to_threshold": statistics.median(r["seconds_to_threshold"] for r in reached)
        if reached
        else None,
        "median_sps": statistics.median(r["final_sps"] for r in rows),
        "median_curve": {
            mark: statistics.median(r["curve"][mark] for r in rows) for mark in rows[0]["curve"]
        },
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=2))
    if args.output:
        args.output.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
