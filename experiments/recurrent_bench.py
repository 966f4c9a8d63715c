"""Recurrent policy costs on this machine, each pair measured side by side in one process:

1. rollout step: ``LSTMCell`` (``forward_step``) vs ``nn.LSTM`` with a sequence of length 1
   (the docs' RecurrentPolicy), batch = num_envs, no grad;
2. one update epoch (PPO loss forward + backward + Adam step over every minibatch):
   the batched ``forward_sequence`` vs per-step loops over time in Python, with the state
   reset at the same episode starts: through the ``LSTMCell`` (the fastest loop) and through
   the ``nn.LSTM`` with a sequence of length 1 per step (CleanRL's ppo_atari_lstm);
3. the LSTM part of one minibatch alone (forward + backward), the same two ways.

    python experiments/recurrent_bench.py [--output experiments/results/recurrent_bench.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from policies.heads import EncoderHeads
from policies.recurrent import (
    LSTMPolicy,
    LSTMWrapper,
    State,
    lstm_over_segments,
)
from puffertrain.buffer import Minibatch
from puffertrain.config import PPOConfig
from puffertrain.ppo import PolicyAdapter, ppo_loss

SPACES = {
    "cnn+lstm": gym.spaces.Box(0, 255, (4, 84, 84), np.uint8),
    "mlp+lstm": gym.spaces.Box(-5.0, 5.0, (4,), np.float32),
}


def median_seconds(run: Callable[[], object], repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def observations(space: gym.spaces.Box, *shape: int) -> torch.Tensor:
    if space.dtype == np.uint8:
        return torch.randint(0, 256, (*shape, *space.shape), dtype=torch.uint8)
    return torch.randn(*shape, *space.shape)


Step = Callable[[torch.Tensor, State], State]
"""One LSTM step: features ``(B, F)`` and state in, new ``(h, c)`` out."""


def sequence_of_one(lstm: torch.nn.LSTM, features: torch.Tensor, state: State) -> State:
    """One step through the ``nn.LSTM`` with a sequence dim of 1 (the docs' RecurrentPolicy,
    CleanRL's ppo_atari_lstm)."""
    _, (h, c) = lstm(features.unsqueeze(0), tuple(part.unsqueeze(0) for part in state))
    return h[0], c[0]


def step_with_lstm(policy: LSTMPolicy, obs: torch.Tensor, state: State):
    features = policy.policy.encode_observations(obs)
    state = sequence_of_one(policy.lstm, features, state)
    return policy.policy.decode_actions(state[0]), state


def stepped(step: Step, features: torch.Tensor, state: State, episode_starts: torch.Tensor):
    """Hidden outputs ``[T * B, H]`` of a Python loop over ``features[T, B, F]``, the state
    zeroed at each episode start."""
    hidden = []
    for t in range(features.shape[0]):
        keep = (~episode_starts[t]).unsqueeze(1).float()
        state = step(features[t], tuple(part * keep for part in state))
        hidden.append(state[0])
    return torch.cat(hidden)


class SteppedSequences(torch.nn.Module):
    """The same policy, but its update path loops over time steps in Python: through its
    LSTMCell, or with ``cleanrl=True`` through its nn.LSTM on sequences of one."""

    def __init__(self, policy: LSTMPolicy, cleanrl: bool = False) -> None:
        super().__init__()
        self.inner = policy
        self.cleanrl = cleanrl

    def initial_state(self, batch_size: int, device: torch.device | str = "cpu") -> State:
        return self.inner.initial_state(batch_size, device)

    def forward_step(self, obs: torch.Tensor, state: State):
        return self.inner.forward_step(obs, state)

    def forward_sequence(self, obs: torch.Tensor, state: State, episode_starts: torch.Tensor):
        steps, batch = obs.shape[:2]
        features = self.inner.policy.encode_observations(obs.flatten(0, 1)).view(steps, batch, -1)
        step = partial(sequence_of_one, self.inner.lstm) if self.cleanrl else self.inner.cell
        return self.inner.policy.decode_actions(stepped(step, features, state, episode_starts))


def rollout_step_us(name: str, num_envs: int, repeats: int) -> dict[str, float]:
    space = SPACES[name]
    policy = LSTMPolicy(space, gym.spaces.Discrete(4))
    obs = observations(space, num_envs)
    state = policy.initial_state(num_envs)
    with torch.no_grad():
        cell = median_seconds(lambda: policy.forward_step(obs, state), repeats)
        lstm = median_seconds(lambda: step_with_lstm(policy, obs, state), repeats)
    return {"lstm_cell_us": cell * 1e6, "lstm_seq1_us": lstm * 1e6, "speedup": lstm / cell}


def train_epoch(
    agent: PolicyAdapter, optimizer: torch.optim.Optimizer, data: list[Minibatch]
) -> None:
    for minibatch in data:
        loss, _ = ppo_loss(agent, minibatch, PPOConfig())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def epoch_seconds(
    name: str, num_envs: int, num_steps: int, minibatches: int, episode_length: float, repeats: int
) -> dict[str, float]:
    """One epoch over a ``num_steps × num_envs`` batch of whole-env sequences."""
    space = SPACES[name]
    generator = torch.Generator().manual_seed(0)
    starts = torch.rand(num_steps, num_envs, generator=generator) < 1.0 / episode_length
    obs = observations(space, num_steps, num_envs)
    actions = torch.randint(0, 4, (num_steps, num_envs))
    per = num_envs // minibatches

    def batches() -> list[Minibatch]:
        return [
            Minibatch(
                observations=obs[:, k * per : (k + 1) * per],
                actions=actions[:, k * per : (k + 1) * per].flatten(),
                log_probs=torch.full((num_steps * per,), -np.log(4.0)),
                advantages=torch.randn(num_steps * per),
                returns=torch.randn(num_steps * per),
                values=torch.randn(num_steps * per),
                states=tuple(torch.zeros(per, 128) for _ in range(2)),
                episode_starts=starts[:, k * per : (k + 1) * per],
            )
            for k in range(minibatches)
        ]

    results = {}
    variants = {
        "batched_s": lambda policy: policy,
        "step_loop_s": SteppedSequences,
        "cleanrl_loop_s": partial(SteppedSequences, cleanrl=True),
    }
    for label, wrap in variants.items():
        torch.manual_seed(0)
        agent = PolicyAdapter(
            wrap(LSTMPolicy(space, gym.spaces.Discrete(4))), gym.spaces.Discrete(4)
        )
        optimizer = torch.optim.Adam(agent.parameters(), lr=2.5e-4, eps=1e-5)
        epoch = partial(train_epoch, agent, optimizer, batches())
        results[label] = median_seconds(epoch, repeats, warmup=1)
    results["speedup"] = results["step_loop_s"] / results["batched_s"]
    results["speedup_vs_cleanrl"] = results["cleanrl_loop_s"] / results["batched_s"]
    return results


def lstm_core_seconds(
    features: int, steps: int, batch: int, episode_length: float, repeats: int
) -> dict[str, float]:
    """Forward + backward of the 128-unit LSTM over ``[steps, batch, features]`` with resets."""
    torch.manual_seed(0)
    core = LSTMWrapper(
        EncoderHeads(torch.nn.Identity(), 128, gym.spaces.Discrete(4)), features, 128
    )
    lstm, cell = core.lstm, core.cell
    inputs = torch.randn(steps, batch, features, requires_grad=True)
    starts = torch.rand(steps, batch) < 1.0 / episode_length
    state = (torch.zeros(batch, 128), torch.zeros(batch, 128))

    def batched() -> None:
        lstm_over_segments(lstm, inputs, state, starts).sum().backward()

    def step_loop(step: Step) -> None:
        stepped(step, inputs, state, starts).sum().backward()

    row = {
        "batched_s": median_seconds(batched, repeats),
        "step_loop_s": median_seconds(partial(step_loop, cell), repeats),
        "cleanrl_loop_s": median_seconds(
            partial(step_loop, partial(sequence_of_one, lstm)), repeats
        ),
    }
    return row | {
        "speedup": row["step_loop_s"] / row["batched_s"],
        "speedup_vs_cleanrl": row["cleanrl_loop_s"] / row["batched_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    report: dict[str, object] = {"torch_threads": torch.get_num_threads()}
    for name, num_envs in (("cnn+lstm", 8), ("mlp+lstm", 8), ("mlp+lstm", 64)):
        row = rollout_step_us(name, num_envs, args.repeats * 30)
        report[f"rollout_step/{name}/{num_envs}envs"] = row
        print(f"rollout step {name}, {num_envs} envs: {json.dumps(row)}", flush=True)
    epochs = {
        # name: (envs, steps, minibatches, mean episode length between resets)
        "cnn+lstm breakout preset": ("cnn+lstm", 8, 128, 4, 60.0),
        "mlp+lstm classic preset": ("mlp+lstm", 8, 32, 1, 20.0),
        "mlp+lstm 16x128": ("mlp+lstm", 16, 128, 4, 100.0),
    }
    for label, (name, envs, steps, minibatches, length) in epochs.items():
        row = epoch_seconds(name, envs, steps, minibatches, length, args.repeats)
        report[f"update_epoch/{label}"] = row
        print(f"update epoch {label}: {json.dumps(row)}", flush=True)
        feature_size = 512 if name == "cnn+lstm" else 128
        row = lstm_core_seconds(feature_size, steps, envs // minibatches, length, args.repeats * 3)
        report[f"lstm_minibatch/{label}"] = row
        print(f"LSTM part of a minibatch {label}: {json.dumps(row)}", flush=True)
    if args.output:
        args.output.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
