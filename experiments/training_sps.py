"""Training SPS of several variants of one training command, run in turn (interleaved when
repeated, so machine noise spreads over all of them): median SPS over the second half of each
run and the wall-time split the trainer logged.

    python experiments/training_sps.py --env CartPole-v1 --total-timesteps 262144 \\
        --common="--num-envs 64 --num-steps 32" \\
        --variant="--vec serial" --variant="--vec multiprocessing" --variant="--vec auto"

A variant that starts with ``--nproc-per-node N`` runs under ``torchrun --standalone
--nproc-per-node N`` (data-parallel ranks), the rest of it going to the trainer as usual.
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

from breakout_sps import read_run  # this folder is on sys.path for scripts


def launcher(variant: str) -> list[str]:
    """The command that starts the trainer: torchrun for a ``--nproc-per-node N`` variant."""
    words = shlex.split(variant)
    if words[:1] != ["--nproc-per-node"]:
        return [sys.executable, "-m", "puffertrain"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    return [*torchrun, "--nproc-per-node", words[1], "-m", "puffertrain"]


def trainer_flags(variant: str) -> list[str]:
    words = shlex.split(variant)
    return words[2:] if words[:1] == ["--nproc-per-node"] else words


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True)
    parser.add_argument("--total-timesteps", type=int, required=True)
    parser.add_argument("--common", default="")
    parser.add_argument("--variant", action="append", required=True)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {variant: [] for variant in args.variant}
    with tempfile.TemporaryDirectory() as root:
        for repeat in range(args.repeats):
            for index, variant in enumerate(args.variant):
                run_dir = Path(root) / f"{repeat}-{index}"
                command = [*launcher(variant), "--env", args.env]
                command += ["--total-timesteps", str(args.total_timesteps), "--device", "cpu"]
                command += [*shlex.split(args.common), *trainer_flags(variant)]
                command += ["--run-dir", str(run_dir)]
                finished = subprocess.run(command, check=True, capture_output=True, text=True)
                backend = next(
                    (line for line in finished.stderr.splitlines() if "rollout engine" in line),
                    "",
                )
                row = read_run(run_dir) | {"backend_line": backend.strip()}
                runs[variant].append(row)
                print(f"{variant}: {json.dumps(row)}", flush=True)
    summary = {
        "command": f"python -m puffertrain --env {args.env} --total-timesteps "
        f"{args.total_timesteps} --device cpu {args.common} VARIANT",
        "variants": {
            variant: {
                "median_sps_second_half": statistics.median(r["sps_second_half"] for r in rows),
                "runs": rows,
            }
            for variant, rows in runs.items()
        },
    }
    for variant, result in summary["variants"].items():
        print(f"{variant}: median SPS {result['median_sps_second_half']:,.0f}")
    if args.output:
        args.output.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
