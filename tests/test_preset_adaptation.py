"""Preset values the user did not set follow the ones they did; only given values are refused."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from puffertrain.adapt import adapt_to_given, given_fields
from puffertrain.cli import main, parse_train_args
from puffertrain.config import PPOConfig, TrainConfig
from puffertrain.presets import EVAL_EVERY_STEPS, preset_for


def test_given_fields_reads_every_flag_form():
    argv = ["--env", "X", "--num_envs=2", "--ppo.num-minibatches", "3", "--no-compile"]
    assert {"env", "num_envs", "num_minibatches", "compile"} <= given_fields(argv)


@pytest.mark.parametrize(("num_envs", "batch"), [(2, 0), (3, 0), (6, 3), (12, 4), (16, 4)])
def test_atari_env_batch_follows_num_envs(num_envs, batch):
    config = TrainConfig(num_envs=num_envs, env_batch_size=4, device="cpu")
    adapted, lines = adapt_to_given(config, {"num_envs"}, preset_for("atari"))
    assert adapted.env_batch_size == batch
    assert any("--env-batch-size" in line for line in lines) == (num_envs % 4 != 0)


def test_on_a_gpu_every_env_acts_in_one_batch(monkeypatch):
    """An action costs a GPU about the same for 4 envs as for 128 (launches and the wait for
    the actions, not arithmetic): the Atari preset's async batches of 4 only doubled the action
    calls on an H200. A given --env-batch-size holds, and on the CPU the batches stay."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    notes: list[str] = []
    gpu, _ = parse_train_args(["--env", "ALE/Breakout-v5"], notes)
    assert gpu.env_batch_size == 0
    assert any("--env-batch-size 4 → 0" in line for line in notes)
    given, _ = parse_train_args(["--env", "ALE/Breakout-v5", "--env-batch-size", "4"])
    cpu, _ = parse_train_args(["--env", "ALE/Breakout-v5", "--device", "cpu"])
    assert (given.env_batch_size, cpu.env_batch_size) == (4, 4)


def test_minibatches_keep_the_preset_size_in_a_small_batch():
    """The continuous preset's 32 minibatches of 64 steps: 16 steps make one minibatch, not
    16 one-step minibatches whose advantage std is undefined."""
    preset = preset_for("continuous")
    config = dataclasses.replace(preset, num_envs=1, num_steps=16)
    adapted, lines = adapt_to_given(config, {"num_envs", "num_steps"}, preset)
    assert adapted.ppo.num_minibatches == 1
    assert [line for line in lines if "--num-minibatches" in line] == [
        "puffertrain: preset adapted: --num-minibatches 32 → 1 (minibatches of at least 32 "
        "steps; the batch is 16)"
    ]
    adapted.validate()
    bigger, lines = adapt_to_given(dataclasses.replace(preset, num_envs=8), {"num_envs"}, preset)
    assert bigger.ppo.num_minibatches == 32
    assert not any("--num-minibatches" in line for line in lines)


def test_recurrent_minibatches_count_sequences():
    config = TrainConfig(policy="lstm", num_envs=2, ppo=PPOConfig(num_minibatches=4))
    adapted, _ = adapt_to_given(config, {"num_envs", "policy"}, TrainConfig())
    assert adapted.ppo.num_minibatches == 2


def test_sequence_length_follows_num_steps():
    config = TrainConfig(num_steps=24, ppo=PPOConfig(sequence_length=16))
    adapted, _ = adapt_to_given(config, {"num_steps"}, TrainConfig())
    assert adapted.ppo.sequence_length == 12
    adapted.validate()


def test_given_values_are_left_for_validate_to_refuse():
    config = TrainConfig(num_envs=2, env_batch_size=4, ppo=PPOConfig(num_minibatches=99))
    given = {"num_envs", "env_batch_size", "num_minibatches"}
    adapted, lines = adapt_to_given(config, given, TrainConfig())
    assert adapted == config and lines == []


def test_a_given_reward_rescaling_turns_the_preset_one_off():
    config = dataclasses.replace(preset_for("atari"), normalize_reward=True)
    adapted, _ = adapt_to_given(config, {"normalize_reward"}, preset_for("atari"))
    assert (adapted.clip_rewards, adapted.normalize_reward) == (False, True)
    adapted.validate()


