"""Action masks: invalid actions are never sampled, scored or exported, on every engine and
policy kind, and broken masks get one clear line."""

from __future__ import annotations

import re

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from puffertrain.engine import SerialEngine, make_engine
from puffertrain.envs.masks import MaskError, MaskReader, MaskSource
from puffertrain.envs.recipe import env_recipe
from puffertrain.ppo import PolicyAdapter
from puffertrain.ppo.adapter import mask_logits
from puffertrain.trainer.loop import Trainer
from tests.conftest import run_cli


class LogitsFromObservations(nn.Module):
    """Its observations, times a weight, are its logits: any logits a test wants."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return obs * self.scale, obs.sum(-1, keepdim=True) * self.scale


@st.composite
def logits_and_masks(draw) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """Action blocks (one: Discrete), logits of a batch, and masks with at least one valid
    action per block and row."""
    blocks = draw(st.lists(st.integers(1, 6), min_size=1, max_size=3))
    batch = draw(st.integers(1, 8))
    seed = draw(st.integers(0, 2**31 - 1))
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, sum(blocks), generator=generator) * draw(st.sampled_from([1, 30]))
    parts = []
    for n in blocks:
        mask = torch.rand(batch, n, generator=generator) < draw(st.floats(0.0, 1.0))
        mask[torch.arange(batch), torch.randint(n, (batch,), generator=generator)] = True
        parts.append(mask)
    return blocks, logits, torch.cat(parts, dim=1)


def _space(blocks: list[int]) -> gym.spaces.Space:
    return gym.spaces.Discrete(blocks[0]) if len(blocks) == 1 else gym.spaces.MultiDiscrete(blocks)


def _columns(actions: torch.Tensor, blocks: list[int]) -> torch.Tensor:
    return actions.unsqueeze(-1) if len(blocks) == 1 else actions


@settings(max_examples=60, deadline=None)
@given(logits_and_masks())
def test_masked_sampling_scoring_and_entropy(case):
    blocks, logits, mask = case
    adapter = PolicyAdapter(LogitsFromObservations(), _space(blocks))
    starts = np.cumsum([0, *blocks[:-1]])
    for deterministic in (False, True):
        actions, log_probs, _, _ = adapter.act(logits, None, deterministic, None, mask)
        chosen = _columns(actions, blocks) + torch.as_tensor(starts)
        assert mask.gather(1, chosen).all(), "an action the mask forbids was chosen"
    new_log_probs, entropy, _ = adapter.evaluate(logits, actions, action_mask=mask)
    torch.testing.assert_close(new_log_probs, log_probs)
    # the forbidden actions' logits are never used: any values there change nothing
    scrambled = torch.where(mask, logits, torch.randn_like(logits) * 1e4)
    again_log_probs, again_entropy, _ = adapter.evaluate(scrambled, actions, action_mask=mask)
    torch.testing.assert_close(again_log_probs, new_log_probs)
    torch.testing.assert_close(again_entropy, entropy)
    # the entropy is the valid set's, block by block; the log-probs theirs too
    expected_entropy = torch.zeros(len(logits), dtype=torch.float64)
    expected_log_prob = torch.zeros(len(logits), dtype=torch.float64)
    columns = _columns(actions, blocks)
    for dim, (block, valid) in enumerate(
        zip(logits.split(blocks, 1), mask.split(blocks, 1), strict=True)
    ):
        for row in range(len(logits)):
            log_p = F.log_softmax(block[row][valid[row]].double(), dim=-1)
            expected_entropy[row] -= (log_p.exp() * log_p).sum()
            position = int(valid[row][: columns[row, dim]].sum())
            expected_log_prob[row] += log_p[position]
    torch.testing.assert_close(entropy.double(), expected_entropy, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(new_log_probs.double(), expected_log_prob, rtol=1e-4, atol=1e-5)


@settings(max_examples=30, deadline=None)
@given(logits_and_masks(), st.sampled_from([torch.float32, torch.bfloat16]))
def test_masked_gradients_are_finite(case, dtype):
    blocks, logits, mask = case
    logits = logits.to(dtype).requires_grad_()
    masked = mask_logits(logits, mask)
    assert masked.isfinite().all()  # the most negative finite value, never -inf
    entropy = torch.zeros((), dtype=dtype)
    for block in masked.split(blocks, 1):
        log_p = F.log_softmax(block, dim=-1)
        entropy = entropy - (log_p.exp() * log_p).sum()
        entropy = entropy + log_p.max(-1).values.sum()  # a log-prob term, as in the loss
    entropy.backward()
    assert entropy.isfinite() and logits.grad.isfinite().all()
    assert (logits.grad[~mask] == 0).all()
    # and through the adapter, with the policy under bf16 autocast
    autocast = None if dtype == torch.float32 else torch.bfloat16
    adapter = PolicyAdapter(LogitsFromObservations(), _space(blocks), autocast)
    actions, *_ = adapter.act(logits.detach().float(), None, False, None, mask)
    log_probs, entropies, _ = adapter.evaluate(logits.detach().float(), actions, action_mask=mask)
    (log_probs.sum() + entropies.sum()).backward()
    grads = [p.grad for p in adapter.parameters()]
    assert all(g is not None and g.isfinite().all() for g in grads)


TINY = ["--num-steps", "16", "--total-timesteps", "256", "--device", "cpu", "--seed", "0"]

# env, engine flags, policy: every engine and policy kind on envs that raise on an illegal action
TRAINING = {
    "info-serial-mlp": ("selection_info", ["--vec", "serial", "--num-envs", "2"], "mlp"),
    "dict-lockstep-lstm": (
        "selection_dict",
        ["--vec", "multiprocessing", "--num-envs", "2"],
        "lstm",
    ),
    "info-async-mlp": (
        "selection_info",
        ["--vec", "multiprocessing", "--num-envs", "4", "--env-batch-size", "2"],
        "mlp",
    ),
    "dict-async-lstm": (
        "selection_dict",
        ["--vec", "multiprocessing", "--num-envs", "4", "--env-batch-size", "2"],
        "lstm",
    ),
    "multidiscrete-serial-mlp": ("selection_multi", ["--vec", "serial", "--num-envs", "2"], "mlp"),
    "agents-dict-serial-shared": ("pair_dict", ["--vec", "serial", "--num-envs", "2"], "shared"),
    "agents-info-async-shared": (
        "pair_info",
        ["--vec", "multiprocessing", "--num-envs", "4", "--env-batch-size", "2"],
        "shared",
    ),
    "agents-dict-lockstep-lstm": (
        "pair_dict",
        ["--vec", "multiprocessing", "--num-envs", "2"],
        "lstm",
    ),
}


@pytest.mark.parametrize("case", sorted(TRAINING))
def test_trains_without_an_illegal_action(case, tmp_path):
    from puffertrain.cli import parse_train_args

    env, flags, policy = TRAINING[case]
    argv = ["--env", f"tests.masked_envs:{env}", "--policy", policy, *flags, *TINY]
    config, _ = parse_train_args([*argv, "--eval-interval", "2", "--eval-episodes", "2"])
    trainer = Trainer(config, tmp_path / "run", None)
    trainer.train()  # the envs raise on any illegal action, in training and greedy eval
    buffer = trainer.buffer
    assert buffer.action_masks is not None and trainer.evaluator.count >= 1
    actions = buffer.actions if buffer.actions.dim() == 3 else buffer.actions.unsqueeze(-1)
    starts = torch.as_tensor(np.cumsum([0, *trainer.adapter.nvec[:-1]]))
    assert buffer.action_masks.gather(-1, actions + starts).all()  # stored with their masks
    assert not buffer.action_masks.all()  # the masks the update scored with forbid some


def test_the_policy_sees_the_observation_without_the_mask():
    engine, _ = make_engine("serial", "tests.masked_envs:selection_dict", 2, {})
    try:
        assert engine.policy_observation_space == gym.spaces.Box(0.0, 1.0, (16,), np.float32)
        engine.reset(0)
        assert engine.action_masks.shape == (2, 8) and (engine.action_masks.sum(1) == 2).all()
    finally:
        engine.close()


def test_checkpointed_engine_state_keeps_the_masks():
    recipe = env_recipe("tests.masked_envs:selection_info", {})
    engine, restored = SerialEngine([recipe.factory] * 2), SerialEngine([recipe.factory] * 2)
    engine.reset(3)
    engine.step(engine.action_masks.argmax(1))
    restored.load_state_dict(engine.state_dict(), reseed=99)
    np.testing.assert_array_equal(restored.action_masks, engine.action_masks)
    engine.close()
    restored.close()


def _cli_error(run_dir, env: str, *flags: str) -> str:
    result = run_cli(
        "--env", f"tests.masked_envs:{env}", "--policy", "mlp", "--num-envs", "2",
        "--run-dir", str(run_dir), *TINY, *flags,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    error = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(error) == 1 and error[0].startswith("puffertrain: error: "), result.stderr
    assert "Traceback" not in result.stderr
    return error[0]


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ("empty_mask", "env 0: action mask allows no action after its step 3"),
        ("missing_mask", "env 0: info has no 'action_mask' after its step 3"),
        ("late_mask", "env 0: info['action_mask'] appeared in a step"),
    ],
)
def test_a_mask_broken_mid_run_names_the_env_and_keeps_the_run(tmp_path, env, says):
    error = _cli_error(tmp_path / "run", env, "--vec", "serial")
    assert says in error and "checkpoint" in error
    assert list((tmp_path / "run" / "checkpoints").glob("step_*.pt"))


@pytest.mark.parametrize(
    ("blocks", "mask", "says"),
    [
        ((4,), [0, 1, 0, 0], None),
        ((4,), np.array([False, False, True, False]), None),
        ((4,), [0, 0, 0, 0], "allows no action after its step 5 (all zero)"),
        ((3, 2), [0, 0, 1, 0, 1], None),
        ((3, 2), [1, 0, 0, 0, 0], "allows no action after its step 5 (all zero in a dimension)"),
        ((3, 2), np.zeros(5, dtype=np.int8), "in a dimension"),
        ((3, 2), [1, 0, 0, 1], "has 4 entries after its step 5, not the 5"),
    ],
)
def test_the_mask_reader_checks_every_dimension(blocks, mask, says):
    """A mask passes when every action dimension allows an action, as 0/1 or bools."""
    read = MaskReader(MaskSource(in_observation=False, blocks=blocks)).read
    if says is None:
        np.testing.assert_array_equal(read(None, {"action_mask": mask}, 5), np.asarray(mask))
    else:
        with pytest.raises(MaskError, match=re.escape(says)):
            read(None, {"action_mask": mask}, 5)


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ("wrong_size_mask", "has 9 entries; its action space Discrete(8) needs 8"),
        ("box_actions_mask", "no discrete actions to mask"),
    ],
)
def test_a_mask_no_action_space_fits_is_refused_at_start(tmp_path, env, says):
    assert says in _cli_error(tmp_path / "run", env)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("kind", ["onnx", "torchscript"])
def test_the_exported_graph_takes_the_mask(kind, tmp_path):
    from policies.registry import POLICIES
    from puffertrain.export import export_policy, graph_names

    if kind == "onnx":
        ort = pytest.importorskip("onnxruntime", reason="the export extra is not installed")
    space, actions = gym.spaces.Box(-1.0, 1.0, (6,), np.float32), gym.spaces.Discrete(5)
    torch.manual_seed(0)
    adapter = PolicyAdapter(POLICIES["lstm"].cls(space, actions), actions).eval()
    path = tmp_path / f"policy.{kind}"
    export_policy(adapter, space, False, path, kind, mask_size=5)
    inputs = graph_names(adapter, False, masked=True)[0]
    assert inputs == ["obs", "action_mask", "state_h", "state_c"]
    obs = torch.randn(3, 6)
    mask = torch.tensor([[1, 0, 0, 1, 0], [0, 0, 0, 0, 1], [1, 1, 1, 1, 1]], dtype=torch.bool)
    state = adapter.initial_state(3, torch.device("cpu"))
    arrays = [obs.numpy(), mask.numpy(), *(part.numpy() for part in state)]
    if kind == "onnx":
        session = ort.InferenceSession(str(path))
        assert [i.name for i in session.get_inputs()] == inputs
        logits = torch.as_tensor(session.run(None, dict(zip(inputs, arrays, strict=True)))[0])
    else:
        logits = torch.jit.load(str(path))(obs, mask, *state)[0]
    with torch.no_grad():
        (expected,), _ = adapter.distribution_parameters(adapter.policy.forward_step(obs, state)[0])
    torch.testing.assert_close(logits, mask_logits(expected, mask))
    assert (logits[~mask] == torch.finfo(torch.float32).min).all()
    assert mask.gather(1, logits.argmax(-1, keepdim=True)).all()  # greedy picks a valid one


def test_a_masked_run_resumes_exactly(tmp_path):
    """The checkpoint keeps each row's mask with its observation (and the env's own state), so
    a resumed masked run ends identical to an uninterrupted one."""
    from puffertrain.cli import main
    from tests.test_resume import final_policy, resume_after_a_crash

    run_dir = tmp_path / "run"
    main(
        [
            "--env", "tests.masked_envs:selection_info", "--policy", "mlp", "--vec", "serial",
            "--num-envs", "2", "--checkpoint-interval", "2", "--keep-checkpoints", "10",
            "--run-dir", str(run_dir), *TINY,
        ]
    )  # fmt: skip
    resume_after_a_crash(run_dir, tmp_path / "crashed", 4)
    expected, resumed = final_policy(run_dir), final_policy(tmp_path / "crashed")
    for name, tensor in expected.items():
        assert torch.equal(tensor, resumed[name]), name
