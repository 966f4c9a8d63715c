"""What one training rollout step costs outside the env and the policy's own math.

    python experiments/step_overhead.py [--batches 1 64] [--seconds 2] [--repeats 3] [--output F]
        [--vec native|serial]

CartPole-v1 on the native engine (gymnasium's numpy vector env; ``--vec serial``: single envs
stepped in this process, what ``--vec auto`` builds below 8 envs), the mlp policy, one torch
thread (the trainer's choice for it), the training path: ``Rollout.collect`` into a buffer.
Per step of the whole batch, median of ``--repeats``:

- total: ``Rollout.collect`` time / steps;
- env: the vector env's own ``step`` with the same batch of random actions (serial: each env's
  own ``step`` in turn, and its ``reset`` where an episode ended);
- policy math: the forward of the path the rollout acts by (the numpy actor's for ``mlp``;
  no sampling, no bookkeeping);
- overhead: total - env - policy math (sampling, tensor/array moves, buffer writes, episode
  bookkeeping, the engine's copies);
- floor: the same per-step cost of the least an eager-PyTorch PPO step can do (``floor_step``:
  observations to a tensor without a copy, the forward, Gumbel-max sampling and its
  log-probability, four buffer writes, the env step, two more writes), the same env and policy;
  its overhead is what any trainer written this way pays beyond the env and the math;
- numpy floor: ``floor_step`` with the forward (the numpy actor's) and the sampling in numpy,
  and its overhead beyond the env and that numpy forward: what a step outside eager
  PyTorch's per-op dispatch could pay;
- alternating: the forward and the env step called in turn and nothing else, which shows
  what taking turns costs over timing each alone;
- env-only: puffertrain's step with random actions drawn beforehand (``Rollout.receive`` and
  ``Engine.send``, as ``bench`` times it), against the env floor: the vector env's step plus
  the least an engine keeping the engines' contract does (``env_floor_step``: the
  observations, the same-step reset of ended envs by the env's own rule, the final
  observations, each episode's score and length).

The ceilings of the per-step speed issue follow (printed per batch): env-only SPS can be no
more than ``batch / env floor``, and an eager rollout with same-step resets no more than
``batch / (floor total + env floor - env)``. The floors are the vector env's: ``--vec serial``
measures total, env, policy math, overhead and env-only alone.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

# numpy's BLAS on one thread, as torch is below: the numpy floor gets no core the torch one lacks
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import gymnasium as gym
import numpy as np
import torch

from puffertrain.buffer import RolloutBuffer
from puffertrain.engine import make_engine
from puffertrain.engine.gym_vector import row_reset
from puffertrain.policy_loader import build_policy
from puffertrain.ppo import PolicyAdapter
from puffertrain.ppo.numpy_actor import NumpyActor
from puffertrain.rollout import Rollout

NUM_STEPS = 128


def _seconds_per_call(call: Callable[[], object], seconds: float) -> float:
    for _ in range(10):  # warm up
        call()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        call()
        calls += 1
    return (time.perf_counter() - start) / calls


def measure(batch: int, seconds: float, vec: str = "native") -> dict[str, float]:
    """Microseconds per step of ``batch`` envs on the ``vec`` engine: total, env, policy math,
    overhead (and the floors, on the native engine)."""
    engine, _ = make_engine(vec, "CartPole-v1", batch, {})
    policy = build_policy("mlp", engine.policy_observation_space, engine.single_action_space)
    adapter = PolicyAdapter(policy, engine.single_action_space)
    rollout = Rollout(engine, adapter, torch.device("cpu"))
    rollout.acting_threads = 1
    buffer = RolloutBuffer(
        NUM_STEPS,
        batch,
        engine.policy_observation_space,
        engine.single_action_space,
        torch.device("cpu"),
    )
    rollout.reset(0)
    # the episodes taken after every rollout, as the trainer takes them (kept, they grow and
    # so does every pass of the garbage collector)
    total = _seconds_per_call(lambda: rollout.collect(buffer) or rollout.take_episodes(), seconds)
    total /= NUM_STEPS

    actions = gym.vector.utils.batch_space(engine.single_action_space, batch)
    actions.seed(0)
    fixed = actions.sample()
    obs = torch.from_numpy(engine.observations.copy())
    numpy_forward = NumpyActor.of(adapter).forward
    numpy_math = _seconds_per_call(lambda: numpy_forward(obs.numpy()), seconds)
    with torch.no_grad():
        math = _seconds_per_call(lambda: policy(obs), seconds)
    if vec == "serial":
        env = _seconds_per_call(single_envs_step(engine.envs, fixed), seconds)
        floors = {}  # the floors are the vector env's
    else:
        vector = engine._vectors[0]
        env = _seconds_per_call(lambda: vector.step(fixed), seconds)
        with torch.no_grad():
            floor = _seconds_per_call(floor_step(vector, policy, floor_buffers(batch)), seconds)
            alternating = _seconds_per_call(lambda: (policy(obs), vector.step(fixed)), seconds)
        numpy_step = numpy_floor_step(vector, numpy_forward, floor_buffers(batch))
        floors = {
            "floor_total_us": floor * 1e6,
            "alternating_us": alternating * 1e6,
            "numpy_floor_total_us": _seconds_per_call(numpy_step, seconds) * 1e6,
            "env_floor_us": _seconds_per_call(env_floor_step(vector, fixed), seconds) * 1e6,
        }
    env_only = _seconds_per_call(env_only_step(rollout, fixed), seconds)
    engine.close()
    return {
        "total_us": total * 1e6,
        "env_us": env * 1e6,
        "policy_math_us": math * 1e6,
        "numpy_math_us": numpy_math * 1e6,
        "env_only_us": env_only * 1e6,
        "acts_in_numpy": rollout.numpy_actor is not None,
        **floors,
    }


def env_only_step(rollout: Rollout, actions: np.ndarray) -> Callable[[], None]:
    """puffertrain's env-only step, as ``bench`` times it: take the batch back (and its
    finished episodes), send it again with actions drawn beforehand."""
    rollout.reset(0)
    rollout.engine.send(actions, np.arange(rollout.num_rows))

    def one_step() -> None:
        rollout.engine.send(actions, rollout.receive().row_ids)
        rollout.take_episodes()

    return one_step


def single_envs_step(envs: list[gym.Env], actions: np.ndarray) -> Callable[[], None]:
    """The single envs' own work in one step of the serial engine: each env's ``step`` with
    its action, and its ``reset`` where the episode ended."""
    for env in envs:
        env.reset(seed=0)
    pairs = list(zip(envs, actions.tolist(), strict=True))

    def one_step() -> None:
        for env, action in pairs:
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()

    return one_step


def env_floor_step(vector: gym.vector.VectorEnv, actions: np.ndarray) -> Callable[[], None]:
    """One step of the vector env with the least bookkeeping an engine keeping the engines'
    contract needs (same-step reset by the env's own rule, final observations, episode scores
    and lengths); no rows, no timers, no result object."""
    observations = vector.reset(seed=0)[0].copy()
    final_observations = np.zeros_like(observations)
    scores = np.zeros(len(observations))
    lengths = np.zeros(len(observations), dtype=np.int64)
    reset_rows = row_reset(vector)

    def one_step() -> None:
        obs, rewards, terminations, truncations, _ = vector.step(actions)
        observations[:] = obs
        scores[:] += rewards
        lengths[:] += 1
        ended = terminations | truncations
        rows = ended.nonzero()[0]
        if rows.size:
            np.copyto(final_observations, obs, where=ended[:, None])
            reset_rows(vector, ended, rows, observations)
            list(zip(rows.tolist(), scores[rows].tolist(), lengths[rows].tolist(), strict=True))
            scores[rows] = 0.0
            lengths[rows] = 0

    return one_step


def floor_buffers(batch: int) -> dict[str, np.ndarray]:
    """The floor steps' per-step buffers, one ``(NUM_STEPS, batch)`` array each."""
    kinds = {"actions": np.int64, "log_probs": np.float32, "values": np.float32}
    kinds |= {"rewards": np.float32, "dones": np.bool_}
    return {name: np.zeros((NUM_STEPS, batch), dtype) for name, dtype in kinds.items()}


