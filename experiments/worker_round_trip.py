"""What one lockstep step of the multiprocessing backend costs beyond the envs' own work:
workers step an env that does nothing, so the time per step is the round trip (semaphores both
ways, shared-memory writes). Median of several windows; the figure behind WORKER_ROUND_TRIP_S.

    python experiments/worker_round_trip.py [--workers 1] [--seconds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym
import numpy as np

from puffertrain.engine import multiprocessing_engine


class IdleEnv(gym.Env):
    observation_space = gym.spaces.Box(0.0, 1.0, (4,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        return np.zeros(4, np.float32), {}

    def step(self, action):
        return np.zeros(4, np.float32), 0.0, False, False, {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--windows", type=int, default=5)
    args = parser.parse_args()
    lanes = args.workers + 1  # the trainer's process steps one env too
    envs = multiprocessing_engine([IdleEnv] * lanes, num_workers=args.workers)
    envs.reset(0)
    actions = np.zeros(lanes, dtype=np.int64)
    times = []
    for _ in range(args.windows):
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < args.seconds / args.windows:
            envs.step(actions)
            steps += 1
        times.append((time.perf_counter() - start) / steps)
    envs.close()
    print(
        f"round trip with {args.workers} workers: median {statistics.median(times) * 1e6:.1f} µs "
        f"(windows: {', '.join(f'{t * 1e6:.1f}' for t in times)})"
    )


if __name__ == "__main__":
    main()
