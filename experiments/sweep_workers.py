"""Two sweep processes on one study, as two shells (or machines) would run them: SQLite, or a
PostgreSQL server this script starts (tests/postgres.py); checks that the study ends with
``--trials`` trials, each run once.

    python experiments/sweep_workers.py --storage sqlite --trials 8 \\
        --output experiments/results/sweep_workers_sqlite.json
    python experiments/sweep_workers.py --storage postgres --trials 8 \\
        --output experiments/results/sweep_workers_postgres.json

Each worker has its own sweep dir (as on two machines) and ``--jobs 1``; the trials are
CartPole-v1 preset runs of ``--total-timesteps`` with the default space.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def run_workers(url: str, root: Path, trials: int, steps: int) -> dict:
    import optuna

    flags = ["sweep", "--env", "CartPole-v1", "--vec", "serial", "--study", "workers"]
    flags += ["--storage", url, "--trials", str(trials), "--total-timesteps", str(steps)]
    start = time.monotonic()
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "puffertrain", *flags, "--run-dir", str(root / name)],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    errors = [worker.communicate()[1] for worker in workers]
    seconds = time.monotonic() - start
    study = optuna.load_study(study_name="workers", storage=url)
    run_dirs = {name: sorted(p.name for p in (root / name).glob("trial_*")) for name in "ab"}
    trials_done = study.get_trials()
    states = collections.Counter(trial.state.name for trial in trials_done)
    surplus = sum("surplus" in trial.user_attrs for trial in trials_done)
    ran = [trial.user_attrs["run_dir"] for trial in trials_done if "run_dir" in trial.user_attrs]
    return {
        "command": " ".join(["python -m puffertrain", *flags, "--run-dir DIR"]) + " (×2)",
        "returncodes": [worker.returncode for worker in workers],
        "seconds": round(seconds, 1),
        "states": dict(states),
        "surplus": surplus,
        "trials_per_worker": {name: len(dirs) for name, dirs in run_dirs.items()},
        "run_dirs": run_dirs,
        "each_run_once": len(ran) == len(set(ran)) == trials
        and sorted(ran) == sorted(run_dirs["a"] + run_dirs["b"]),
        "errors": [error.strip().splitlines()[-1:] for error in errors if error.strip()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", choices=("sqlite", "postgres"), required=True)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--total-timesteps", type=int, default=20_000)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, contextlib.ExitStack() as stack:
        root = Path(scratch)
        if args.storage == "sqlite":
            url = f"sqlite:///{root / 'shared.db'}"
        else:
            from tests.postgres import postgres_server

            url = stack.enter_context(postgres_server())
        result = run_workers(url, root, args.trials, args.total_timesteps)
    result["storage"] = args.storage
    print(json.dumps(result, indent=2))
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
