"""PPO learns: CartPole-v1 reaches a mean return of 475 well within 200k env steps, the LSTM
policy solves a task that needs memory, the continuous policy swings Pendulum up, and the
multi-input policy solves a task that needs both parts of a Dict observation."""

from __future__ import annotations

from collections import deque

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from puffertrain.cli import main


def cartpole_args(run_dir) -> list[str]:
    """The core learning run: CartPole-v1, the classic-control preset, 100k steps."""
    return ["--env", "CartPole-v1", "--seed", "1", "--device", "cpu",
            "--total-timesteps", "100000", "--run-dir", str(run_dir)]  # fmt: skip


def best_with_defaults(run_dir, env: str, seed: int, total_timesteps: int) -> float:
    """Train ``env`` with its defaults (no evaluations) and return the best mean of 20 returns."""
    main(["--env", env, "--seed", str(seed), "--device", "cpu", "--eval-interval", "0",
          "--total-timesteps", str(total_timesteps), "--run-dir", str(run_dir)])  # fmt: skip
    return best_mean_return(run_dir)


def test_cartpole_reaches_475_within_200k_steps(tmp_path):
    main(cartpole_args(tmp_path / "cartpole"))
    best = best_mean_return(tmp_path / "cartpole")
    assert best >= 475, f"best mean return over 20 episodes: {best:.1f}"


@pytest.mark.slow
def test_classic_control_defaults_learn_acrobot(tmp_path):
    """Acrobot-v1, a classic-control env the preset was not tuned on, seed 2: its returns are
    about -50 to -100 (γ 0.98), and a value loss clipped to move 0.2 per update left this seed
    at -500 (no episode ever ended) for 200k steps; unclipped it passes -100 by ~32k."""
    best = best_with_defaults(tmp_path / "acrobot", "Acrobot-v1", seed=2, total_timesteps=40_000)
    assert best >= -150, f"best mean return over 20 episodes: {best:.1f}"


def test_classic_control_defaults_reach_the_mountain_car_flag(tmp_path):
    """MountainCar-v0, classic-control preset, 100k steps: with the guide's shared 2 × 256 ReLU
    MLP the preset never reached the flag in 500k steps on any of 3 seeds, with observations
    normalised or not (the best mean of 20 stayed at -200: no episode reached it); SB3's
    separate 2 × 64 tanh actor and critic on normalised observations, the preset now, reaches
    it. Which seeds get there hangs on float rounding (16 and 17 of seeds 1-18 on two trees
    that differ only in it: experiments/RESULTS.md, "Half the numpy calls per act"), so two
    seeds run and one must; a broken preset fails both."""
    best = max(
        best_with_defaults(tmp_path / f"car{seed}", "MountainCar-v0", seed, total_timesteps=100_000)
        for seed in (2, 3)
    )
    assert best >= -180, f"best mean return over 20 episodes on seeds 2 and 3: {best:.1f}"


def test_continuous_defaults_find_the_mountain_car_flag(tmp_path):
    """MountainCarContinuous-v0, continuous preset, seed 2: with white action noise no episode
    reached the flag in 100k steps on any of 3 seeds (the policy learned to push as little as
    possible: best mean of 20, -1.9); with the preset's colored noise (beta 0.5) every seed
    reached a mean of 90 within 35k, this one at ~10k."""
    best = best_with_defaults(
        tmp_path / "car", "MountainCarContinuous-v0", seed=2, total_timesteps=20_480
    )
    assert best >= 50, f"best mean return over 20 episodes: {best:.1f}"


@pytest.mark.slow
def test_generic_defaults_land_the_lunar_lander(tmp_path):
    """LunarLander-v3 (Box2D), an env outside every tuned family, so the generic preset: with
    CleanRL ppo.py's 16 gradient steps per 1,024 samples each update moved the policy far less
    than PPO's clip allows (approx KL ~0.001, clip fraction ~0) and the best mean of 20 stayed
    at -99 to -119 for 60k steps on 3 of 3 seeds (-109 here); with SB3's 10 epochs of 64-sample
    minibatches it reached -33 and -15 here. On raw rewards its critic either lagged the
    returns (value loss clipped) or led the shared trunk (unclipped); with the rewards scaled
    and the value loss unclipped it reaches 235 here."""
    pytest.importorskip("Box2D", reason="Box2D comes with the envs and dev extras")
    best = best_with_defaults(tmp_path / "lander", "LunarLander-v3", seed=3, total_timesteps=60_000)
    assert best >= 100, f"best mean return over 20 episodes: {best:.1f}"


MEMORY_TASK = [
    "--env", "tests.envs:cartpole_no_velocity", "--vec", "serial", "--device", "cpu",
    "--seed", "1", "--total-timesteps", "150000", "--num-envs", "16", "--num-steps", "64",
    "--gamma", "0.98", "--gae-lambda", "0.8", "--num-minibatches", "4", "--update-epochs", "8",
    "--learning-rate", "3e-3", "--ent-coef", "0.0",
]  # fmt: skip