def test_a_given_reward_clipping_turns_the_preset_normalisation_off():
    config, _ = parse_train_args(["--env", "Pendulum-v1", "--clip-rewards"])
    assert (config.clip_rewards, config.normalize_reward) == (True, False)


def test_atari_with_two_envs_trains_and_says_why(capsys, tmp_path):
    main(
        [
            "--env",
            "ALE/Breakout-v5",
            "--num-envs",
            "2",
            "--num-steps",
            "8",
            "--total-timesteps",
            "16",
            "--no-compile",
            "--device",
            "cpu",
            "--run-dir",
            str(tmp_path / "run"),
        ]
    )
    err = capsys.readouterr().err
    assert "preset adapted: --env-batch-size 4 → 0 (synchronous" in err


def test_an_explicit_contradiction_is_still_refused(capsys):
    with pytest.raises(SystemExit):
        main(["--env", "ALE/Breakout-v5", "--num-envs", "2", "--env-batch-size", "4"])
    assert "--env-batch-size 4 must divide --num-envs 2" in capsys.readouterr().err


def test_parse_keeps_untouched_presets():
    config, _ = parse_train_args(["--env", "ALE/Breakout-v5"])
    assert config.env_batch_size == 4


def test_minibatches_that_stay_large_enough_are_left_alone():
    """The generic preset's 16 minibatches of 4 × 128 steps are 32 steps each, the floor: no
    change."""
    preset = preset_for("other")
    config = dataclasses.replace(preset, num_envs=4, num_steps=128)
    adapted, lines = adapt_to_given(config, {"num_envs", "num_steps"}, preset)
    assert adapted.ppo.num_minibatches == 16
    assert not any("--num-minibatches" in line for line in lines)


def test_evaluations_keep_the_presets_spacing_in_env_steps():
    preset = preset_for("classic_control")
    config = dataclasses.replace(preset, num_envs=4)
    adapted, lines = adapt_to_given(config, {"num_envs"}, preset)
    assert adapted.eval_interval == round(preset.eval_interval * preset.batch_size / (4 * 32))
    assert any("--eval-interval" in line for line in lines)
    given = dataclasses.replace(config, eval_interval=3)
    assert adapt_to_given(given, {"num_envs", "eval_interval"}, preset)[0].eval_interval == 3


@pytest.mark.parametrize(
    "env_id", ["Taxi-v4", "FrozenLake-v1", "CliffWalking-v1", "tests.envs:dict_env"]
)
def test_the_generic_preset_takes_sb3s_gradient_steps_per_sample(env_id):
    """Issue #28: Taxi-v4 stayed at -200 for 124k steps under ppo.py's 16 gradient steps per
    1,024 samples, and LunarLander-v3 never reached 200 in 1M (test_learning.py). Toy text and
    every other env outside a tuned family take SB3's 10 epochs of 64-step minibatches; a flag
    still wins."""
    config, _ = parse_train_args(["--env", env_id])
    assert config.ppo.update_epochs == 10
    assert config.batch_size // config.ppo.num_minibatches == 64
    given, _ = parse_train_args(["--env", env_id, "--update-epochs", "4"])
    assert given.ppo.update_epochs == 4


def test_value_clipping_is_off_but_in_the_atari_preset_and_for_recurrent_policies():
    """Unclipped in the classic, continuous and generic presets (a value clipped to move
    --clip-coef per update lags returns of tens; the generic preset scales its rewards instead);
    CleanRL's clip for Atari and recurrent policies, and a given --no-clip-vloss holds for a
    recurrent policy too."""
    classic, _ = parse_train_args(["--env", "CartPole-v1"])
    continuous, _ = parse_train_args(["--env", "Pendulum-v1"])
    atari, _ = parse_train_args(["--env", "ALE/Breakout-v5"])
    generic, _ = parse_train_args(["--env", "tests.envs:dict_env"])
    assert (continuous.ppo.clip_vloss, generic.ppo.clip_vloss) == (False, False)
    assert generic.normalize_reward
    lstm, _ = parse_train_args(["--env", "CartPole-v1", "--policy", "lstm"])
    unclipped, _ = parse_train_args(["--env", "CartPole-v1", "--policy", "lstm", "--no-clip-vloss"])
    assert (classic.ppo.clip_vloss, atari.ppo.clip_vloss) == (False, True)
    assert (lstm.ppo.clip_vloss, unclipped.ppo.clip_vloss) == (True, False)


