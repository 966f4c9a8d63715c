"""Atari: preprocessing, whole-game raw scores, the CNN policies, and a smoke run end to end."""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from policies import CNNPolicy, EfficientCNN
from puffertrain.cli import main
from puffertrain.engine import NativeAtariEngine, SerialEngine, make_engine
from puffertrain.envs.atari import atari_settings, make_wrapped_atari
from puffertrain.trainer.checkpoint import list_checkpoints, load_checkpoint

BREAKOUT = "ALE/Breakout-v5"


def _play(envs, steps: int, seed: int = 0) -> list[tuple[int, float, int]]:
    rng = np.random.default_rng(seed)
    envs.reset(seed=3)
    games = []
    for _ in range(steps):
        result = envs.step(rng.integers(0, envs.single_action_space.n, envs.num_rows))
        games += [(e.env_index, e.score, e.length) for e in result.episodes]
    return games


def _reference_games(step_env, num_envs: int, steps: int, seed: int = 0):
    """Whole-game scores from envs that only end at game over, summed here."""
    rng = np.random.default_rng(seed)
    scores, lengths, games = np.zeros(num_envs), np.zeros(num_envs, int), []
    for _ in range(steps):
        rewards, over = step_env(rng.integers(0, 4, num_envs))
        scores += rewards
        lengths += 1
        for i in np.flatnonzero(over):
            games.append((int(i), float(scores[i]), int(lengths[i])))
            scores[i], lengths[i] = 0, 0
    return games


def test_native_observations_are_stacked_uint8_frames():
    envs, _ = make_engine("native", BREAKOUT, 2, {})
    obs = envs.reset(seed=0)
    assert isinstance(envs, NativeAtariEngine)
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    assert envs.single_observation_space == gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    assert envs.single_action_space == gym.spaces.Discrete(4)


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux-only")
def test_native_env_threads_yield_to_the_policy_thread():
    before = set(os.listdir("/proc/self/task"))
    envs, _ = make_engine("native", BREAKOUT, 4, {}, num_threads=2, batch_size=2)
    started = set(os.listdir("/proc/self/task")) - before
    try:
        assert len(started) == envs.env_threads == 2
        assert all(os.sched_getscheduler(int(thread)) == os.SCHED_IDLE for thread in started)
        assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the policy's thread is untouched
    finally:
        envs.close()


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux-only")
def test_native_engine_builds_where_a_sandbox_refuses_scheduler_changes(monkeypatch):
    def refuse(*args):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    envs, _ = make_engine("native", BREAKOUT, 2, {}, num_threads=1)
    try:
        assert envs.reset(seed=0).shape == (2, 4, 84, 84)
    finally:
        envs.close()


def test_native_scores_whole_games_with_raw_rewards():
    settings = atari_settings(BREAKOUT, {})
    envs = NativeAtariEngine(settings, 2, num_threads=1)
    ours = _play(envs, 700)

    from ale_py.vector_env import AtariVectorEnv

    kwargs = {k: v for k, v in settings.items() if k != "game"}
    reference = AtariVectorEnv(
        "breakout", 2, num_threads=1, autoreset_mode="SameStep", reward_clipping=False, **kwargs
    )
    reference.reset(seed=3)

    def step(actions):
        _, rewards, terminated, truncated, _ = reference.step(actions.astype(np.int32))
        return rewards.astype(float), terminated | truncated

    expected = _reference_games(step, 2, 700)
    assert len(expected) >= 2
    assert sorted(ours) == sorted(expected)


def test_wrapped_path_scores_whole_games_and_signals_life_loss():
    settings = atari_settings(BREAKOUT, {"repeat_action_probability": 0.0})
    envs = SerialEngine([lambda: make_wrapped_atari(BREAKOUT, settings)] * 2)
    ours = _play(envs, 500)

    plain = [make_wrapped_atari(BREAKOUT, settings).env for _ in range(2)]  # no life-loss layer
    for index, env in enumerate(plain):
        env.reset(seed=3 + index)

    def step(actions):
        rewards, over = np.zeros(2), np.zeros(2, bool)
        for i, env in enumerate(plain):
            _, rewards[i], terminated, truncated, _ = env.step(actions[i])
            over[i] = terminated or truncated
            if over[i]:
                env.reset()
        return rewards, over

    expected = _reference_games(step, 2, 500)
    assert len(expected) >= 2
    assert sorted(ours) == sorted(expected)


