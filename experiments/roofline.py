"""How far Atari training is from this machine's compute limit.

Measures the machine's dense matmul throughput (GFLOP/s, fp32 and bf16, on the threads torch
uses) and counts the FLOPs one env step of training needs with the given policy and settings:
one inference forward pass, plus ``update_epochs`` forward+backward passes of that sample in the
update (``torch.utils.flop_counter``). Their ratio is the SPS compute alone allows; measured
training SPS (``--measured``, e.g. from vs_sb3.py) is then a fraction of it.

    python experiments/roofline.py --measured fp32=430 --measured bf16=650 \\
        --output results/roofline.json --plot results/roofline.png
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from policies.cnn import CNNPolicy

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def matmul_gflops(dtype: torch.dtype, size: int = 2048, repeats: int = 7) -> float:
    """Median GFLOP/s of ``size``² matmuls in ``dtype``."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    flops = 2 * size**3
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(4):
            a @ b
        times.append((time.perf_counter() - start) / 4)
    return flops / statistics.median(times) / 1e9


def flops_per_env_step(update_epochs: int, frames: int = 4) -> dict[str, float]:
    """FLOPs of the Nature CNN policy per env step: rollout forward, and epochs × (forward +
    backward) in the update (activations' gradients and the weights')."""
    space = gym.spaces.Box(0, 255, (frames, 84, 84), np.uint8)
    policy = CNNPolicy(space, gym.spaces.Discrete(4))
    batch = torch.randint(0, 255, (32, frames, 84, 84), dtype=torch.uint8)
    with FlopCounterMode(display=False) as forward_count, torch.no_grad():
        policy(batch)
    with FlopCounterMode(display=False) as train_count:
        logits, value = policy(batch)
        (logits.logsumexp(-1).sum() + value.sum()).backward()
    forward = forward_count.get_total_flops() / len(batch)
    train = train_count.get_total_flops() / len(batch)
    return {
        "inference_forward": forward,
        "update_forward_backward": train,
        "per_env_step": forward + update_epochs * train,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update-epochs", type=int, default=4)
    parser.add_argument("--measured", action="append", default=[], help="PRECISION=SPS")
    parser.add_argument("--output", type=Path)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args()
    flops = flops_per_env_step(args.update_epochs)
    machine = {name: matmul_gflops(dtype) for name, dtype in DTYPES.items()}
    limits = {name: gflops * 1e9 / flops["per_env_step"] for name, gflops in machine.items()}
    measured = dict(item.split("=") for item in args.measured)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "matmul_gflops": machine,
        "flops": flops,
        "sps_limit": limits,
        "measured_sps": {name: float(sps) for name, sps in measured.items()},
        "fraction_of_limit": {name: float(sps) / limits[name] for name, sps in measured.items()},
    }
    print(json.dumps(result, indent=2))
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    if args.plot:
        plot(result, args.plot)


def plot(result: dict, path: Path) -> None:
    """Bars: the compute-bound SPS limit per precision, and the measured SPS beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["sps_limit"])
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(x - 0.2, [result["sps_limit"][n] for n in names], 0.4, label="compute limit")
    measured = [result["measured_sps"].get(n, 0.0) for n in names]
    ax.bar(x + 0.2, measured, 0.4, label="measured training")
    for i, name in enumerate(names):
        if name in result["fraction_of_limit"]:
            share = result["fraction_of_limit"][name]
            ax.annotate(f"{share:.0%}", (x[i] + 0.2, measured[i]), ha="center", va="bottom")
    ax.set_xticks(x, [f"{n}\n{result['matmul_gflops'][n]:.0f} GFLOP/s" for n in names])
    ax.set_ylabel("env steps / s")
    ax.set_title("Breakout, Nature CNN: SPS that compute allows vs measured")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