def test_lstm_defaults_learn_without_velocities(tmp_path):
    """Issue #22: `--policy lstm` with the defaults on CartPole without its velocities. Fitting
    returns of tens saturated the LSTM state the critic shares with the actor, and the policy
    barely moved (best mean of 20: 34 in these 41k steps, entropy 0.66 at the end); with
    rewards scaled and observations normalised, as the defaults now do for recurrent
    policies, it reached 453 (entropy 0.39)."""
    run_dir = tmp_path / "lstm"
    main(["--env", "tests.envs:cartpole_no_velocity", "--policy", "lstm", "--seed", "1",
          "--device", "cpu", "--eval-interval", "0", "--total-timesteps", "40960",
          "--run-dir", str(run_dir)])  # fmt: skip
    best = best_mean_return(run_dir)
    assert best >= 300, f"best mean return over 20 episodes: {best:.1f}"
    entropy = scalars(run_dir, "losses/entropy")
    assert entropy[-1] < 0.5, f"entropy at the last update: {entropy[-1]:.3f}"


@pytest.mark.slow
def test_lstm_defaults_learn_pendulum(tmp_path):
    """Issue #22: under the continuous preset `--policy lstm` trains on its 4 envs' whole
    sequences, 4 minibatches instead of 32; at the preset's lr 3e-4 the policy moved an eighth as
    far per rollout and Pendulum-v1 stayed near its start (best mean of 20 in these 41k steps:
    -1,068 and -1,114 on seeds 1 and 2). With the lr scaled to keep the pace: -599 and -715."""
    run_dir = tmp_path / "lstm"
    main(["--env", "Pendulum-v1", "--policy", "lstm", "--seed", "1", "--device", "cpu",
          "--eval-interval", "0", "--total-timesteps", "40960",
          "--run-dir", str(run_dir)])  # fmt: skip
    best = best_mean_return(run_dir)
    assert best >= -850, f"best mean return over 20 episodes: {best:.1f}"


def scalars(run_dir, tag: str) -> list[float]:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return [event.value for event in events.Scalars(tag)]


def episodic_returns(run_dir) -> list[float]:
    return scalars(run_dir, "charts/episodic_return")


def best_mean_return(run_dir, window: int = 20) -> float:
    recent: deque[float] = deque(maxlen=window)
    best = float("-inf")
    for value in episodic_returns(run_dir):
        recent.append(value)
        if len(recent) == window:
            best = max(best, sum(recent) / window)
    return best


@pytest.mark.slow
def test_lstm_remembers_what_the_observation_hides(tmp_path):
    """CartPole without its two velocities: the LSTM infers them from past positions and
    reaches 400, where the feed-forward MLP, with the same budget and settings, cannot."""
    main([*MEMORY_TASK, "--policy", "lstm", "--run-dir", str(tmp_path / "lstm")])
    main([*MEMORY_TASK, "--policy", "mlp", "--run-dir", str(tmp_path / "mlp")])
    lstm, mlp = best_mean_return(tmp_path / "lstm"), best_mean_return(tmp_path / "mlp")
    assert lstm >= 400, f"lstm: best mean return over 20 episodes {lstm:.1f}"
    assert mlp < 200, f"mlp: best mean return over 20 episodes {mlp:.1f}"


PENDULUM = [
    "--env", "Pendulum-v1", "--policy", "continuous", "--vec", "serial", "--device", "cpu",
    "--seed", "1", "--total-timesteps", "61440", "--num-envs", "4", "--num-steps", "512",
    "--gamma", "0.9", "--learning-rate", "1e-3", "--num-minibatches", "8",
    "--update-epochs", "10", "--normalize-obs", "--normalize-reward",
]  # fmt: skip


@pytest.mark.slow
def test_continuous_policy_swings_pendulum_up(tmp_path):
    """Random torques score about -1,200 per episode; within 61k steps the last 10 episodes
    average better than -400 (RL Zoo's tuned PPO values, with normalisation, no gSDE)."""
    main([*PENDULUM, "--run-dir", str(tmp_path / "pendulum")])
    returns = episodic_returns(tmp_path / "pendulum")
    first, last = sum(returns[:10]) / 10, sum(returns[-10:]) / 10
    assert first < -900, f"first 10 episodes: {first:.0f}"
    assert last > -400, f"first 10 episodes {first:.0f}, last 10 {last:.0f}"


@pytest.mark.slow
def test_multi_input_reads_image_and_vector(tmp_path):
    """The rewarded action is the XOR of where the image's lit pixel is and the vector's sign:
    chance scores 8 of 16, and no single input does better."""
    run_dir = tmp_path / "image_vector"
    main(
        [
            "--env", "tests.envs:image_vector", "--policy", "multi_input", "--vec", "serial",
            "--device", "cpu", "--seed", "1", "--num-envs", "8", "--num-steps", "64",
            "--total-timesteps", "40960", "--learning-rate", "1e-3", "--run-dir", str(run_dir),
        ]
    )  # fmt: skip
    returns = episodic_returns(run_dir)
    assert sum(returns[:40]) / 40 < 10
    assert best_mean_return(run_dir) >= 15, f"best mean of 20: {best_mean_return(run_dir):.1f}"
