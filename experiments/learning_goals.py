"""The catalogue's learning goals, run with the defaults a user gets (``python -m puffertrain
--env ID``), read back from each run's TensorBoard events.

Goals: FrozenLake-v1 (slippery) success rate >= 0.7 within 200k steps; Taxi-v4 mean return >= 7
within 500k; MiniGrid-Empty-8x8-v0 (mission dropped) mean return >= 0.9. "Mean" is over the last
100 episodes logged (FrozenLake's return is 1 on success, so it is the success rate).

``--trainer sb3`` trains Stable-Baselines3's PPO with its default hyperparameters instead (it
one-hot encodes Discrete observations itself; MiniGrid through minigrid's ``ImgObsWrapper``:
the 7x7x3 egocentric view, flattened, without the mission and the direction puffertrain's
policy also sees); its Monitor files give the episodes.

    python experiments/learning_goals.py --seeds 1 --out-dir runs/goals
    python experiments/learning_goals.py --trainer sb3 --seeds 1 --out-dir runs/goals \\
        [--sb3-stop-at-goal]
    python experiments/learning_goals.py --report-only --out-dir runs/goals
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import gymnasium as gym
import numpy as np
import tyro

GOALS = {
    "FrozenLake-v1": (0.7, 200_000),
    "Taxi-v4": (7.0, 500_000),
    "MiniGrid-Empty-8x8-v0": (0.9, 500_000),
}
WINDOW = 100


@dataclass
class Args:
    """Options of the goal runs."""

    seeds: list[int] = field(default_factory=lambda: [1])
    envs: list[str] = field(default_factory=lambda: list(GOALS))
    out_dir: Path = Path("runs/goals")
    report_only: bool = False
    """Only read the runs already in --out-dir."""
    trainer: Literal["puffertrain", "sb3"] = "puffertrain"
    sb3_stop_at_goal: bool = False
    """End an SB3 run once the mean of its last 100 episodes meets the goal (its step is what
    the comparison reports; the rest of the budget would only cost time)."""


def episode_returns(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(global steps, returns) of every episode the run logged: SB3's Monitor files, or the
    puffertrain run's TensorBoard events."""
    monitors = sorted(run_dir.glob("*.monitor.csv"))
    if monitors:
        # one env: its episodes' lengths add up to the global step at each episode's end
        table = np.loadtxt(monitors[0], delimiter=",", skiprows=2, usecols=(0, 1), ndmin=2)
        return np.cumsum(table[:, 1]).astype(int), table[:, 0]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    scalars = events.Scalars("charts/episodic_return")
    return np.array([s.step for s in scalars]), np.array([s.value for s in scalars])


def first_reached(steps: np.ndarray, returns: np.ndarray, goal: float) -> int | None:
    """The first step where the mean of the last ``WINDOW`` episodes is at least ``goal``."""
    for end in range(WINDOW, len(returns) + 1):
        if returns[end - WINDOW : end].mean() >= goal:
            return int(steps[end - 1])
    return None


def report(env_id: str, seed: int, run_dir: Path) -> str:
    goal, budget = GOALS[env_id]
    steps, returns = episode_returns(run_dir)
    reached = first_reached(steps, returns, goal)
    at_budget = returns[steps <= budget][-WINDOW:].mean()
    final = returns[-WINDOW:].mean()
    verdict = "met" if reached is not None and reached <= budget else "missed"
    if verdict == "missed" and steps[-1] < budget:
        verdict = f"not yet (the run stopped at {steps[-1]:,})"
    return (
        f"{env_id:24} seed {seed}  goal {goal} by {budget:,}: {verdict}  "
        f"(reached at {reached if reached is None else f'{reached:,}'}; "
        f"mean of last {WINDOW} at {budget:,}: {at_budget:.2f}; at end {steps[-1]:,}: {final:.2f})"
    )


def make_sb3_env(env_id: str, run_dir: Path) -> gym.Env:
    """The env SB3 trains on, in a Monitor writing its episodes to ``run_dir``."""
    from stable_baselines3.common.monitor import Monitor

    if env_id.startswith("MiniGrid"):
        from minigrid.wrappers import ImgObsWrapper

        # the egocentric 7x7x3 view alone: SB3 would give a Dict's uint8 image its NatureCNN,
        # whose 8x8 kernel does not fit 7x7
        env = ImgObsWrapper(gym.make(env_id))
    else:
        env = gym.make(env_id)
    return Monitor(env, str(run_dir / "0"))


def train_sb3(env_id: str, seed: int, run_dir: Path, stop_at_goal: bool) -> None:
    """SB3 PPO with its defaults (one env, 2,048 steps, 10 epochs of 64) for the goal's budget."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback

    goal, budget = GOALS[env_id]

    class StopAtGoal(BaseCallback):
        def _on_step(self) -> bool:
            returns = self.training_env.envs[0].get_episode_rewards()[-WINDOW:]
            return not (len(returns) == WINDOW and np.mean(returns) >= goal)

    run_dir.mkdir(parents=True, exist_ok=True)
    for old in run_dir.glob("*.monitor.csv"):
        old.unlink()
    env = make_sb3_env(env_id, run_dir)
    callback = StopAtGoal() if stop_at_goal else None
    PPO("MlpPolicy", env, seed=seed, device="cpu").learn(budget, callback=callback)


def main(args: Args) -> None:
    for env_id in args.envs:
        for seed in args.seeds:
            name = f"{env_id.replace('/', '_')}__s{seed}"
            run_dir = args.out_dir / (f"sb3__{name}" if args.trainer == "sb3" else name)
            start = time.perf_counter()
            if args.trainer == "sb3" and not args.report_only:
                train_sb3(env_id, seed, run_dir, args.sb3_stop_at_goal)
            elif not args.report_only:
                command = [sys.executable, "-m", "puffertrain", "--env", env_id, "--seed"]
                command += [str(seed), "--run-dir", str(run_dir), "--overwrite"]
                subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            wall = "" if args.report_only else f"  wall {time.perf_counter() - start:.0f} s"
            print(f"{args.trainer:11} {report(env_id, seed, run_dir)}{wall}", flush=True)


if __name__ == "__main__":
    main(tyro.cli(Args))
