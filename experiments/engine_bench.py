"""The rollout engine's `bench` tables for the engine issue: CartPole-v1 with 64 envs and
ALE/Breakout-v5 with 16 envs, each puffertrain configuration in turn, gymnasium's
SyncVectorEnv and AsyncVectorEnv alongside (`--compare`) in the first one.

    python experiments/engine_bench.py --seconds 6 --output experiments/results/engine_bench.json
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

CONFIGS = {
    "CartPole-v1": (
        ["--num-envs", "64", "--policy", "mlp"],
        [
            ["--vec", "multiprocessing", "--compare"],
            ["--vec", "multiprocessing", "--env-batch-size", "32"],
            ["--vec", "serial"],
        ],
    ),
    "ALE/Breakout-v5": (
        ["--num-envs", "16", "--policy", "cnn"],
        [
            ["--vec", "native", "--compare"],
            ["--vec", "native", "--env-batch-size", "8"],
            ["--vec", "multiprocessing", "--env-batch-size", "8"],
            ["--vec", "multiprocessing"],
        ],
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    tables = {}
    with tempfile.TemporaryDirectory() as root:
        for env, (common, variants) in CONFIGS.items():
            rows = []
            for index, variant in enumerate(variants):
                output = Path(root) / f"{env.replace('/', '-')}-{index}.json"
                command = [sys.executable, "-m", "puffertrain", "bench", "--env", env]
                command += [*common, *variant, "--seconds", str(args.seconds)]
                command += ["--windows", str(args.windows), "--output", str(output)]
                subprocess.run(command, check=True, capture_output=True)
                for row in json.loads(output.read_text())["rows"]:
                    rows.append(row | {"flags": " ".join(common + variant)})
                    print(
                        f"{env}: {row['engine']}: env-only {row['env_sps']:,.0f}, "
                        f"rollout {row['rollout_sps']:,.0f}",
                        flush=True,
                    )
            tables[env] = rows
    if args.output:
        summary = {
            "machine": f"{platform.processor() or platform.machine()}, {platform.system()}",
            "seconds_per_measurement": args.seconds,
            "windows": args.windows,
            "tables": tables,
        }
        args.output.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
