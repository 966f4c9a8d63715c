"""Does the exported policy play as the checkpoint does? Greedy games with onnxruntime alone
(examples/deploy_onnx.py) against ``puffertrain eval --deterministic`` on the same seeds.

    python experiments/onnx_play_parity.py --checkpoint runs/<breakout run> --env ALE/Breakout-v5 \\
        --atari --episodes 5 --seed 0 --output experiments/results/onnx_play_parity_breakout.json

Game ``i`` is seeded ``--seed`` + i on both sides; the JSON holds both score lists and the
games' lengths as eval printed them.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(command: list[str]) -> tuple[str, float]:
    """Run ``command``; return its stdout and wall seconds (exit on failure)."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return done.stdout, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--env", required=True)
    parser.add_argument("--atari", action="store_true")
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    games = ["--episodes", str(args.episodes), "--seed", str(args.seed)]
    with tempfile.TemporaryDirectory() as folder:
        graph = f"{folder}/policy.onnx"
        export = ["export", "--checkpoint", args.checkpoint, "--output", graph]
        run([sys.executable, "-m", "puffertrain", *export])
        evaluate = ["eval", "--checkpoint", args.checkpoint, "--deterministic", *games]
        eval_out, eval_s = run([sys.executable, "-m", "puffertrain", *evaluate])
        deploy = ["examples/deploy_onnx.py", graph, "--env", args.env, *games]
        onnx_out, onnx_s = run([sys.executable, *deploy, *(["--atari"] if args.atari else [])])
    played = re.findall(r"game \d+: score (\S+), (\d+) steps", eval_out)
    result = {
        "checkpoint": args.checkpoint,
        "env": args.env,
        "seed": args.seed,
        "eval_scores": [float(score) for score, _ in played],
        "eval_lengths": [int(length) for _, length in played],
        "onnx_scores": [float(score) for score in re.findall(r"episode \d+: (\S+)", onnx_out)],
        "eval_seconds": eval_s,
        "onnx_seconds": onnx_s,
    }
    result["identical"] = result["eval_scores"] == result["onnx_scores"]
    print(json.dumps(result, indent=2))
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
