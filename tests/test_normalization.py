"""Observation and reward normalisation in the trainer, and the continuous-control preset."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from policies import NormalizedPolicy
from puffertrain.buffer import Minibatch
from puffertrain.cli import main, parse_train_args
from puffertrain.config import PPOConfig, TrainConfig
from puffertrain.ppo import PolicyAdapter, ppo_loss
from puffertrain.rollout.rewards import RewardNormalizer
from puffertrain.trainer.loop import Trainer
from tests.conftest import run_cli
from tests.test_resume import assert_same_run, resume_after_a_crash


def test_observation_statistics_cover_every_observation_the_rollouts_saw(tmp_path):
    config = TrainConfig(
        env="Pendulum-v1",
        policy="mlp",
        normalize_obs=True,
        num_envs=3,
        num_steps=16,
        total_timesteps=3 * 16 * 4,
        vec="serial",
        device="cpu",
    )
    trainer = Trainer(config, tmp_path, None)
    seen: list[np.ndarray] = []
    fold_in = trainer._update_normalization

    def record_then_fold_in() -> None:
        seen.append(trainer.buffer.observations.flatten(0, 1).numpy().copy())
        fold_in()

    trainer._update_normalization = record_then_fold_in
    trainer.train()
    stats = trainer.adapter.policy.obs_rms
    everything = np.concatenate(seen).astype(np.float64)
    assert len(seen) == 4 and stats.count == len(everything) == 3 * 16 * 4
    np.testing.assert_allclose(stats.mean.numpy(), everything.mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats.var.numpy(), everything.var(0), rtol=1e-6)


def test_reward_normalizer_divides_by_the_std_of_discounted_returns():
    gamma = 0.9
    normalizer = RewardNormalizer(2, gamma)
    rewards = [np.array([1.0, -2.0]), np.array([3.0, 0.5]), np.array([-1.0, 4.0])]
    ended = [np.array([False, True]), np.array([False, False]), np.array([True, False])]
    returns, history = np.zeros(2), []
    for reward, done in zip(rewards, ended, strict=True):
        out = normalizer(reward.astype(np.float32), np.arange(2), done)
        returns = returns * gamma + reward
        history.extend(returns)
        np.testing.assert_allclose(out, reward / np.sqrt(np.var(history) + 1e-8), rtol=1e-6)
        returns[done] = 0.0
    np.testing.assert_allclose(normalizer.returns, returns, rtol=1e-12)


def test_reward_normalizer_counts_only_acting_rows_in_batches_of_any_size():
    gamma, rng = 0.95, np.random.default_rng(3)
    normalizer = RewardNormalizer(5, gamma)
    returns, history = np.zeros(5), []
    for _ in range(40):
        rows = np.sort(rng.choice(5, size=int(rng.integers(1, 6)), replace=False))
        reward = rng.normal(size=rows.size).astype(np.float32) * 20
        ended, acting = rng.random(rows.size) < 0.2, rng.random(rows.size) < 0.7
        out = normalizer(reward, rows, ended, acting)
        returns[rows] = returns[rows] * gamma + reward
        history.extend(returns[rows][acting])
        expected = reward / np.sqrt(np.var(history) + 1e-8) if history else reward
        np.testing.assert_allclose(out, np.clip(expected, -10, 10), rtol=1e-5)
        returns[rows[ended]] = 0.0


def test_box_action_envs_get_the_continuous_preset():
    config, _ = parse_train_args(["--env", "Pendulum-v1"])
    assert (config.num_envs, config.num_steps) == (4, 512)
    assert config.normalize_obs and config.normalize_reward
    assert (config.ppo.learning_rate, config.ppo.num_minibatches, config.ppo.ent_coef) == (
        3e-4,
        32,
        0.0,
    )
    cartpole, _ = parse_train_args(["--env", "CartPole-v1"])
    assert not cartpole.normalize_reward and cartpole.num_envs == 8  # the classic preset's
    dict_observations, _ = parse_train_args(["--env", "tests.envs:dict_box_actions"])
    assert dict_observations.num_steps == 512 and dict_observations.normalize_reward
    assert not dict_observations.normalize_obs  # only float Box observations are normalised


def test_the_continuous_preset_trains_an_env_with_dict_observations(tmp_path):
    main(
        [
            "--env", "tests.envs:dict_box_actions", "--num-steps", "64", "--num-minibatches",
            "2", "--update-epochs", "1", "--total-timesteps", "128", "--device", "cpu",
            "--run-dir", str(tmp_path / "run"),
        ]
    )  # fmt: skip
    assert (tmp_path / "run" / "checkpoints").is_dir()


def test_clipped_and_normalised_rewards_are_refused(capsys):
    """Both given: refused. One given: the preset's other one turns off
    (tests/test_preset_adaptation.py)."""
    with pytest.raises(SystemExit):
        main(["--env", "Pendulum-v1", "--clip-rewards", "--normalize-reward"])
    assert "--clip-rewards and --normalize-reward" in capsys.readouterr().err


def test_a_checkpoint_whose_episodes_restart_keeps_no_running_returns():
    normalizer = RewardNormalizer(2, 0.9)
    normalizer(np.array([1.0, 2.0]), np.arange(2), np.zeros(2, dtype=bool))
    assert normalizer.state_dict()["returns"].abs().sum() > 0
    restarted = RewardNormalizer(2, 0.9)
    restarted.load_state_dict(normalizer.state_dict(with_returns=False))
    assert not restarted.returns.any() and restarted.count == normalizer.count == 2


def test_normalize_obs_on_images_is_refused_clearly(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["--env", "tests.envs:dict_env", "--normalize-obs", "--run-dir", str(tmp_path / "r")])
    assert exit_info.value.code == 2
    assert "--normalize-obs" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


RESUME_ITERATIONS = 12
RESUME_ARGS = [
    "--env", "Pendulum-v1", "--policy", "continuous", "--vec", "serial", "--device", "cpu",
    "--num-envs", "2", "--num-steps", "64", "--num-minibatches", "4",
    "--total-timesteps", str(128 * RESUME_ITERATIONS), "--checkpoint-interval", "4",
    "--keep-checkpoints", "10", "--normalize-obs", "--normalize-reward",
]  # fmt: skip


def test_normalization_statistics_survive_a_resume(tmp_path):
    """A normalised run resumed after a crash ends identical to the uninterrupted one: same
    weights and observation statistics (in the policy's state), same reward scaling (the
    losses would differ otherwise)."""
    uninterrupted = tmp_path / "uninterrupted"
    result = run_cli(*RESUME_ARGS, "--run-dir", str(uninterrupted))
    assert result.returncode == 0, result.stderr
    resume_after_a_crash(uninterrupted, tmp_path / "crashed", 4)
    assert_same_run(tmp_path / "crashed", uninterrupted, updates=RESUME_ITERATIONS)
    evaluation = run_cli("eval", "--checkpoint", str(uninterrupted), "--episodes", "1")
    assert evaluation.returncode == 0, evaluation.stderr


def test_compiled_update_sees_the_statistics_change():
    """The compiled loss reads the statistics as they are now, not as they were when it was
    compiled."""
    torch.manual_seed(0)
    space = gym.spaces.Box(-10.0, 10.0, (3,), np.float32)
    agent = PolicyAdapter(NormalizedPolicy(space, gym.spaces.Discrete(2)), gym.spaces.Discrete(2))
    batch = Minibatch(
        observations=torch.randn(32, 3) * 4 + 2,
        actions=torch.randint(0, 2, (32,)),
        log_probs=torch.full((32,), -0.7),
        advantages=torch.randn(32),
        returns=torch.randn(32),
        values=torch.randn(32),
    )
    compiled = torch.compile(ppo_loss)
    config = PPOConfig()
    for _ in range(2):
        agent.policy.update_normalization(torch.randn(50, 3) * 3 + 1)
        torch.testing.assert_close(
            compiled(agent, batch, config)[0], ppo_loss(agent, batch, config)[0]
        )


def test_each_update_learns_on_statistics_that_include_its_rollout(tmp_path):
    # they moved once per rollout after its update, so the first update learned on the raw
    # observations its rollout acted on, and the next rollout acted on normalised ones
    config = TrainConfig(
        env="Pendulum-v1", policy="mlp", normalize_obs=True, num_envs=2, num_steps=16,
        total_timesteps=2 * 16 * 3, vec="serial", device="cpu",
    )  # fmt: skip
    trainer = Trainer(config, tmp_path, None)
    update, seen = trainer.learner.update, []

    def check_then_update(buffer, learning_rate):
        policy = trainer.adapter.policy
        with torch.no_grad():
            log_probs, _, values = trainer.adapter.evaluate(
                buffer.observations.flatten(0, 1), buffer.actions.flatten(0, 1)
            )
        seen.append(int(policy.obs_rms.count))
        torch.testing.assert_close(log_probs, buffer.log_probs.flatten())  # ratios start at 1
        torch.testing.assert_close(values, buffer.values.flatten())
        return update(buffer, learning_rate)

    trainer.learner.update = check_then_update
    trainer.train()
    assert seen == [32, 64, 96]


def test_a_recurrent_policys_statistics_move_after_its_update(tmp_path):
    # its stored start states came from the statistics its rollout acted with
    config = TrainConfig(
        env="Pendulum-v1", policy="lstm", normalize_obs=True, num_envs=2, num_steps=16,
        total_timesteps=2 * 16 * 3, vec="serial", device="cpu",
        ppo=PPOConfig(num_minibatches=1),
    )  # fmt: skip
    trainer = Trainer(config, tmp_path, None)
    update, seen = trainer.learner.update, []

    def record_then_update(buffer, learning_rate):
        seen.append(int(trainer.adapter.policy.obs_rms.count))
        return update(buffer, learning_rate)

    trainer.learner.update = record_then_update
    trainer.train()
    assert seen == [0, 32, 64] and trainer.adapter.policy.obs_rms.count == 96


def test_rescoring_a_rollout_holds_no_more_rows_than_a_minibatch(tmp_path):
    # the whole buffer in one forward held a user's 64 envs × 2,048 steps at once
    config = TrainConfig(
        env="Pendulum-v1", policy="mlp", normalize_obs=True, num_envs=2, num_steps=16,
        total_timesteps=2 * 16, vec="serial", device="cpu", ppo=PPOConfig(num_minibatches=4),
    )  # fmt: skip
    trainer = Trainer(config, tmp_path, None)
    trainer.rollout.collect(trainer.buffer)
    before = trainer.buffer.log_probs.clone()
    trainer.adapter.policy.update_normalization(trainer.buffer.observations.flatten(0, 1))
    evaluate, rows = trainer.adapter.evaluate, []

    def recorded(observations, *args):
        rows.append(len(observations))
        return evaluate(observations, *args)

    trainer.adapter.evaluate = recorded
    trainer.learner.rescore(trainer.buffer)
    assert rows == [8, 8, 8, 8]
    with torch.no_grad():
        log_probs, _, _ = evaluate(
            trainer.buffer.observations.flatten(0, 1), trainer.buffer.actions.flatten(0, 1)
        )
    torch.testing.assert_close(trainer.buffer.log_probs.flatten(), log_probs)
    assert not torch.equal(before, trainer.buffer.log_probs)  # the statistics moved them
