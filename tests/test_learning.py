"""PPO learns: CartPole-v1 reaches a mean return of 475 well within 200k env steps, and the
LSTM policy solves a task that needs memory."""

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
    best = best_mean_return(run_dir)
    assert best >= 475, f"best mean return over 20 episodes: {best:.1f}"


MEMORY_TASK = [
    "--env", "tests.envs:cartpole_no_velocity", "--vec", "serial", "--device", "cpu",
    "--seed", "1", "--total-timesteps", "150000", "--num-envs", "16", "--num-steps", "64",
    "--gamma", "0.98", "--gae-lambda", "0.8", "--num-minibatches", "4", "--update-epochs", "8",
    "--learning-rate", "3e-3", "--ent-coef", "0.0",
]  # fmt: skip


def best_mean_return(run_dir, window: int = 20) -> float:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    recent: deque[float] = deque(maxlen=window)
    best = 0.0
    for event in events.Scalars("charts/episodic_return"):
        recent.append(event.value)
        if len(recent) == window:
            best = max(best, sum(recent) / window)
    return best


def test_lstm_remembers_what_the_observation_hides(tmp_path):
    """CartPole without its two velocities: the LSTM infers them from past positions and
    reaches 400, where the feed-forward MLP, with the same budget and settings, cannot."""
    main([*MEMORY_TASK, "--policy", "lstm", "--run-dir", str(tmp_path / "lstm")])
    main([*MEMORY_TASK, "--policy", "mlp", "--run-dir", str(tmp_path / "mlp")])
    lstm, mlp = best_mean_return(tmp_path / "lstm"), best_mean_return(tmp_path / "mlp")
    assert lstm >= 400, f"lstm: best mean return over 20 episodes {lstm:.1f}"
    assert mlp < 200, f"mlp: best mean return over 20 episodes {mlp:.1f}"