def test_recurrent_policies_learn_from_scaled_rewards_and_normalised_observations():
    """Unless rewards are clipped (Atari) or the user chose: a given flag holds, and
    observations that are not a float Box are left as they are."""
    lstm, _ = parse_train_args(["--env", "CartPole-v1", "--policy", "lstm"])
    mlp, _ = parse_train_args(["--env", "CartPole-v1"])
    chosen, _ = parse_train_args(
        ["--env", "CartPole-v1", "--policy", "lstm", "--no-normalize-reward"]
    )
    atari, _ = parse_train_args(["--env", "ALE/Breakout-v5", "--policy", "lstm"])
    taxi, _ = parse_train_args(["--env", "Taxi-v4", "--policy", "lstm"])
    assert (lstm.normalize_reward, lstm.normalize_obs) == (True, True)
    assert (mlp.normalize_reward, mlp.normalize_obs) == (False, True)  # the preset's own
    assert (chosen.normalize_reward, chosen.normalize_obs) == (False, True)
    scaled, _ = parse_train_args(["--env", "CartPole-v1", "--policy", "lstm", "--normalize-reward"])
    assert (scaled.normalize_reward, scaled.normalize_obs) == (True, True)
    assert (atari.normalize_reward, atari.normalize_obs, atari.clip_rewards) == (False, False, True)
    assert (taxi.normalize_reward, taxi.normalize_obs) == (True, False)


def test_classic_control_trains_sb3s_network_on_normalised_observations_where_they_fit(tmp_path):
    """Issue #22: the preset's shared `mlp` never found MountainCar-v0's flag; the preset now
    trains SB3's separate actor and critic on normalised observations. A given `--policy auto`
    is that choice too, given flags hold, and observations that are not a flat float vector
    get `auto`'s policy for them, as they are."""
    default, _ = parse_train_args(["--env", "CartPole-v1"])
    auto, _ = parse_train_args(["--env", "CartPole-v1", "--policy", "auto"])
    assert (default.policy, default.normalize_obs) == ("separate_mlp", True)
    assert (auto.policy, auto.normalize_obs) == ("separate_mlp", True)
    given, _ = parse_train_args(["--env", "CartPole-v1", "--policy", "mlp", "--no-normalize-obs"])
    assert (given.policy, given.normalize_obs) == ("mlp", False)
    structured, _ = parse_train_args(["--env", "tests.envs:cartpole_dict"])
    assert (structured.policy, structured.normalize_obs) == ("auto", False)
    run_dir = tmp_path / "dict"
    main(["--env", "tests.envs:cartpole_dict", "--num-envs", "2", "--num-steps", "16",
          "--total-timesteps", "64", "--device", "cpu", "--run-dir", str(run_dir)])  # fmt: skip
    assert any((run_dir / "checkpoints").iterdir())


def test_a_recurrent_policy_keeps_its_classic_control_sizes():
    """Under the classic preset's zoo sizes (8 envs, 1 minibatch × 20 epochs) CartPoleNoVel-v1
    with `--policy lstm` took 91-164 s to reach 475; with 16 envs and 2 × 10 it took 40-52 s.
    Evaluations keep their spacing in env steps, and a given size holds."""
    lstm, _ = parse_train_args(["--env", "CartPole-v1", "--policy", "lstm"])
    assert (lstm.num_envs, lstm.ppo.num_minibatches, lstm.ppo.update_epochs) == (16, 2, 10)
    assert lstm.eval_interval == round(EVAL_EVERY_STEPS / lstm.batch_size)
    given, _ = parse_train_args(["--env", "CartPole-v1", "--policy", "lstm", "--num-envs", "8"])
    default, _ = parse_train_args(["--env", "CartPole-v1"])
    assert (given.num_envs, default.num_envs, default.ppo.update_epochs) == (8, 8, 20)