def floor_step(
    vector: gym.vector.VectorEnv, policy: torch.nn.Module, buffers: dict[str, np.ndarray]
) -> Callable[[], None]:
    """One step of the leanest eager lockstep rollout (CleanRL's loop, writing into
    ``buffers`` from :func:`floor_buffers`): no episode statistics, no same-step reset, no row
    bookkeeping. Call under ``no_grad``."""
    observations = [vector.reset(seed=0)[0]]
    stored_obs = np.zeros((NUM_STEPS, *observations[0].shape), np.float32)
    step = [0]

    def one_step() -> None:
        t = step[0] = (step[0] + 1) % NUM_STEPS
        obs = observations[0]
        logits, value = policy(torch.from_numpy(obs))
        log_p = torch.log_softmax(logits, dim=-1)
        action = (log_p - torch.empty_like(log_p).exponential_().log_()).argmax(dim=-1)
        log_prob = log_p.gather(-1, action.unsqueeze(-1))
        stored_obs[t] = obs
        actions = action.numpy()
        buffers["actions"][t] = actions
        buffers["log_probs"][t] = log_prob.numpy()[:, 0]
        buffers["values"][t] = value.numpy()[:, 0]
        observations[0], rewards, terminations, truncations, _ = vector.step(actions)
        buffers["rewards"][t] = rewards
        buffers["dones"][t] = terminations | truncations

    return one_step


