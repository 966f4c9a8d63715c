"""Action masking: what it buys in learning, against sb3-contrib's MaskablePPO, and what it
costs in SPS. Three measurements on ``tests.masked_envs:Selection`` (each step 2 of 16 actions
are legal and one of them is the target: reward 1 for it; 16 steps an episode, optimum 16):

- ``learning``: masked PPO against the same env with illegal actions only penalised (-1, the
  state unchanged): steps until the mean of the last 50 episodes reaches 95% of the optimum.
- ``sb3``: puffertrain against sb3-contrib's MaskablePPO, the same env (info masks; SB3 reads
  them through ``ActionMasker``), hyperparameters, network (vs_sb3.py's ``mlp`` trunk), budget
  and seeds: mean return of the last 100 episodes, and SPS of the whole ``learn``/run; also
  each side's seconds in its PPO update, and the SPS ratio puffertrain could reach if only its
  update cost time (MaskablePPO's whole run over puffertrain's update).
- ``cost``: training SPS (second half of each run) of the env with masks against the same env
  without them (every action legal in both, so the env does the same work), A/B interleaved.
- ``ceiling``: the SPS ratio to MaskablePPO puffertrain cannot beat: MaskablePPO's run time
  over the sum of the envs' own steps, the policy's ``act`` and puffertrain's update, each
  timed alone (first seed only).

Needs the ``bench`` extra (sb3-contrib) for ``sb3``. Run from the repository root, e.g.

    PYTHONPATH=$PWD python experiments/masking.py learning --seeds 0 1 2 \\
        --output experiments/results/masking_learning.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from breakout_sps import read_run  # this folder is on sys.path for scripts
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ENV = "tests.masked_envs:Selection"
SELECTION = {"n": 16, "legal": 2, "length": 16}
OPTIMUM = 16.0
COMMON = "--policy mlp --vec serial --device cpu"


def env_kwargs(**changes: object) -> str:
    return json.dumps(SELECTION | changes)


def train(run_dir: Path, kwargs: str, budget: int, seed: int, extra: str) -> None:
    command = [sys.executable, "-m", "puffertrain", "--env", ENV, "--env-kwargs", kwargs]
    command += [*shlex.split(COMMON), *shlex.split(extra), "--seed", str(seed)]
    command += ["--total-timesteps", str(budget), "--run-dir", str(run_dir)]
    subprocess.run(command, check=True, capture_output=True, text=True)


def returns(run_dir: Path) -> list[tuple[int, float]]:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return [(event.step, event.value) for event in events.Scalars("charts/episodic_return")]


def steps_to_optimum(points: list[tuple[int, float]], window: int = 50) -> int | None:
    """The first step at which the mean of the last ``window`` episodes is 95% of the optimum."""
    for end in range(window, len(points) + 1):
        if statistics.fmean(value for _, value in points[end - window : end]) >= 0.95 * OPTIMUM:
            return points[end - 1][0]
    return None


def learning(args: argparse.Namespace, root: Path) -> dict:
    variants = {"masked": env_kwargs(mask="info"), "penalised": env_kwargs(mask=None, penalty=-1)}
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    for seed in args.seeds:
        for name, kwargs in variants.items():
            run_dir = root / f"{name}-{seed}"
            train(run_dir, kwargs, args.budget, seed, args.extra)
            points = returns(run_dir)
            final = statistics.fmean(value for _, value in points[-100:])
            row = {"seed": seed, "steps_to_optimum": steps_to_optimum(points), "final": final}
            runs[name].append(row)
            print(name, json.dumps(row), flush=True)
    return {"budget": args.budget, "runs": runs}


def cost(args: argparse.Namespace, root: Path) -> dict:
    variants = {
        "masked": env_kwargs(legal=16, mask="info"),
        "unmasked": env_kwargs(legal=16, mask=None, penalty=0),
    }
    runs: dict[str, list[float]] = {name: [] for name in variants}
    for repeat in range(args.repeats):  # A B A B ...
        for name, kwargs in variants.items():
            run_dir = root / f"{name}-{repeat}"
            train(run_dir, kwargs, args.budget, 0, args.extra)
            runs[name].append(read_run(run_dir)["sps_second_half"])
            print(name, runs[name][-1], flush=True)
    medians = {name: statistics.median(values) for name, values in runs.items()}
    return {
        "budget": args.budget,
        "runs": runs,
        "medians": medians,
        "masking_cost": 1 - medians["masked"] / medians["unmasked"],
        "paired_cost_median": 1
        - statistics.median(m / u for m, u in zip(runs["masked"], runs["unmasked"], strict=True)),
    }


def sb3(args: argparse.Namespace, root: Path) -> dict:
    runs: dict[str, list[dict]] = {"puffertrain": [], "maskable_ppo": []}
    for seed in args.seeds:
        run_dir = root / f"puffertrain-{seed}"
        start = time.perf_counter()
        train(run_dir, env_kwargs(mask="info"), args.budget, seed, args.extra)
        wall = time.perf_counter() - start
        points = returns(run_dir)
        run = read_run(run_dir)
        runs["puffertrain"].append(
            {
                "seed": seed,
                "return": statistics.fmean(value for _, value in points[-100:]),
                "sps": run["sps_whole_run"],
                "sps_second_half": run["sps_second_half"],
                "process_wall_s": wall,
                "update_fraction": run["update_fraction"],
                "update_s": run["update_fraction"] * args.budget / run["sps_whole_run"],
            }
        )
        print("puffertrain", json.dumps(runs["puffertrain"][-1]), flush=True)
        command = [sys.executable, __file__, "sb3-run", "--budget", str(args.budget)]
        command.append(f"--extra={args.extra}")
        finished = subprocess.run(
            [*command, "--seeds", str(seed)], check=True, capture_output=True, text=True
        )
        runs["maskable_ppo"].append(json.loads(finished.stdout.splitlines()[-1]))
        print("maskable_ppo", json.dumps(runs["maskable_ppo"][-1]), flush=True)
    medians = {
        side: {key: statistics.median(row[key] for row in rows) for key in ("return", "sps")}
        for side, rows in runs.items()
    }
    ratio = medians["puffertrain"]["sps"] / medians["maskable_ppo"]["sps"]
    # the SPS ratio puffertrain would reach if its env steps, acting and logging cost nothing
    # and only its update took time, seed by seed
    ceilings = [
        (args.budget / theirs["sps"]) / ours["update_s"]
        for ours, theirs in zip(runs["puffertrain"], runs["maskable_ppo"], strict=True)
    ]
    return {
        "budget": args.budget,
        "runs": runs,
        "medians": medians,
        "sps_ratio": ratio,
        "sps_ratio_ceiling_update_alone": statistics.median(ceilings),
    }


def ceiling(args: argparse.Namespace, root: Path) -> dict:
    """The SPS ratio to MaskablePPO that puffertrain cannot beat on this env: MaskablePPO's
    whole run against the sum of what puffertrain cannot skip, each part timed alone in this
    process: the envs' own steps (one after another, as the serial engine steps them), the
    policy's masked ``act`` on the batch of envs (its rollout's one thread), and its measured
    PPO update (from a real run with the same flags, ``perf/update_fraction``)."""
    import numpy as np
    import torch

    from puffertrain.cli import parse_train_args
    from puffertrain.policy_loader import build_policy
    from puffertrain.ppo import PolicyAdapter
    from tests.masked_envs import Selection

    seed = args.seeds[0]
    flags = ["--env", ENV, "--env-kwargs", env_kwargs(mask="info"), *shlex.split(COMMON)]
    config, _ = parse_train_args([*flags, *shlex.split(args.extra), "--seed", str(seed)])
    envs = [Selection(**SELECTION, mask="info") for _ in range(config.num_envs)]
    observations, masks = [], []
    for index, env in enumerate(envs):
        observation, info = env.reset(seed=seed + index)
        observations.append(observation)
        masks.append(info["action_mask"])
    vector_steps = args.budget // config.num_envs
    env_seconds = 0.0
    for _ in range(vector_steps):
        for index, env in enumerate(envs):
            action = int(np.flatnonzero(masks[index])[0])
            start = time.perf_counter()
            observation, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                observation, info = env.reset()
            env_seconds += time.perf_counter() - start
            observations[index], masks[index] = observation, info["action_mask"]
    space, actions = envs[0].observation_space, envs[0].action_space
    agent = PolicyAdapter(build_policy("mlp", space, actions), actions, None)
    batch = torch.as_tensor(np.stack(observations), dtype=torch.float32)
    mask = torch.as_tensor(np.stack(masks), dtype=torch.bool)
    torch.set_num_threads(1)
    with torch.no_grad():
        start = time.perf_counter()
        for _ in range(vector_steps):
            agent.act(batch, action_mask=mask)
        act_seconds = time.perf_counter() - start
    run_dir = root / "puffertrain"
    train(run_dir, env_kwargs(mask="info"), args.budget, seed, args.extra)
    run = read_run(run_dir)
    update_seconds = run["update_fraction"] * args.budget / run["sps_whole_run"]
    command = [sys.executable, __file__, "sb3-run", "--budget", str(args.budget)]
    command += [f"--extra={args.extra}", "--seeds", str(seed)]
    finished = subprocess.run(command, check=True, capture_output=True, text=True)
    theirs = json.loads(finished.stdout.splitlines()[-1])
    floor = env_seconds + act_seconds + update_seconds
    return {
        "budget": args.budget,
        "seed": seed,
        "env_s": env_seconds,
        "act_s": act_seconds,
        "update_s": update_seconds,
        "puffertrain_floor_s": floor,
        "puffertrain_s": args.budget / run["sps_whole_run"],
        "maskable_ppo_s": args.budget / theirs["sps"],
        "maskable_ppo_update_s": theirs["update_s"],
        "sps_ratio": run["sps_whole_run"] / theirs["sps"],
        "sps_ratio_ceiling": args.budget / theirs["sps"] / floor,
    }


def sb3_run(budget: int, seed: int, extra: str) -> dict:
    """MaskablePPO with the hyperparameters puffertrain resolves for the same flags."""
    import gymnasium as gym
    import torch
    from sb3_contrib import MaskablePPO
    from sb3_contrib.common.wrappers import ActionMasker
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from vs_sb3 import _mlp_trunk, sb3_normalized, sb3_ppo_kwargs

    from puffertrain.cli import parse_train_args
    from tests.masked_envs import Selection

    flags = ["--env", ENV, "--env-kwargs", env_kwargs(mask="info"), *shlex.split(COMMON)]
    flags += shlex.split(extra)
    config, _ = parse_train_args([*flags, "--seed", str(seed), "--total-timesteps", str(budget)])

    def current_mask(env: gym.Env):
        return env.unwrapped._mask().astype(bool)

    envs = make_vec_env(
        lambda: Selection(**SELECTION, mask="info"),
        n_envs=config.num_envs,
        seed=seed,
        wrapper_class=ActionMasker,
        wrapper_kwargs={"action_mask_fn": current_mask},
    )
    envs = sb3_normalized(envs, config)

    class Clock(BaseCallback):
        def _on_step(self) -> bool:
            return True

    update_seconds = [0.0]

    model = MaskablePPO(
        "MlpPolicy",
        envs,
        **sb3_ppo_kwargs(config),
        policy_kwargs=_mlp_trunk(torch),
        seed=seed,
        device="cpu",
    )
    train = model.train

    def timed_train() -> None:  # its PPO update, as puffertrain's perf/update_fraction counts
        began = time.perf_counter()
        train()
        update_seconds[0] += time.perf_counter() - began

    model.train = timed_train
    start = time.perf_counter()
    model.learn(budget, callback=Clock())
    elapsed = time.perf_counter() - start
    episodes = [info["r"] for info in model.ep_info_buffer]  # its last 100 episodes
    return {
        "seed": seed,
        "return": statistics.fmean(episodes),
        "sps": model.num_timesteps / elapsed,
        "update_s": update_seconds[0],
        "update_fraction": update_seconds[0] / elapsed,
        "torch_threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["learning", "sb3", "cost", "ceiling", "sb3-run"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budget", type=int, default=131072)
    parser.add_argument("--repeats", type=int, default=3, help="cost: A/B pairs")
    parser.add_argument(
        "--extra",
        default="--num-envs 8 --num-steps 128",
        help="more train flags (sb3: its config is resolved from them too)",
    )
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    if args.mode == "sb3-run":
        print(json.dumps(sb3_run(args.budget, args.seeds[0], args.extra)))
        return
    with tempfile.TemporaryDirectory() as root:
        measure = {"learning": learning, "sb3": sb3, "cost": cost, "ceiling": ceiling}[args.mode]
        result = measure(args, Path(root))
    result |= {"mode": args.mode, "env": ENV, "selection": SELECTION, "common": COMMON}
    result["extra"] = args.extra
    result["date"] = time.strftime("%Y-%m-%d")
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
