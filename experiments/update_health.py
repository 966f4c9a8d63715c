"""How far each update moved the policy, along a run: the training return, the policy's
entropy (for Box actions also the std it means per action dimension), the update's mean
approximate KL and clip fraction, the learning rate (with --target-kl also the share of its
planned steps taken), read from runs' TensorBoard logs at fixed steps (each the mean of the
points logged in the window before it).

    python experiments/update_health.py RUN [RUN ...] --every 50000 --output F.json

A policy whose entropy keeps falling while each update's KL grows past ~0.1 and most samples
end outside the clip range is being moved further than PPO's clip holds it: what preceded the
collapses on BipedalWalker-v3 (experiments/RESULTS.md, "Held out: BipedalWalker-v3").
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

import gymnasium as gym
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

TAGS = {
    "return": "charts/episodic_return",
    "entropy": "losses/entropy",
    "approx_kl": "losses/approx_kl",
    "clipfrac": "losses/clipfrac",
    "steps_fraction": "losses/steps_fraction",  # only with --target-kl
    "learning_rate": "charts/learning_rate",  # below the schedule where --adaptive-lr-kl binds
}


def health(run_dir: Path, every: int) -> dict[str, dict[int, float]]:
    """Each tag's mean over ``(step - every, step]`` at every multiple of ``every``."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    table: dict[str, dict[int, float]] = {}
    logged = set(events.Tags()["scalars"])
    for name, tag in TAGS.items():
        if tag not in logged:
            continue
        points = [(event.step, event.value) for event in events.Scalars(tag)]
        last = max(step for step, _ in points)
        table[name] = {
            mark: statistics.fmean(v for s, v in points if mark - every < s <= mark)
            for mark in range(every, last + 1, every)
            if any(mark - every < s <= mark for s, _ in points)
        }
    dimensions = _box_action_dimensions(run_dir)
    if dimensions and "entropy" in table:
        table["action_std"] = {
            mark: gaussian_std(entropy, dimensions) for mark, entropy in table["entropy"].items()
        }
    return table


def gaussian_std(entropy: float, dimensions: int) -> float:
    """The per-dimension std (geometric mean over dimensions) of a diagonal Gaussian whose
    entropy is ``entropy``: each dimension's entropy is ln(std) + ln(2 pi e) / 2."""
    return math.exp(entropy / dimensions - 0.5 * math.log(2 * math.pi * math.e))


def _box_action_dimensions(run_dir: Path) -> int:
    """The run's env's Box action dimensions (0 for any other action space or env id)."""
    config = json.loads((run_dir / "config.json").read_text())
    try:
        env = gym.make(config["env"])
    except Exception:  # an env this script cannot build (a module path, a custom callable)
        return 0
    space = env.action_space
    env.close()
    return int(math.prod(space.shape)) if isinstance(space, gym.spaces.Box) else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--every", type=int, default=50_000)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    results = {str(run): health(run, args.every) for run in args.runs}
    for run, table in results.items():
        print(run)
        for name, values in table.items():
            print(f"  {name:>14}: " + " ".join(f"{s // 1000}k {v:.3g}" for s, v in values.items()))
    if args.output:
        args.output.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
