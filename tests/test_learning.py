"""PPO learns: CartPole-v1 reaches a mean return of 475 well within 200k env steps."""

from __future__ import annotations

from collections import deque

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from puffertrain.cli import main


def test_cartpole_reaches_475_within_200k_steps(tmp_path):
    run_dir = tmp_path / "cartpole"
    main(
        [
            "--env",
            "CartPole-v1",
            "--policy",
            "mlp",
            "--seed",
            "1",
            "--device",
            "cpu",
            "--total-timesteps",
            "100000",
            "--run-dir",
            str(run_dir),
        ]
    )
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    recent: deque[float] = deque(maxlen=20)
    best = 0.0
    for event in events.Scalars("charts/episodic_return"):
        recent.append(event.value)
        if len(recent) == 20:
            best = max(best, sum(recent) / 20)
    assert best >= 475, f"best mean return over 20 episodes: {best:.1f}"
