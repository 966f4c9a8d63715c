"""How often a finished 2-rank run exits cleanly: the test suite's ``two_rank_run`` torchrun
command, ``--runs`` times, with each failure's output kept.

    python experiments/two_rank_exits.py --runs 40 --out /tmp/two_rank_exits

Before the process group was made to die with ``destroy_process_group``, about one run in five
ended with rank 1 aborting after training (SIGABRT); experiments/RESULTS.md has the counts.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import cli_env
from tests.test_distributed import ARGS, ROWS_PER_UPDATE, torchrun


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--out", type=Path, default=Path("/tmp/two_rank_exits"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    env = {**cli_env(), "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    steps = str(16 * ROWS_PER_UPDATE)
    failed = 0
    for run in range(args.runs):
        root = args.out / f"run{run}"
        command = torchrun(root / "harness", *ARGS, "--total-timesteps", steps)
        command += ["--run-dir", str(root / "run")]
        start = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        if done.returncode == 0:
            shutil.rmtree(root)
        else:
            failed += 1
            (args.out / f"failure{run}.txt").write_text(done.stdout + done.stderr)
        seconds = time.perf_counter() - start
        print(f"run {run}: exit {done.returncode}, {seconds:.1f} s; failed so far {failed}")
    print(f"{failed} of {args.runs} runs failed")


if __name__ == "__main__":
    main()