def test_life_loss_terminates_but_the_game_goes_on():
    env = make_wrapped_atari(BREAKOUT, atari_settings(BREAKOUT, {}))
    env.reset(seed=0)
    lives = env.unwrapped.ale.lives()
    for _ in range(2000):
        _, _, terminated, _, info = env.step(0)
        if terminated:
            break
    assert terminated and not info["game_over"]
    env.reset()
    assert env.unwrapped.ale.lives() == lives - 1  # same game, one life fewer


@pytest.mark.parametrize("policy_class", [CNNPolicy, EfficientCNN])
def test_cnn_policies_shapes_and_finite_gradients(policy_class):
    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    policy = policy_class(space, gym.spaces.Discrete(6))
    obs = torch.randint(0, 256, (8, 4, 84, 84), dtype=torch.uint8)
    logits, value = policy(obs)
    assert logits.shape == (8, 6) and value.shape == (8, 1)
    (logits.sum() + value.sum()).backward()
    for name, parameter in policy.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name


def test_cnn_takes_its_input_channels_from_the_space():
    policy = CNNPolicy(gym.spaces.Box(0, 255, (1, 84, 84), np.uint8), gym.spaces.Discrete(4))
    assert policy.encoder[0].convs[0].in_channels == 1
    logits, _ = policy(torch.zeros(2, 1, 84, 84, dtype=torch.uint8))
    assert logits.shape == (2, 4)


def test_breakout_smoke_run_resume_and_eval(tmp_path, capsys):
    run_dir = tmp_path / "breakout"
    small = [
        "--num-envs",
        "4",
        "--num-steps",
        "32",
        "--update-epochs",
        "1",
        "--num-minibatches",
        "2",
        "--device",
        "cpu",
        "--checkpoint-interval",
        "8",
    ]
    main(
        [
            "--env",
            BREAKOUT,
            "--policy",
            "cnn",
            "--total-timesteps",
            "2048",
            "--run-dir",
            str(run_dir),
            *small,
        ]
    )
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    tags = events.Tags()["scalars"]
    for tag in (
        "charts/episodic_return",
        "charts/episodic_length",
        "losses/value_loss",
        "losses/policy_loss",
        "losses/entropy",
        "losses/approx_kl",
        "charts/SPS",
    ):
        assert tag in tags, tag
    assert all(
        e.value >= 0 and e.value == int(e.value)  # raw game scores
        for e in events.Scalars("charts/episodic_return")
    )
    assert load_checkpoint(list_checkpoints(run_dir)[-1]).global_step == 2048

    main(["--resume", str(run_dir), "--total-timesteps", "2560"])
    assert load_checkpoint(list_checkpoints(run_dir)[-1]).global_step == 2560

    capsys.readouterr()
    video = tmp_path / "game.mp4"
    main(["eval", "--checkpoint", str(run_dir), "--episodes", "1", "--video", str(video)])
    out = capsys.readouterr().out
    assert "ALE/Breakout-v5: " in out and "over 1 games" in out
    assert video.stat().st_size > 1000


def test_registered_settings_hold_unless_overridden():
    v5 = atari_settings(BREAKOUT, {})
    assert v5["repeat_action_probability"] == 0.25
    assert v5["max_num_frames_per_episode"] == 108_000
    assert v5["frameskip"] == 4 and v5["noop_max"] == 30 and v5["stack_num"] == 4
    assert atari_settings("BreakoutNoFrameskip-v4", {})["repeat_action_probability"] == 0.0
    assert atari_settings("BreakoutNoFrameskip-v4", {})["frameskip"] == 4
    assert (
        atari_settings(BREAKOUT, {"repeat_action_probability": 0.0})["repeat_action_probability"]
        == 0.0
    )


@pytest.mark.parametrize("setting", ['{"sticky": 1}', '{"obs_type": "ram"}', '{"mode": 1}'])
def test_settings_outside_the_recipe_are_refused_saying_what_to_do(capsys, setting):
    """A game mode or RAM observations were refused as 'unknown', with no way named."""
    with pytest.raises(SystemExit):
        main(["--env", BREAKOUT, "--env-kwargs", setting, "--total-timesteps", "8"])
    err = capsys.readouterr().err
    assert "the Atari recipe (84×84 frames, on every --vec) takes no " in err
    assert f"--env mymodule:make_env, where make_env returns gym.make('{BREAKOUT}', ...)" in err


def test_wrapped_atari_envs_build_inside_worker_processes():
    envs, _ = make_engine("multiprocessing", BREAKOUT, 2, {}, num_workers=1)
    try:
        assert envs.reset(0).shape == (2, 4, 84, 84)
        assert envs.step(np.ones(2, dtype=np.int64)).observations.dtype == np.uint8
    finally:
        envs.close()
