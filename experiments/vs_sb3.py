"""puffertrain vs Stable-Baselines3 PPO: the same env, hyperparameters and network, run in
turn on the same machine, several times; median training SPS of each and their ratio.

Needs the optional ``bench`` extra (``pip install -e ".[bench]"``: stable-baselines3).

    python experiments/vs_sb3.py --env ALE/Breakout-v5 --total-timesteps 32768 --repeats 3 \\
        --variant="" --variant="--precision fp32" --variant="--no-compile --precision fp32"

SB3 gets the hyperparameters of the config puffertrain resolves for ``--env`` and ``--common``
(the env's preset, then the flags): envs, steps per rollout, minibatch size, epochs, learning
rate annealed linearly, γ, λ, clip range (for the value too), entropy and value coefficients,
gradient clipping. Its network is the same: the Nature CNN (``CnnPolicy``) for images, SB3's
own ``MlpPolicy`` (2 × 64 tanh actor and critic) where the config's policy is ``separate_mlp``
(the classic-control preset's), else puffertrain's ``mlp`` (a shared 2 × 256 ReLU trunk under
linear heads). Where the config normalises observations or rewards, SB3 runs under
``VecNormalize`` with the same γ. Atari envs get SB3's
standard wrappers (``make_atari_env``, ``VecFrameStack(4)``) with puffertrain's ALE settings:
frame skip 4, sticky actions, no life loss as episode end, rewards clipped. Each side uses its
own default vector env (puffertrain's ``--vec auto``; SB3's ``DummyVecEnv``), as a user would.
SPS is measured over the second half of each run, so start-up and compile time are left out.
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
from typing import TYPE_CHECKING

from breakout_sps import read_run  # this folder is on sys.path for scripts

if TYPE_CHECKING:
    from puffertrain.config import TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True)
    parser.add_argument("--total-timesteps", type=int, required=True)
    parser.add_argument("--common", default="", help="flags for puffertrain and the SB3 config")
    parser.add_argument("--variant", action="append", help="puffertrain-only flags")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--sb3-threads",
        type=int,
        default=0,
        help="torch threads for SB3 (0: torch's default, one per core, as a user gets it)",
    )
    parser.add_argument("--output", type=Path)
    parser.add_argument("--sb3-run", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sb3_run:
        if args.sb3_threads:
            import torch

            torch.set_num_threads(args.sb3_threads)
        print(json.dumps(train_sb3(args.env, args.total_timesteps, shlex.split(args.common))))
        return
    variants = args.variant or [""]
    runs: dict[str, list[dict]] = {"sb3": [], **{variant: [] for variant in variants}}
    with tempfile.TemporaryDirectory() as root:
        for repeat in range(args.repeats):
            for index, variant in enumerate(variants):
                run_dir = Path(root) / f"{repeat}-{index}"
                command = [sys.executable, "-m", "puffertrain", "--env", args.env]
                command += ["--total-timesteps", str(args.total_timesteps), "--device", "cpu"]
                command += [*shlex.split(args.common), *shlex.split(variant)]
                finished = subprocess.run(
                    [*command, "--run-dir", str(run_dir)],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                lines = [line for line in finished.stderr.splitlines() if "puffertrain:" in line]
                runs[variant].append(read_run(run_dir) | {"log": lines})
                print(f"puffertrain {variant!r}: {json.dumps(runs[variant][-1])}", flush=True)
            sb3 = subprocess.run(
                [
                    *(sys.executable, __file__, "--sb3-run", "--env", args.env),
                    *("--total-timesteps", str(args.total_timesteps), f"--common={args.common}"),
                    f"--sb3-threads={args.sb3_threads}",
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            runs["sb3"].append(json.loads(sb3.stdout.splitlines()[-1]))
            print(f"sb3: {json.dumps(runs['sb3'][-1])}", flush=True)
    summary = summarize(args, runs)
    print(json.dumps(summary["medians"], indent=2))
    if args.output:
        args.output.write_text(json.dumps(summary, indent=2) + "\n")


def summarize(args: argparse.Namespace, runs: dict[str, list[dict]]) -> dict:
    """Median SPS per side, and the median over repeats of each variant's ratio to the SB3 run
    of the same repeat (side by side)."""
    sb3 = [run["sps_second_half"] for run in runs["sb3"]]
    medians = {"sb3": statistics.median(sb3)}
    for variant, rows in runs.items():
        if variant == "sb3":
            continue
        sps = [row["sps_second_half"] for row in rows]
        ratios = [ours / theirs for ours, theirs in zip(sps, sb3, strict=True)]
        medians[f"puffertrain {variant}".strip()] = {
            "sps": statistics.median(sps),
            "ratio_to_sb3": statistics.median(ratios),
        }
    return {
        "env": args.env,
        "total_timesteps": args.total_timesteps,
        "common": args.common,
        "sb3_threads": args.sb3_threads,
        "medians": medians,
        "runs": runs,
        "date": time.strftime("%Y-%m-%d"),
    }


def train_sb3(env_id: str, total_timesteps: int, common: list[str]) -> dict[str, float]:
    """Train SB3 PPO with the hyperparameters puffertrain resolves for ``env_id``; return its
    SPS over the second half of the run and over the whole of ``learn``."""
    from stable_baselines3.common.callbacks import BaseCallback

    model, described = sb3_model(env_id, common)

    class RolloutClock(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.marks: list[tuple[float, int]] = []

        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            self.marks.append((time.perf_counter(), self.num_timesteps))

    clock = RolloutClock()
    start = time.perf_counter()
    model.learn(total_timesteps, callback=clock)
    end = time.perf_counter()
    half_time, half_steps = clock.marks[len(clock.marks) // 2]
    # each rollout is followed by its update: the run ends after the last update
    return {
        "steps": model.num_timesteps,
        "sps_whole_run": model.num_timesteps / (end - start),
        "sps_second_half": (model.num_timesteps - half_steps) / (end - half_time),
        **described,
    }


def sb3_model(env_id: str, common: list[str]):
    """SB3's ``PPO`` with the hyperparameters and network of the config puffertrain resolves
    for ``--env env_id`` and the flags ``common``, on its vector env, and what was chosen."""
    import torch
    from stable_baselines3 import PPO

    from puffertrain.cli import parse_train_args
    from puffertrain.envs.make import is_atari
    from puffertrain.policy_loader import auto_policy_name

    config, _ = parse_train_args(["--env", env_id, *common])
    untranslated = not_translated(config)
    if untranslated:
        raise SystemExit(f"vs_sb3: SB3 has no counterpart for {', '.join(untranslated)}")
    atari = is_atari(env_id)
    envs = sb3_normalized(_sb3_envs(env_id, config.num_envs, config.seed, atari), config)
    name = config.policy
    if name == "auto":
        name = "cnn" if atari else auto_policy_name(envs.observation_space)
    if name == "cnn":
        policy, policy_kwargs = "CnnPolicy", {}
    elif name == "separate_mlp":
        policy, policy_kwargs = "MlpPolicy", {}  # SB3's default: 2 × 64 tanh, nothing shared
    elif name in ("mlp", "continuous"):
        policy, policy_kwargs = "MlpPolicy", _mlp_trunk(torch)
    else:
        raise SystemExit(f"vs_sb3: no SB3 network stands for puffertrain's policy {name!r}")
    if config.log_std_init is not None:
        policy_kwargs["log_std_init"] = config.log_std_init
    model = PPO(
        policy,
        envs,
        **sb3_ppo_kwargs(config),
        policy_kwargs=policy_kwargs,
        seed=config.seed,
        device="cpu",
    )
    described = {
        "sb3_policy": policy,
        "sb3_policy_kwargs": sorted(policy_kwargs),
        "sb3_vec_normalize": config.normalize_obs or config.normalize_reward,
    }
    return model, described


def not_translated(config: TrainConfig) -> list[str]:
    """The settings of puffertrain's resolved ``config`` that SB3's ``PPO`` cannot take, as
    flags (an empty list: the SB3 run is the same PPO)."""
    ppo = config.ppo
    settings = {
        f"--action-noise-color {config.action_noise_color}": config.action_noise_color != 0,
        f"--adaptive-lr-kl {ppo.adaptive_lr_kl}": ppo.adaptive_lr_kl is not None,
        f"--adam-betas {ppo.adam_betas[0]} {ppo.adam_betas[1]}": ppo.adam_betas != (0.9, 0.999),
    }
    return [flag for flag, differs in settings.items() if differs]


def sb3_normalized(envs, config: TrainConfig):
    """SB3's vector ``envs`` normalising observations and rewards where puffertrain's resolved
    ``config`` does (``VecNormalize``, the same running statistics)."""
    if not (config.normalize_obs or config.normalize_reward):
        return envs
    from stable_baselines3.common.vec_env import VecNormalize

    return VecNormalize(
        envs,
        norm_obs=config.normalize_obs,
        norm_reward=config.normalize_reward,
        gamma=config.ppo.gamma,
    )


def sb3_ppo_kwargs(config: TrainConfig) -> dict:
    """SB3 ``PPO``/``MaskablePPO`` arguments for the same PPO as puffertrain's resolved
    ``config``: the same rollout, minibatches, epochs, annealed learning rate and loss.

    SB3's value loss is the mean squared error, CleanRL's (puffertrain's) half of it, so the
    same ``vf_coef`` would weigh SB3's critic twice as much; half of it gives both one
    objective. With ``clip_vloss`` the two still differ: SB3's ``clip_range_vf`` takes the
    clipped prediction's error alone, CleanRL the larger of the clipped and unclipped errors.
    """
    ppo = config.ppo
    return {
        "learning_rate": lambda remaining: ppo.learning_rate * remaining,
        "n_steps": config.num_steps,
        "batch_size": config.batch_size // ppo.num_minibatches,
        "n_epochs": ppo.update_epochs,
        "gamma": ppo.gamma,
        "gae_lambda": ppo.gae_lambda,
        "clip_range": ppo.clip_coef,
        "clip_range_vf": ppo.clip_coef if ppo.clip_vloss else None,
        "normalize_advantage": ppo.norm_adv,
        "ent_coef": ppo.ent_coef,
        "vf_coef": ppo.vf_coef / 2,
        "max_grad_norm": ppo.max_grad_norm,
        "target_kl": ppo.target_kl,
    }


def _mlp_trunk(torch) -> dict:
    """SB3 policy kwargs for puffertrain's ``mlp``: a shared 2 × 256 ReLU trunk, linear heads."""
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    class Trunk(BaseFeaturesExtractor):
        def __init__(self, observation_space, features_dim: int = 256) -> None:
            super().__init__(observation_space, features_dim)
            size = int(torch.tensor(observation_space.shape).prod())
            self.layers = torch.nn.Sequential(
                torch.nn.Flatten(),
                torch.nn.Linear(size, features_dim),
                torch.nn.ReLU(),
                torch.nn.Linear(features_dim, features_dim),
                torch.nn.ReLU(),
            )

        def forward(self, observations):
            return self.layers(observations)

    return {"features_extractor_class": Trunk, "net_arch": [], "share_features_extractor": True}


def _sb3_envs(env_id: str, num_envs: int, seed: int, atari: bool):
    from stable_baselines3.common.env_util import make_atari_env, make_vec_env
    from stable_baselines3.common.vec_env import VecFrameStack

    if not atari:
        return make_vec_env(env_id, n_envs=num_envs, seed=seed)
    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)
    registered = gym.registry[env_id].kwargs
    envs = make_atari_env(
        env_id,
        n_envs=num_envs,
        seed=seed,
        env_kwargs={
            "frameskip": 1,
            "repeat_action_probability": registered.get("repeat_action_probability", 0.25),
        },
        wrapper_kwargs={"frame_skip": 4, "terminal_on_life_loss": False, "clip_reward": True},
    )
    return VecFrameStack(envs, n_stack=4)


if __name__ == "__main__":
    main()
