"""Colored action noise: standard normal at every step, correlated across steps, used by the
training rollout row by row and step by step, and resumed exactly."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from puffertrain.buffer import RolloutBuffer
from puffertrain.cli import main
from puffertrain.engine import SerialEngine, multiprocessing_engine
from puffertrain.envs import env_factory
from puffertrain.ppo import PolicyAdapter
from puffertrain.rollout import Rollout
from puffertrain.rollout.noise import colored_noise
from tests.conftest import run_cli
from tests.test_multiprocessing import no_orphans  # noqa: F401 (a fixture)
from tests.test_normalization import RESUME_ARGS, RESUME_ITERATIONS
from tests.test_resume import assert_same_run, resume_after_a_crash

CPU = torch.device("cpu")


def _lag_one_correlation(noise: torch.Tensor) -> float:
    return float((noise[:, 1:] * noise[:, :-1]).mean())


@pytest.mark.parametrize("steps", [64, 63])  # an even length has a Nyquist component
@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_every_step_is_standard_normal(beta, steps):
    torch.manual_seed(0)
    noise = colored_noise(beta, 20_000, steps, 1)[..., 0]
    # 20,000 draws per step: the std of a step's variance estimate is 0.01, of its mean 0.007
    assert noise.shape == (20_000, steps)
    assert noise.mean(0).abs().max() < 0.04
    assert (noise.var(0) - 1).abs().max() < 0.06


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_the_shortest_rollouts_get_finite_standard_normal_noise(steps):
    torch.manual_seed(0)
    noise = colored_noise(1.0, 20_000, steps, 3)
    assert noise.shape == (20_000, steps, 3) and noise.isfinite().all()
    assert (noise.var((0, 2)) - 1).abs().max() < 0.05


def test_neighbouring_steps_correlate_more_the_redder_the_noise():
    torch.manual_seed(0)
    lag_one = [_lag_one_correlation(colored_noise(b, 2_000, 256, 2)) for b in (0, 0.5, 1, 2)]
    assert abs(lag_one[0]) < 0.02  # white
    assert lag_one[0] + 0.1 < lag_one[1] < lag_one[2] < lag_one[3]
    assert lag_one[3] > 0.9  # a random walk's neighbours are nearly equal


def test_rows_and_action_dimensions_are_independent():
    torch.manual_seed(0)
    noise = colored_noise(1.0, 4_000, 128, 2)
    across_dims = (noise[..., 0] * noise[..., 1]).mean()
    across_rows = (noise[::2] * noise[1::2]).mean()
    assert abs(float(across_dims)) < 0.02 and abs(float(across_rows)) < 0.02


class UnitGaussian(nn.Module):
    """Mean 0 and std 1 everywhere: every sampled action is the noise itself."""

    def __init__(self, action_dims: int) -> None:
        super().__init__()
        self.action_dims = action_dims
        self.actor_logstd = nn.Parameter(torch.zeros(action_dims))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(len(obs), self.action_dims), torch.zeros(len(obs), 1)


def _collect(engine, noise_color: float, steps: int = 40) -> tuple[Rollout, RolloutBuffer]:
    action_space = engine.single_action_space
    adapter = PolicyAdapter(UnitGaussian(action_space.shape[0]), action_space)
    rollout = Rollout(engine, adapter, CPU, noise_color=noise_color)
    obs_space = engine.single_observation_space
    buffer = RolloutBuffer(steps, engine.num_rows, obs_space, action_space, CPU)
    rollout.reset(0)
    torch.manual_seed(0)
    rollout.collect(buffer)
    return rollout, buffer


def test_the_training_rollout_samples_each_rows_own_noise_in_order(no_orphans):  # noqa: F811
    """Each row's stored actions are its own noise sequence, step by step, with async batches
    coming back in any order as with every row at once."""
    factory = env_factory("Pendulum-v1")
    serial = SerialEngine([factory] * 4)
    rollout, buffer = _collect(serial, 1.0)
    expected = rollout.noise.transpose(0, 1)  # [steps, rows, dims], as the buffer holds them
    torch.testing.assert_close(buffer.actions, expected, rtol=0, atol=0)
    assert _lag_one_correlation(rollout.noise) > 0.3
    workers = multiprocessing_engine([factory] * 4, num_workers=2, batch_size=2)
    try:
        rollout, buffer = _collect(workers, 1.0)
        torch.testing.assert_close(buffer.actions, rollout.noise.transpose(0, 1), rtol=0, atol=0)
    finally:
        workers.close()


def test_white_noise_draws_every_step_afresh():
    rollout, buffer = _collect(SerialEngine([env_factory("Pendulum-v1")] * 4), 0.0, steps=200)
    assert rollout.noise is None
    actions = buffer.actions.transpose(0, 1)  # [rows, steps, dims]
    assert abs(_lag_one_correlation(actions)) < 0.1


def test_a_run_with_colored_noise_resumes_exactly(tmp_path):
    args = [*RESUME_ARGS, "--action-noise-color", "1.0"]
    uninterrupted = tmp_path / "uninterrupted"
    result = run_cli(*args, "--run-dir", str(uninterrupted))
    assert result.returncode == 0, result.stderr
    resume_after_a_crash(uninterrupted, tmp_path / "crashed", 4)
    assert_same_run(tmp_path / "crashed", uninterrupted, updates=RESUME_ITERATIONS)


def test_a_color_out_of_range_is_refused(capsys, tmp_path):
    run_dir = tmp_path / "r"
    with pytest.raises(SystemExit) as exit_info:
        main(["--env", "Pendulum-v1", "--action-noise-color", "3", "--run-dir", str(run_dir)])
    assert exit_info.value.code == 2
    assert "--action-noise-color" in capsys.readouterr().err
    assert not run_dir.exists()
