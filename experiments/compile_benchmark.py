"""Does torch.compile pay on this machine? Times the rollout's action sampling and one PPO
minibatch step, eager vs compiled, side by side in one process (median of several repeats).

    python experiments/compile_benchmark.py [--policies mlp cnn] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from policy_costs import SETUPS, measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", nargs="+", default=["mlp", "cnn"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    results = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    for name in args.policies:
        eager = measure(*SETUPS[name], compiled=False, repeats=args.repeats)
        compiled = measure(*SETUPS[name], compiled=True, repeats=args.repeats)
        eager_ms, compiled_ms = (
            eager["update_ms_per_minibatch"],
            compiled["update_ms_per_minibatch"],
        )
        results[name] = {
            "eager": eager,
            "compiled": compiled,
            "act_speedup": eager["act_us"] / compiled["act_us"],
            "train_step_speedup": eager_ms / compiled_ms,
        }
        print(
            f"{name}: act {eager['act_us']:.0f} µs eager vs {compiled['act_us']:.0f} µs "
            f"compiled; train step {eager_ms:.2f} ms vs {compiled_ms:.2f} ms; compile cost "
            f"{compiled['first_call_s']:.1f} s",
            flush=True,
        )
    if args.output:
        args.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
