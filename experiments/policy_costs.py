"""What each library policy costs on this machine: parameters, rollout inference per env step
and one PPO minibatch step (forward, backward, clipping, Adam), median of several repeats.

    python experiments/policy_costs.py [--policies mlp cnn ...] [--repeats 5] [--output F]

Rollout: ``PolicyAdapter.act`` on a batch of 8 envs (the presets' --num-envs), reported per
env step.
Update: a minibatch of 256 transitions (recurrent policies: 8 sequences of 32 steps, with
episode starts inside). Eager mode, torch's default threads.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from policies import POLICIES, is_recurrent
from policies.checks import sample_observations
from puffertrain.buffer import Minibatch, action_storage
from puffertrain.config import PPOConfig
from puffertrain.ppo import PolicyAdapter, ppo_loss

VECTOR = gym.spaces.Box(-5.0, 5.0, (4,), np.float32)  # CartPole
PENDULUM = gym.spaces.Box(-8.0, 8.0, (3,), np.float32), gym.spaces.Box(-2.0, 2.0, (1,))
FRAMES = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)  # Atari preset
IMAGE_VECTOR = gym.spaces.Dict(  # tests.envs.ImageVectorEnv
    {
        "image": gym.spaces.Box(0, 255, (1, 8, 8), np.uint8),
        "vector": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
    }
)
SETUPS = {  # label: policy, observation space, action space
    "mlp": ("mlp", VECTOR, gym.spaces.Discrete(2)),
    "continuous": (
        "continuous",
        gym.spaces.Box(-8, 8, (3,), np.float32),
        gym.spaces.Box(-2, 2, (1,)),
    ),
    "cnn": ("cnn", FRAMES, gym.spaces.Discrete(4)),
    "efficient_cnn": ("efficient_cnn", FRAMES, gym.spaces.Discrete(4)),
    "multi_input": ("multi_input", IMAGE_VECTOR, gym.spaces.Discrete(2)),
    "attention": ("attention", VECTOR, gym.spaces.Discrete(2)),
    "residual": ("residual", VECTOR, gym.spaces.Discrete(2)),
    "lstm": ("lstm", VECTOR, gym.spaces.Discrete(2)),
    "lstm (images)": ("lstm", FRAMES, gym.spaces.Discrete(4)),
    "recurrent": ("recurrent", VECTOR, gym.spaces.Discrete(2)),
    "optimized_lstm": ("optimized_lstm", VECTOR, gym.spaces.Discrete(2)),
}
ROLLOUT_ENVS, MINIBATCH, SEQUENCE = 8, 256, 32


def _time(fn, seconds: float) -> float:
    """Mean seconds per call over about ``seconds`` of calls."""
    fn()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or calls < 3:
        fn()
        calls += 1
    return (time.perf_counter() - start) / calls


def _minibatch(
    agent: PolicyAdapter, space: gym.spaces.Space, action_space: gym.spaces.Space
) -> Minibatch:
    shape, dtype = action_storage(action_space)
    if dtype == torch.float32:
        actions = torch.randn(MINIBATCH, *shape)
    else:
        high = int(getattr(action_space, "n", 2))
        actions = torch.randint(0, high, (MINIBATCH, *shape))
    observations = sample_observations(space, MINIBATCH)
    extra = {}
    if agent.recurrent:
        sequences = MINIBATCH // SEQUENCE
        observations = observations.view(SEQUENCE, sequences, *observations.shape[1:])
        starts = torch.rand(SEQUENCE, sequences) < 0.02
        extra = {"states": agent.initial_state(sequences, "cpu"), "episode_starts": starts}
    return Minibatch(
        observations=observations,
        actions=actions,
        log_probs=torch.full((MINIBATCH,), -1.0),
        advantages=torch.randn(MINIBATCH),
        returns=torch.randn(MINIBATCH),
        values=torch.randn(MINIBATCH),
        **extra,
    )


def measure(
    name: str,
    observation_space: gym.spaces.Space,
    action_space: gym.spaces.Space,
    compiled: bool = False,
    repeats: int = 5,
    seconds: float = 1.0,
) -> dict[str, float]:
    """Parameters, first-call seconds, rollout µs per ``act`` call and per env step, and
    milliseconds per minibatch update of policy ``name`` on these spaces."""
    torch.manual_seed(0)
    policy = POLICIES[name].cls(observation_space, action_space)
    agent = PolicyAdapter(policy, action_space)
    optimizer = torch.optim.Adam(agent.parameters(), lr=2.5e-4, eps=1e-5)
    config = PPOConfig()
    act = torch.compile(agent.act) if compiled else agent.act
    loss_fn = torch.compile(ppo_loss) if compiled else ppo_loss
    rollout_obs = sample_observations(observation_space, ROLLOUT_ENVS)
    state = agent.initial_state(ROLLOUT_ENVS, "cpu")
    batch = _minibatch(agent, observation_space, action_space)

    def act_step() -> None:
        with torch.no_grad():
            act(rollout_obs, state)

    def train_step() -> None:
        loss, _ = loss_fn(agent, batch, config)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(agent.parameters(), 0.5)
        optimizer.step()

    started = time.perf_counter()
    act_step()
    train_step()
    first_call_s = time.perf_counter() - started
    act_s = statistics.median(_time(act_step, seconds / 2) for _ in range(repeats))
    train_s = statistics.median(_time(train_step, seconds) for _ in range(repeats))
    return {
        "parameters": sum(p.numel() for p in policy.parameters()),
        "recurrent": is_recurrent(policy),
        "first_call_s": first_call_s,
        "act_us": act_s * 1e6,
        "act_us_per_env_step": act_s * 1e6 / ROLLOUT_ENVS,
        "update_ms_per_minibatch": train_s * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", nargs="+", default=list(SETUPS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    results = {"torch": torch.__version__, "threads": torch.get_num_threads(), "policies": {}}
    print(f"{'policy':16} {'obs':>14} {'params':>10} {'µs/env-step':>12} {'ms/minibatch':>13}")
    for label in args.policies:
        name, observation_space, action_space = SETUPS[label]
        row = measure(name, observation_space, action_space, repeats=args.repeats)
        results["policies"][label] = {
            "policy": name,
            "observation_space": str(observation_space),
            **row,
        }
        shape = (
            "Dict" if isinstance(observation_space, gym.spaces.Dict) else observation_space.shape
        )
        print(
            f"{label:16} {shape!s:>14} {row['parameters']:>10,} "
            f"{row['act_us_per_env_step']:>12.1f} {row['update_ms_per_minibatch']:>13.2f}",
            flush=True,
        )
    if args.output:
        args.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
