"""A CartPole-v1 sweep from a deliberately bad config (``--learning-rate 1e-5``): env steps until
the eval mean return reaches 475 (``--objective steps --target 475``), and the best config
found against the classic-control preset.

    python experiments/sweep_cartpole.py sweep --minutes 4.5    # one chunk; run again to go on
    python experiments/sweep_cartpole.py compare --seeds 1 2 3 \\
        --output experiments/results/sweep_cartpole.json

``sweep`` runs the study for at most ``--minutes`` (then Ctrl-C's it: the next chunk resumes
the stopped trials) and adds the chunk's wall time to ``chunks.json`` in the sweep's dir, so
chunks add up to the budget. ``compare`` trains the preset and the sweep's best_config.json
with the same eval settings on each seed (the two side by side), and writes both one's steps
to 475, the trial table and the plots (copied to experiments/results/).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from puffertrain.sweep.objective import Curve, score  # noqa: E402

SWEEP_DIR = REPO / "runs" / "sweeps" / "cartpole_lr1e-5"
EVAL = ["--eval-interval", "4", "--eval-episodes", "5", "--vec", "serial"]
BUDGET = 150_000
TARGET = 475.0
SWEEP = [
    *("sweep", "--env", "CartPole-v1", "--learning-rate", "1e-5", *EVAL),
    *("--total-timesteps", str(BUDGET), "--objective", "steps", "--target", str(TARGET)),
    *("--space", str(REPO / "experiments" / "sweep_cartpole_space.toml")),
    *("--study", "cartpole_lr1e-5", "--run-dir", str(SWEEP_DIR), "--trials", "1000"),
]


def _puffertrain(*args: str) -> list[str]:
    return [sys.executable, "-m", "puffertrain", *args]


def sweep_chunk(minutes: float, jobs: int) -> None:
    start = time.monotonic()
    process = subprocess.Popen(_puffertrain(*SWEEP, "--jobs", str(jobs)), cwd=REPO)
    try:
        process.wait(timeout=minutes * 60)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        process.wait()
    chunks_file = SWEEP_DIR / "chunks.json"
    chunks = json.loads(chunks_file.read_text()) if chunks_file.exists() else []
    chunks.append({"seconds": round(time.monotonic() - start, 1), "jobs": jobs})
    chunks_file.write_text(json.dumps(chunks, indent=2) + "\n")
    total = sum(chunk["seconds"] for chunk in chunks)
    print(f"{len(chunks)} chunks, {total / 60:.1f} sweep minutes in all")


def steps_to_target(runs: dict[str, list[str]], scratch: Path) -> dict[str, dict[str, float]]:
    """Train each of ``runs`` (name: flags) at once until its eval mean return reaches the
    target (the measure is env steps, which running side by side leaves as they are); each
    one's steps, and whether it got there."""
    processes = {}
    for name, flags in runs.items():
        run_dir = scratch / name
        shutil.rmtree(run_dir, ignore_errors=True)
        scratch.mkdir(parents=True, exist_ok=True)
        command = _puffertrain(*flags, "--stop-at-return", str(TARGET), "--run-dir", str(run_dir))
        with (scratch / f"{name}.log").open("w") as log:
            processes[name] = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=log)
    results = {}
    for name, process in processes.items():
        if process.wait() != 0:
            raise SystemExit(f"{name} failed: see {scratch / name}.log")
        curve = Curve(scratch / name, use_eval=True).read()
        results[name] = {
            "steps": score(curve, "steps", BUDGET, TARGET),
            "reached": max(v for _, v in curve) >= TARGET,
        }
    return results


def compare(seeds: list[int], output: Path) -> None:
    summary = subprocess.run(
        _puffertrain(*SWEEP, "--summary"), cwd=REPO, capture_output=True, text=True, check=True
    )
    best_config = SWEEP_DIR / "best_config.json"
    scratch = SWEEP_DIR / "compare"
    preset_flags = ["--env", "CartPole-v1", *EVAL, "--total-timesteps", str(BUDGET)]
    rows = {"preset": [], "best": []}
    for seed in seeds:
        runs = {
            "preset": [*preset_flags, "--seed", str(seed)],
            "best": ["--config", str(best_config), "--seed", str(seed)],
        }
        for name, result in steps_to_target(runs, scratch).items():
            rows[name].append(result)
        print(seed, rows["preset"][-1], rows["best"][-1], flush=True)
    chunks = json.loads((SWEEP_DIR / "chunks.json").read_text())
    results = {
        "command": " ".join(SWEEP),
        "sweep_minutes": round(sum(chunk["seconds"] for chunk in chunks) / 60, 1),
        "chunks": chunks,
        "seeds": seeds,
        "steps_to_475": rows,
        "median_steps": {
            name: statistics.median(row["steps"] for row in runs) for name, runs in rows.items()
        },
        "best_config": json.loads(best_config.read_text()),
        "table": summary.stdout,
    }
    output.write_text(json.dumps(results, indent=2) + "\n")
    for plot in SWEEP_DIR.glob("*.png"):
        shutil.copy(plot, output.parent / f"sweep_cartpole_{plot.name}")
    print(summary.stdout)
    print(json.dumps(results["median_steps"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("sweep", "compare"))
    parser.add_argument("--minutes", type=float, default=4.5)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument(
        "--output", type=Path, default=REPO / "experiments/results/sweep_cartpole.json"
    )
    args = parser.parse_args()
    if args.action == "sweep":
        sweep_chunk(args.minutes, args.jobs)
    else:
        compare(args.seeds, args.output)


if __name__ == "__main__":
    main()
