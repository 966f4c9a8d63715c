"""Multi-agent envs (PettingZoo parallel API): agents as rows, dead-agent masks, policies."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from policies import IndependentMultiAgentPolicy, SharedLSTMPolicy, takes_agent_ids
from puffertrain.buffer import Minibatch
from puffertrain.config import PPOConfig, TrainConfig
from puffertrain.engine import SerialEngine, multiprocessing_engine
from puffertrain.envs import env_factory
from puffertrain.envs.flatten import with_flat_observations
from puffertrain.envs.multiagent import AgentRows
from puffertrain.policy_loader import resolve_policy_name
from puffertrain.ppo import PolicyAdapter, ppo_loss
from puffertrain.rollout.rewards import RewardNormalizer
from puffertrain.trainer.logger import RunLogger
from puffertrain.trainer.loop import Trainer
from tests.test_resume import scalars as tensorboard_scalars

SPREAD = "mpe2.simple_spread_v3:parallel_env"


def _early_exit_factory():
    return with_flat_observations(env_factory("tests.envs:early_exit"))


@pytest.mark.parametrize("action_space", [gym.spaces.Discrete(4), gym.spaces.Box(-1, 1, (2,))])
def test_independent_rows_come_back_in_input_order(action_space):
    torch.manual_seed(0)
    policy = IndependentMultiAgentPolicy(gym.spaces.Box(-1, 1, (6,)), action_space, num_agents=5)
    obs = torch.randn(23, 6)
    agent_ids = torch.randint(0, 5, (23,))
    agent_ids[:5] = torch.arange(5).flip(0)  # every agent present, out of order
    outputs = policy(obs, agent_ids)
    for row in range(23):
        alone = policy.forward_agent(obs[row : row + 1], int(agent_ids[row]))
        for batched, single in zip(outputs, alone, strict=True):
            torch.testing.assert_close(batched[row], single[0], rtol=1e-5, atol=1e-6)
    other = policy(obs, (agent_ids + 1) % 5)[0]
    assert not torch.allclose(other, outputs[0])  # the agents' networks differ


def test_agents_become_padded_rows_and_dead_agents_are_masked():
    envs = SerialEngine([_early_exit_factory] * 2)
    assert (envs.num_rows, envs.agents_per_env) == (4, 2)
    assert envs.agent_names == ("stayer", "leaver")
    assert envs.single_observation_space.shape == (3,)  # padded to the longest
    obs = envs.reset(seed=0)
    np.testing.assert_array_equal(obs[:2], [[0, 1, 0], [0, 2, 3]])  # stayer's zero padding
    episodes, alive, dead_terminated = [], [], []
    for step in range(1, 7):
        result = envs.step(np.zeros(4, dtype=np.int64))  # EarlyExit raises on a dead agent
        alive.append(result.alive[:2].tolist())
        dead_terminated.append(bool(result.terminations[1]))
        if not result.alive[1] and result.alive[0]:
            np.testing.assert_array_equal(result.observations[1], 0)
        if step == 2:  # leaver's own end, with what it saw last
            np.testing.assert_array_equal(result.final_observations[1], [2, 2, 3])
        if step == 5:  # the game ends: stayer truncated, both rows start a new game
            assert result.truncations[0] and not result.terminations[0]
            np.testing.assert_array_equal(result.final_observations[0], [5, 1, 0])
            np.testing.assert_array_equal(result.observations[:2], [[0, 1, 0], [0, 2, 3]])
        episodes += result.episodes
    live, dead = [True, True], [True, False]
    assert alive == [live, dead, dead, dead, live, live]
    assert dead_terminated[:5] == [False, True, True, True, True]
    assert [(e.env_index, e.score, e.length, e.agent_scores) for e in episodes] == [
        (0, 12.5, 5, {"stayer": 5.0, "leaver": 20.0}),
        (1, 12.5, 5, {"stayer": 5.0, "leaver": 20.0}),
    ]


def test_an_agent_leaving_without_a_flag_is_cut_off_not_continued():
    envs = SerialEngine([lambda: with_flat_observations(env_factory("tests.envs:silent_exit"))])
    envs.reset(seed=0)
    envs.step(np.zeros(2, dtype=np.int64))
    result = envs.step(np.zeros(2, dtype=np.int64))
    assert result.truncations[1] and not result.terminations[1] and not result.alive[1]
    np.testing.assert_array_equal(result.final_observations[1], [2, 2, 3])


def test_multiprocessing_matches_serial_for_agents():
    serial = SerialEngine([_early_exit_factory] * 4)
    workers = multiprocessing_engine([_early_exit_factory] * 4, num_workers=1)
    batched = multiprocessing_engine([_early_exit_factory] * 4, num_workers=2, batch_size=2)
    try:
        assert workers.num_rows == batched.num_rows == 8
        np.testing.assert_array_equal(serial.reset(3), workers.reset(3))
        batched.reset(3)
        actions = np.zeros(8, dtype=np.int64)
        steps = np.zeros(8, dtype=np.int64)
        for _ in range(12):
            a, b = serial.step(actions), workers.step(actions)
            for field in ("observations", "rewards", "terminations", "truncations", "alive"):
                np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
            assert a.episodes == b.episodes
        batched.send(actions, np.arange(8))
        for _ in range(12):
            result = batched.recv()
            assert len(result.row_ids) == 4  # whole envs: both agents of each
            steps[result.row_ids] += 1
            batched.send(actions[: len(result.row_ids)], result.row_ids)
        assert steps.sum() == 48 and set(steps[::2] - steps[1::2]) == {0}
        for _ in range(2):
            batched.recv()
    finally:
        workers.close()
        batched.close()


def test_masked_loss_equals_the_loss_on_live_rows():
    torch.manual_seed(0)
    space = gym.spaces.Box(-1, 1, (4,))
    action_space = gym.spaces.Discrete(3)
    agent = PolicyAdapter(
        IndependentMultiAgentPolicy(space, action_space, num_agents=2), action_space
    )
    rows = 12
    batch = Minibatch(
        observations=torch.randn(rows, 4),
        actions=torch.randint(0, 3, (rows,)),
        log_probs=torch.randn(rows) - 1.0,
        advantages=torch.randn(rows),
        returns=torch.randn(rows),
        values=torch.randn(rows),
        agent_ids=torch.arange(rows) % 2,
        mask=(torch.arange(rows) % 3 != 0).float(),
    )
    live = batch.mask.bool()
    only_live = Minibatch(
        *(getattr(batch, f)[live] for f in ("observations", "actions", "log_probs")),
        *(getattr(batch, f)[live] for f in ("advantages", "returns", "values")),
        agent_ids=batch.agent_ids[live],
    )
    garbage = Minibatch(**{**vars(batch), "advantages": batch.advantages + 1e3 * (~live)})
    config = PPOConfig()
    loss, stats = ppo_loss(agent, batch, config)
    expected, expected_stats = ppo_loss(agent, only_live, config)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(ppo_loss(agent, garbage, config)[0], expected)
    for key in stats:
        torch.testing.assert_close(stats[key], expected_stats[key])


def test_shared_lstm_with_agent_ids_scores_sequences_as_it_stepped():
    torch.manual_seed(0)
    policy = SharedLSTMPolicy(
        gym.spaces.Box(-1, 1, (5,)), gym.spaces.Discrete(3), num_agents=3, agent_ids=True
    )
    steps, batch = 6, 4
    obs = torch.randn(steps, batch, 5)
    agent_ids = (torch.arange(batch) % 3).expand(steps, batch)
    starts = torch.zeros(steps, batch, dtype=torch.bool)
    starts[3, 1] = True
    state = policy.initial_state(batch)
    stepped = []
    for t in range(steps):
        state = tuple(part * (~starts[t]).float().unsqueeze(1) for part in state)
        outputs, state = policy.forward_step(obs[t], state, agent_ids[t])
        stepped.append(outputs[0])
    sequence = policy.forward_sequence(obs, policy.initial_state(batch), starts, agent_ids)
    torch.testing.assert_close(sequence[0], torch.cat(stepped), rtol=1e-5, atol=1e-5)
    blind = policy.forward_sequence(obs, policy.initial_state(batch), starts, agent_ids * 0)
    assert not torch.allclose(blind[0], sequence[0])  # the ids reach the network


def _train(tmp_path, policy: str, kwargs: dict | None = None, **overrides) -> Trainer:
    config = TrainConfig(
        env="tests.envs:two_roles",
        policy=policy,
        policy_kwargs=json.dumps(kwargs or {}),
        total_timesteps=24_576,
        num_envs=8,
        num_steps=64,
        vec="serial",
        seed=1,
        ppo=PPOConfig(learning_rate=3e-3, num_minibatches=4, update_epochs=4, ent_coef=0.0),
        **overrides,
    )
    trainer = Trainer(config, tmp_path / policy, None)
    trainer.train()
    return trainer


def _greedy_score(trainer: Trainer) -> float:
    """Return of one episode of TwoRoles with each agent's most likely action."""
    obs = torch.as_tensor(trainer.engine.observations[:2])
    with torch.no_grad():
        actions, *_ = trainer.adapter.act(obs, None, True, torch.arange(2))
    return 8.0 * float(actions.tolist() == [0, 1])