def numpy_floor_step(
    vector: gym.vector.VectorEnv,
    forward: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    buffers: dict[str, np.ndarray],
) -> Callable[[], None]:
    """``floor_step`` outside PyTorch: the same step with the forward in numpy and Gumbel-max
    sampling from a numpy generator, what a step free of eager PyTorch's per-op dispatch
    would pay."""
    observations = [vector.reset(seed=0)[0]]
    random = np.random.default_rng(0)
    stored_obs = np.zeros((NUM_STEPS, *observations[0].shape), np.float32)
    rows = np.arange(buffers["actions"].shape[1])
    step = [0]

    def one_step() -> None:
        t = step[0] = (step[0] + 1) % NUM_STEPS
        obs = observations[0]
        logits, values = forward(obs)
        log_p = logits - logits.max(axis=1, keepdims=True)
        log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
        gumbel = -np.log(random.standard_exponential(log_p.shape, np.float32))
        actions = (log_p + gumbel).argmax(axis=1)
        stored_obs[t] = obs
        buffers["actions"][t] = actions
        buffers["log_probs"][t] = log_p[rows, actions]
        buffers["values"][t] = values
        observations[0], rewards, terminations, truncations, _ = vector.step(actions)
        buffers["rewards"][t] = rewards
        buffers["dones"][t] = terminations | truncations

    return one_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path)
    parser.add_argument("--vec", choices=["native", "serial"], default="native")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for batch in args.batches:
        runs = [measure(batch, args.seconds, args.vec) for _ in range(args.repeats)]
        row = {"batch": batch, "vec": args.vec}
        for key in runs[0]:
            row[key] = statistics.median(run[key] for run in runs)
        # the math of the path the rollout acts by: the numpy actor's for the library's MLPs
        own_math = row["numpy_math_us"] if row["acts_in_numpy"] else row["policy_math_us"]
        row["overhead_us"] = row["total_us"] - row["env_us"] - own_math
        row["env_only_sps"] = batch * 1e6 / row["env_only_us"]
        row["rollout_sps"] = batch * 1e6 / row["total_us"]
        rows.append(row)
        print(
            f"batch {batch:3d} ({args.vec}): total {row['total_us']:7.1f} µs, env "
            f"{row['env_us']:6.1f}, policy math {own_math:6.1f}, overhead "
            f"{row['overhead_us']:6.1f}; "
            f"env-only {row['env_only_sps']:,.0f} SPS, rollout {row['rollout_sps']:,.0f} SPS"
        )
        if args.vec == "serial":
            continue
        row["floor_overhead_us"] = row["floor_total_us"] - row["env_us"] - row["policy_math_us"]
        row["numpy_floor_overhead_us"] = (
            row["numpy_floor_total_us"] - row["env_us"] - row["numpy_math_us"]
        )
        print(
            f"  floor: total {row['floor_total_us']:7.1f}, overhead "
            f"{row['floor_overhead_us']:6.1f}; forward and env in turn {row['alternating_us']:6.1f}"
        )
        print(
            f"  outside PyTorch: math {row['numpy_math_us']:6.1f} µs, floor total "
            f"{row['numpy_floor_total_us']:7.1f}, overhead {row['numpy_floor_overhead_us']:6.1f}"
        )
        batch_sps = batch * 1e6
        row["env_only_ceiling_sps"] = batch_sps / row["env_floor_us"]
        row["env_alone_sps"] = batch_sps / row["env_us"]
        same_step_resets = row["env_floor_us"] - row["env_us"]
        row["rollout_ceiling_sps"] = batch_sps / (row["floor_total_us"] + same_step_resets)
        print(
            f"  env-only: puffertrain {row['env_only_sps']:,.0f} SPS, ceiling "
            f"{row['env_only_ceiling_sps']:,.0f} (env floor {row['env_floor_us']:.1f} µs), env "
            f"alone {row['env_alone_sps']:,.0f}; rollout: puffertrain "
            f"{row['rollout_sps']:,.0f} SPS, eager ceiling {row['rollout_ceiling_sps']:,.0f}"
        )
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        results = {"date": time.strftime("%Y-%m-%d %H:%M"), "rows": rows, "numpy": np.__version__}
        args.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