def test_a_recurrent_policy_keeps_the_continuous_presets_pace():
    """Issue #22: a recurrent policy learns from whole-rollout sequences, so the continuous
    preset's 32 minibatches were its 4 envs' 4 sequences: 40 Adam steps per rollout at lr 3e-4
    instead of 320, and `--policy lstm` learned neither Pendulum-v1 nor PendulumNoVel-v1 in 100k
    steps. The learning rate times the gradient steps per rollout is now the preset's; a given
    learning rate holds."""
    feed_forward, _ = parse_train_args(["--env", "Pendulum-v1"])
    lstm, _ = parse_train_args(["--env", "Pendulum-v1", "--policy", "lstm"])

    def pace(config: TrainConfig) -> float:
        ppo = config.ppo
        return ppo.learning_rate * ppo.num_minibatches * ppo.update_epochs

    assert lstm.ppo.num_minibatches == lstm.num_envs  # one whole-rollout sequence each
    assert lstm.batch_size == feed_forward.batch_size
    assert pace(lstm) == pytest.approx(pace(feed_forward))
    lr_given = ["--env", "Pendulum-v1", "--policy", "lstm", "--learning-rate", "3e-4"]
    given, _ = parse_train_args(lr_given)
    assert given.ppo.learning_rate == 3e-4


def test_box_actions_explore_with_white_noise_and_classic_controls_with_colored():
    """Issue #22: under colored noise (beta 0.5) HalfCheetah-v5 tipped onto its back on 2 of 3
    seeds (median 1,538; white: 4,319) and BipedalWalker-v3 (Box2D) collapsed on 2 of 3 seeds
    after shrinking its std (seed 3: 11.9 at 500k; white: 259). MuJoCo's and every other
    Box-action env, built or named, explore with white noise, for a recurrent policy too;
    classic control's Box actions keep the color that finds MountainCarContinuous's flag; a
    given color holds."""
    cheetah, _ = parse_train_args(["--env", "HalfCheetah-v5"])
    hopper_lstm, _ = parse_train_args(["--env", "Hopper-v5", "--policy", "lstm"])
    walker, _ = parse_train_args(["--env", "BipedalWalker-v3"])
    lander_lstm, _ = parse_train_args(["--env", "LunarLanderContinuous-v3", "--policy", "lstm"])
    pendulum, _ = parse_train_args(["--env", "Pendulum-v1"])
    car, _ = parse_train_args(["--env", "MountainCarContinuous-v0"])
    pendulum_lstm, _ = parse_train_args(["--env", "Pendulum-v1", "--policy", "lstm"])
    white = (cheetah, hopper_lstm, walker, lander_lstm)
    assert [config.action_noise_color for config in white] == [0.0] * 4
    colored = (pendulum, car, pendulum_lstm)
    assert [config.action_noise_color for config in colored] == [0.5] * 3
    # the rest of the continuous preset, and a recurrent policy's pace, are unchanged
    assert dataclasses.replace(walker, env="Pendulum-v1", action_noise_color=0.5) == pendulum
    assert hopper_lstm.ppo == pendulum_lstm.ppo == lander_lstm.ppo
    given, _ = parse_train_args(["--env", "BipedalWalker-v3", "--action-noise-color", "0.5"])
    assert given.action_noise_color == 0.5


def test_a_users_recurrent_policy_gets_the_recurrent_values_the_library_lstm_gets():
    """Only library names were recognised as recurrent, so a user's recurrent policy got the
    feed-forward preset: on Pendulum-v1 its 32 minibatches exceeded the 4 sequences it trains on
    and the run was refused; on CartPole it trained with the feed-forward sizes, no value clip
    and raw rewards."""
    for env in ("Pendulum-v1", "CartPole-v1"):
        lstm, _ = parse_train_args(["--env", env, "--policy", "lstm"])
        own, _ = parse_train_args(["--env", env, "--policy", "tests.user_policy:TinyRecurrent"])
        assert dataclasses.replace(own, policy="lstm") == lstm
    feed_forward, _ = parse_train_args(["--env", "Pendulum-v1", "--policy", "mlp"])
    own, _ = parse_train_args(["--env", "Pendulum-v1", "--policy", "tests.user_policy:TinyPolicy"])
    assert dataclasses.replace(own, policy="mlp") == feed_forward