def test_agents_that_must_act_differently(tmp_path):
    independent = _train(tmp_path, "independent")
    told = _train(tmp_path, "shared", {"agent_ids": True})
    blind = _train(tmp_path, "shared")
    assert _greedy_score(independent) == 8.0
    assert _greedy_score(told) == 8.0
    assert _greedy_score(blind) == 0.0  # one network, same observation: the same action


@pytest.mark.parametrize("vec", ["serial", "multiprocessing"])
def test_simple_spread_trains_and_logs_each_agent(tmp_path, cli, vec):
    run = tmp_path / vec
    result = cli(
        "--env", SPREAD, "--vec", vec, "--num-envs", "4", "--num-steps", "64",
        "--total-timesteps", "3072", "--run-dir", str(run),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    scalars = tensorboard_scalars(run)
    for agent in ("agent_0", "agent_1", "agent_2"):
        assert len(scalars[f"agents/{agent}/episodic_return"]) >= 8  # 25-step episodes
    means = dict(scalars["charts/episodic_return"])
    for step, score in scalars["agents/agent_0/episodic_return"]:
        assert np.isfinite(score) and step in means
    lr_steps = [step for step, _ in scalars["charts/learning_rate"]]
    assert lr_steps == [768, 1536, 2304, 3072]  # 4 envs × 3 agents × 64 steps an update


def test_lstm_on_agents_resumes_and_evaluates(tmp_path, cli):
    run = tmp_path / "run"
    common = ("--env", SPREAD, "--policy", "lstm", "--num-envs", "2", "--num-steps", "32")
    first = cli(*common, "--total-timesteps", "384", "--run-dir", str(run))
    assert first.returncode == 0, first.stderr
    resumed = cli("--resume", str(run), "--total-timesteps", "768")
    assert resumed.returncode == 0, resumed.stderr
    steps = [step for step, _ in tensorboard_scalars(run)["charts/learning_rate"]]
    assert steps == [192, 384, 576, 768]
    evaluated = cli("eval", "--checkpoint", str(run), "--episodes", "2")
    assert evaluated.returncode == 0, evaluated.stderr
    assert "agent_0" in evaluated.stdout and "over 2 games" in evaluated.stdout


def test_different_action_spaces_are_refused(cli):
    result = cli("--env", "mpe2.simple_speaker_listener_v4:parallel_env", "--total-timesteps", "8")
    assert result.returncode != 0
    assert "same action space" in result.stderr and "Traceback" not in result.stderr


def test_logger_writes_each_agents_return(tmp_path):
    from puffertrain.engine import Episode

    with RunLogger(tmp_path, {}, 10, 0) as logger:
        logger.episode(5, Episode(0, 1.5, 3, {"a": 1.0, "b": 2.0}))
    scalars = tensorboard_scalars(tmp_path)
    assert scalars["agents/a/episodic_return"] == [(5, 1.0)]
    assert scalars["agents/b/episodic_return"] == [(5, 2.0)]
    assert scalars["charts/episodic_return"] == [(5, 1.5)]


class _Spaces:
    """Just enough of a ParallelEnv to build :class:`AgentRows` from its spaces."""

    def __init__(self, *observation_spaces: gym.spaces.Space) -> None:
        self.possible_agents = [f"agent_{i}" for i in range(len(observation_spaces))]
        self._spaces = dict(zip(self.possible_agents, observation_spaces, strict=True))

    def observation_space(self, agent: str) -> gym.spaces.Space:
        return self._spaces[agent]

    def action_space(self, agent: str) -> gym.spaces.Space:
        return gym.spaces.Discrete(2)


def test_same_shapes_with_other_bounds_keep_their_shape():
    rows = AgentRows(
        _Spaces(
            gym.spaces.Box(0, 255, (3, 8, 8), np.uint8),
            gym.spaces.Box(0, 200, (3, 8, 8), np.uint8),
        )
    )
    assert not rows.padded
    assert rows.observation_space == gym.spaces.Box(0, 255, (3, 8, 8), np.uint8)
    padded = AgentRows(
        _Spaces(gym.spaces.Box(-1, 1, (2,), np.float32), gym.spaces.Box(0, 5, (2, 2), np.int64))
    )
    assert padded.observation_space.shape == (4,)
    assert padded.observation_space.dtype == np.float64
    np.testing.assert_array_equal(padded.observation_space.low, [-1, -1, 0, 0])


def test_aec_envs_are_refused_with_the_parallel_form_named(cli):
    result = cli("--env", "mpe2.simple_spread_v3:env", "--total-timesteps", "8")
    assert result.returncode != 0
    assert "AEC" in result.stderr and "parallel_env" in result.stderr
    assert "Traceback" not in result.stderr


def test_auto_takes_multi_input_for_structured_agent_observations():
    space = gym.spaces.Dict({"a": gym.spaces.Box(-1, 1, (2,))})
    assert resolve_policy_name("auto", space, multi_agent=True) == "multi_input"
    assert resolve_policy_name("auto", gym.spaces.Box(-1, 1, (2,)), True) == "shared"
    assert resolve_policy_name("lstm", gym.spaces.Box(-1, 1, (2,)), True) == "shared_lstm"


def test_dead_rows_do_not_count_in_the_reward_statistics():
    with_dead = RewardNormalizer(4, gamma=0.9)
    live_only = RewardNormalizer(2, gamma=0.9)
    acting = np.array([True, False, True, False])
    for step in range(5):
        rewards = np.array([1.0 + step, 0.0, 3.0, 0.0])
        ended = np.array([False, True, False, True])
        with_dead(rewards, np.arange(4), ended, acting)
        live_only(rewards[acting], np.arange(2), ended[acting])
    assert (with_dead.mean, with_dead.var, with_dead.count) == pytest.approx(
        (live_only.mean, live_only.var, live_only.count)
    )


def test_a_recurrent_policy_says_through_forward_step_whether_it_takes_agent_ids():
    class StepsWithoutIds(torch.nn.Module):
        def initial_state(self, batch_size, device="cpu"):
            return (torch.zeros(batch_size, 1),)

        def forward_step(self, observations, state):
            return (observations, observations[:, :1]), state

        def forward_sequence(self, observations, state, episode_starts):
            return observations, observations[:, :1]

        def forward(self, observations, state=None, agent_ids=None):
            return self.forward_step(observations, state)

    assert not takes_agent_ids(StepsWithoutIds())
    shared = SharedLSTMPolicy(gym.spaces.Box(-1, 1, (2,)), gym.spaces.Discrete(2), agent_ids=True)
    assert takes_agent_ids(shared)
