"""How fast Breakout rollouts and training could go on this machine, from what each part
costs alone: the ceilings behind the open speed goals.

Measured one after another in one process:

- env: the native ALE engine's env-only SPS (random actions, lockstep) on one thread, where
  one core steps every env, so a step costs ``1 / SPS`` core-seconds; and on every core, the
  denominator of the engine issue's goal (rollout SPS ≥ 75% of env-only native SPS);
- policy: the Nature CNN's ``act`` on one torch thread, in the preset's precision, inside one
  autocast region, at the batch sizes the rollouts act on;
- update: one PPO update of the Atari preset (compiled, on all the cores) over a buffer of
  random frames;
- rollout: the measured rollout SPS of the same engines with the policy, for comparison.

With perfect overlap and no contention between env threads and the policy, a rollout cannot
beat ``cores / (env + policy core-seconds per step)``, and training cannot beat the preset's
``num_envs × num_steps`` steps per (update + that rollout). Those ceilings, set against the
goals: rollout / env-only (engine issue), training SPS / SB3's SPS and / the bf16 roofline
limit (throughput issue).

    python experiments/ceilings.py --sb3-sps 311 --output experiments/results/ceilings.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from roofline import flops_per_env_step, matmul_gflops  # this folder is on sys.path

from puffertrain.bench import BenchConfig, bench
from puffertrain.buffer import RolloutBuffer
from puffertrain.distributed import process_cores
from puffertrain.policy_loader import build_policy
from puffertrain.ppo import Learner, PolicyAdapter
from puffertrain.ppo.precision import resolve_precision
from puffertrain.presets import preset_for

ENV = "ALE/Breakout-v5"
FRAMES = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
ACTIONS = gym.spaces.Discrete(4)


def engine_sps(num_envs: int, threads: int, batch: int, seconds: float) -> dict[str, float]:
    """``bench``'s env-only and rollout SPS of the native engine (its table is printed)."""
    with tempfile.TemporaryDirectory() as folder:
        config = BenchConfig(
            env=ENV,
            vec="native",
            num_envs=num_envs,
            num_threads=threads,
            env_batch_size=batch,
            seconds=seconds,
            windows=3,
            policy="cnn",
            precision="auto",
            output=Path(folder) / "bench.json",
        )
        row = bench(config)["rows"][0]
    return {"env_sps": row["env_sps"], "rollout_sps": row["rollout_sps"]}


def act_seconds(batch: int, autocast_dtype: torch.dtype | None, calls: int = 300) -> float:
    """Median seconds of one ``act`` on ``batch`` random frames, one torch thread."""
    agent = PolicyAdapter(build_policy("cnn", FRAMES, ACTIONS), ACTIONS, autocast_dtype)
    frames = torch.randint(0, 256, (batch, *FRAMES.shape), dtype=torch.uint8)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    times = []
    try:
        with agent.autocast(torch.device("cpu")), torch.no_grad():
            for call in range(calls + 20):
                start = time.perf_counter()
                agent.act(frames)
                if call >= 20:
                    times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return statistics.median(times)


def update_seconds(autocast_dtype: torch.dtype | None, repeats: int = 3) -> float:
    """Median seconds of one compiled PPO update of the Atari preset (the first call, which
    compiles, left out)."""
    preset = preset_for("atari")
    agent = PolicyAdapter(build_policy("cnn", FRAMES, ACTIONS), ACTIONS, autocast_dtype)
    learner = Learner(agent, preset.ppo, compile_loss=True)
    buffer = RolloutBuffer(preset.num_steps, preset.num_envs, FRAMES, ACTIONS, torch.device("cpu"))
    shape = (preset.num_steps, preset.num_envs)
    buffer.observations.copy_(torch.randint(0, 256, buffer.observations.shape))
    buffer.actions.copy_(torch.randint(0, ACTIONS.n, shape))
    buffer.log_probs.fill_(-np.log(ACTIONS.n))
    buffer.advantages.copy_(torch.randn(shape))
    buffer.returns.copy_(torch.randn(shape))
    times = []
    for call in range(repeats + 1):
        start = time.perf_counter()
        learner.update(buffer, preset.ppo.learning_rate)
        if call:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sb3-sps", type=float, required=True, help="SB3's Breakout SPS")
    parser.add_argument("--seconds", type=float, default=6.0, help="per bench measurement")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    cores = process_cores()
    preset = preset_for("atari")
    autocast_dtype, precision = resolve_precision(preset.precision, torch.device("cpu"))
    rollout_steps = preset.num_envs * preset.num_steps

    engines = {
        "16 envs, 1 thread": engine_sps(16, 1, 0, args.seconds),
        "16 envs": engine_sps(16, cores, 0, args.seconds),
        "16 envs, batches of 8": engine_sps(16, cores, 8, args.seconds),
        "8 envs, 1 thread": engine_sps(8, 1, 0, args.seconds),
        "8 envs": engine_sps(8, cores, 0, args.seconds),
        "8 envs, batches of 4": engine_sps(8, cores, preset.env_batch_size, args.seconds),
    }
    act = {batch: act_seconds(batch, autocast_dtype) for batch in (4, 8)}
    update = update_seconds(autocast_dtype)
    flops = flops_per_env_step(preset.ppo.update_epochs)["per_env_step"]
    roofline_sps = matmul_gflops(torch.bfloat16) * 1e9 / flops

    def rollout_ceiling(num_envs: int, batch: int) -> float:
        """SPS with every core busy on env steps and ``act`` calls, nothing else."""
        env_cost = 1 / engines[f"{num_envs} envs, 1 thread"]["env_sps"]
        return cores / (env_cost + act[batch] / batch)

    engine_ceiling = rollout_ceiling(16, 8)
    training_ceiling = rollout_steps / (
        update + rollout_steps / rollout_ceiling(preset.num_envs, preset.env_batch_size)
    )
    env_only_16 = engines["16 envs"]["env_sps"]
    results = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cores": cores,
        "torch": torch.__version__,
        "precision": precision,
        "engines": engines,
        "act_ms": {str(batch): seconds * 1e3 for batch, seconds in act.items()},
        "update_s": update,
        "roofline_sps_bf16": roofline_sps,
        "engine_goal": {
            "rollout_ceiling_sps": engine_ceiling,
            "ceiling_vs_env_only": engine_ceiling / env_only_16,
            "measured_vs_env_only": engines["16 envs, batches of 8"]["rollout_sps"] / env_only_16,
        },
        "throughput_goal": {
            "training_ceiling_sps": training_ceiling,
            "sb3_sps": args.sb3_sps,
            "ceiling_vs_sb3": training_ceiling / args.sb3_sps,
            "ceiling_vs_roofline_bf16": training_ceiling / roofline_sps,
        },
    }
    print(json.dumps(results, indent=2))
    if args.output:
        args.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
