"""What a training run's rollout and update cost per env step, with the values a user gets,
measured in one process on source trees taken in turn (A B A B).

    git worktree add /tmp/before <commit>
    python experiments/preset_step_cost.py --tree before=/tmp/before --tree after=. --rounds 4 \\
        --workload "--env HalfCheetah-v5 --num-envs 1 --num-steps 2048" \\
        --output experiments/results/step_cost.json

Each workload's flags resolve as ``python -m puffertrain`` resolves them (its preset, then the
flags; the engine ``--vec`` picks), with the trainer's thread plan. A measurement builds the run's
rollout, buffer and learner, then times ``Rollout.collect`` and ``Learner.update`` over
``--rollouts`` rollouts after one to warm up, and reports the median microseconds per env
step of each. Training SPS moves with the host's load by more than a per-step change of a
few tens of microseconds; timing the two phases in-process and interleaving the trees keeps
that noise out of the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path


def measure(flags: list[str], rollouts: int) -> dict[str, float]:
    """Median µs per env step of the rollout and the update for the run ``flags`` describe."""
    import torch

    from puffertrain.cli import parse_train_args
    from puffertrain.distributed import Ranks
    from puffertrain.engine.choose import engine_from
    from puffertrain.ppo.precision import resolve_precision
    from puffertrain.threads import OtherLoad
    from puffertrain.trainer.build import build_parts

    other_load = OtherLoad()
    config, _ = parse_train_args(flags)
    engine, _ = engine_from(config)
    cpu = torch.device("cpu")
    autocast_dtype, _ = resolve_precision(config.precision, cpu)
    _, learner, rollout, buffer, plan = build_parts(
        config, engine, cpu, autocast_dtype, Ranks(), other_load
    )
    torch.set_num_threads(plan.update)
    rollout.reset(config.seed)
    steps = buffer.num_steps * engine.num_rows
    collect, update = [], []
    for index in range(rollouts + 1):
        start = time.perf_counter()
        rollout.collect(buffer)
        collected = time.perf_counter()
        buffer.compute_advantages(
            rollout.bootstrap_values(), config.ppo.gamma, config.ppo.gae_lambda
        )
        started = time.perf_counter()
        learner.update(buffer, config.ppo.learning_rate)
        if index:  # the first rollout warms up
            collect.append((collected - start) / steps * 1e6)
            update.append((time.perf_counter() - started) / steps * 1e6)
    engine.close()
    return {
        "collect_us": statistics.median(collect),
        "update_us": statistics.median(update),
        "engine": engine.name,
    }


def _in_tree(tree: Path, workload: str, rollouts: int) -> dict[str, float]:
    environment = dict(os.environ, PYTHONPATH=str(tree.resolve()))
    command = [sys.executable, __file__, "--measure", workload, "--rollouts", str(rollouts)]
    done = subprocess.run(command, env=environment, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} in {tree} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", default=[], help="NAME=PATH, in turn")
    parser.add_argument("--workload", action="append", default=[], help="puffertrain flags")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rollouts", type=int, default=5)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    if args.measure is not None:
        print(json.dumps(measure(shlex.split(args.measure), args.rollouts)))
        return
    trees = dict(tree.split("=", 1) for tree in args.tree) or {"this": "."}
    runs: dict[str, dict[str, list[dict[str, float]]]] = {
        workload: {name: [] for name in trees} for workload in args.workload
    }
    for round_index in range(args.rounds):
        order = list(trees.items())
        if round_index % 2:  # A B, then B A
            order.reverse()
        for workload in args.workload:
            for name, path in order:
                result = _in_tree(Path(path), workload, args.rollouts)
                runs[workload][name].append(result)
                print(f"round {round_index + 1} [{name}] {workload}: {result}", flush=True)
    summary = {}
    for workload, by_tree in runs.items():
        summary[workload] = {
            name: {
                key: statistics.median(run[key] for run in results)
                for key in ("collect_us", "update_us")
            }
            for name, results in by_tree.items()
        }
        print(f"{workload}: {json.dumps(summary[workload])}")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        results = {"date": time.strftime("%Y-%m-%d %H:%M"), "summary": summary, "runs": runs}
        args.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
