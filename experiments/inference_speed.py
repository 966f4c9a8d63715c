"""Exported policies: their outputs against the policy's own (parity), and their inference
speed, eager torch vs TorchScript vs onnxruntime, by batch.

    python experiments/inference_speed.py --output experiments/results/inference_speed.json

Each policy is built for its preset's spaces, exported with ``export_policy`` (the graph
``puffertrain export`` writes) and called on the same observations by the three runtimes, in
turn, ``--rounds`` times; a round times ``--calls`` calls. The figure is the median µs per call.
Each runtime runs on ``--threads`` threads (torch's intra-op threads, onnxruntime's
intra-op pool), so the comparison is of the runtimes, not of their default thread counts.
Parity is the largest absolute difference of any output from eager torch's, on the same
random observations.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import onnxruntime as ort
import torch

from policies.flatten import flatten_observation, is_structured
from policies.registry import POLICIES
from puffertrain.export import ExportedPolicy, export_policy
from puffertrain.ppo import PolicyAdapter

CASES = {  # name: policy, observation space, action space
    "cnn (Atari)": ("cnn", gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), gym.spaces.Discrete(4)),
    "mlp (CartPole)": ("mlp", gym.spaces.Box(-1, 1, (4,), np.float32), gym.spaces.Discrete(2)),
    "lstm (CartPole)": ("lstm", gym.spaces.Box(-1, 1, (4,), np.float32), gym.spaces.Discrete(2)),
    "continuous (HalfCheetah)": (
        "continuous",
        gym.spaces.Box(-1, 1, (17,), np.float32),
        gym.spaces.Box(-1, 1, (6,), np.float32),
    ),
    "attention": ("attention", gym.spaces.Box(-1, 1, (16,), np.float32), gym.spaces.Discrete(4)),
    "residual": ("residual", gym.spaces.Box(-1, 1, (16,), np.float32), gym.spaces.Discrete(4)),
    "shared (3 agents)": (
        "shared",
        gym.spaces.Box(-1, 1, (18,), np.float32),
        gym.spaces.Discrete(5),
    ),
    "multi_input (Dict)": (
        "multi_input",
        gym.spaces.Dict(
            {
                "image": gym.spaces.Box(0, 255, (3, 16, 16), np.uint8),
                "vector": gym.spaces.Box(-1, 1, (8,), np.float32),
                "item": gym.spaces.Discrete(6),
            }
        ),
        gym.spaces.Discrete(4),
    ),
}


def microseconds_per_call(call: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - start) / calls * 1e6


def max_difference(expected: tuple[torch.Tensor, ...], actual: list | tuple) -> float:
    return max(
        float(np.abs(np.asarray(got) - want.numpy()).max())
        for got, want in zip(actual, expected, strict=True)
    )


def runtimes(
    adapter: PolicyAdapter, space: gym.spaces.Box, batch: int, threads: int, folder: Path
) -> dict[str, Callable[[], object]]:
    """The three ways to run the policy on one batch of ``batch`` observations."""
    export_policy(adapter, space, False, folder / "policy.pt", "torchscript")
    export_policy(adapter, space, False, folder / "policy.onnx", "onnx")
    space.seed(0)
    rows = [space.sample() for _ in range(batch)]
    obs = np.stack([flatten_observation(r, space) for r in rows] if is_structured(space) else rows)
    inputs = [torch.from_numpy(obs)]
    if adapter.recurrent:
        inputs += list(adapter.initial_state(batch, torch.device("cpu")))
    eager = ExportedPolicy(adapter, False).eval()
    scripted = torch.jit.load(str(folder / "policy.pt"))
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(folder / "policy.onnx"), options)
    feed = {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs, strict=True)}

    def torch_call(module: Callable[..., object]) -> Callable[[], object]:
        def call() -> object:
            with torch.inference_mode():
                return module(*inputs)

        return call

    return {
        "eager": torch_call(eager),
        "torchscript": torch_call(scripted),
        "onnxruntime": lambda: session.run(None, feed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name, (policy, space, actions) in CASES.items():
        torch.manual_seed(0)
        adapter = PolicyAdapter(POLICIES[policy].cls(space, actions), actions).eval()
        for batch in args.batches:
            with tempfile.TemporaryDirectory() as folder:
                calls = runtimes(adapter, space, batch, args.threads, Path(folder))
                outputs = {runtime: call() for runtime, call in calls.items()}
                parity = {
                    runtime: max_difference(outputs["eager"], outputs[runtime])
                    for runtime in ("torchscript", "onnxruntime")
                }
                for call in calls.values():
                    microseconds_per_call(call, args.calls // 10)  # warm up
                times: dict[str, list[float]] = {runtime: [] for runtime in calls}
                for _ in range(args.rounds):
                    for runtime, call in calls.items():
                        times[runtime].append(microseconds_per_call(call, args.calls))
            medians = {runtime: statistics.median(t) for runtime, t in times.items()}
            row = {"policy": name, "batch": batch, "threads": args.threads, "us": medians}
            row["max_abs_difference_from_eager"] = parity
            row["onnx_speedup_over_eager"] = medians["eager"] / medians["onnxruntime"]
            rows.append(row)
            print(
                f"{name:26} batch {batch:3}: "
                + ", ".join(f"{k} {v:8.1f} µs" for k, v in medians.items())
                + f"  (onnxruntime {row['onnx_speedup_over_eager']:.2f}× eager; largest "
                + f"difference {max(parity.values()):.1e})",
                flush=True,
            )
    if args.output:
        args.output.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
