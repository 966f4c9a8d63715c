"""Export: ONNX and TorchScript graphs give the policy's own outputs, for every policy kind."""

from __future__ import annotations

import re
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

from policies.flatten import flatten_observation, travels_as_bytes
from policies.registry import POLICIES
from puffertrain.envs.recipe import env_recipe
from puffertrain.errors import UserError
from puffertrain.export import ExportedPolicy, export_policy, graph_names
from puffertrain.ppo import PolicyAdapter
from puffertrain.trainer.restore import restore
from tests.conftest import REPO_ROOT

ort = pytest.importorskip("onnxruntime", reason="the export extra is not installed")

VECTOR = gym.spaces.Box(-1.0, 1.0, (6,), np.float32)
FRAMES = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
DICT = gym.spaces.Dict(
    {
        "grid": gym.spaces.Box(0, 255, (3, 8, 8), np.uint8),
        "extra": gym.spaces.Discrete(5),
        "vector": gym.spaces.Box(-1e6, 1e6, (3,), np.float32),
    }
)
TUPLE = gym.spaces.Tuple((gym.spaces.Discrete(3), gym.spaces.MultiBinary(4), VECTOR))
DISCRETE = gym.spaces.Discrete(4)
BOX = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

# policy, its observation space, its action space, its keyword arguments
KINDS = {
    "mlp": ("mlp", VECTOR, DISCRETE, {}),
    "separate_mlp": ("separate_mlp", VECTOR, DISCRETE, {}),
    "cnn": ("cnn", FRAMES, DISCRETE, {}),
    "lstm": ("lstm", VECTOR, DISCRETE, {}),
    "continuous": ("continuous", VECTOR, BOX, {}),
    "attention": ("attention", VECTOR, DISCRETE, {}),
    "residual": ("residual", VECTOR, DISCRETE, {}),
    "shared": ("shared", VECTOR, DISCRETE, {"num_agents": 3}),
    "shared_ids": ("shared", VECTOR, DISCRETE, {"num_agents": 3, "agent_ids": True}),
    "independent": ("independent", VECTOR, DISCRETE, {"num_agents": 3}),
    "independent_box": ("independent", VECTOR, BOX, {"num_agents": 3}),
    "dict": ("multi_input", DICT, DISCRETE, {}),
    "tuple": ("multi_input", TUPLE, DISCRETE, {}),
    "multi_discrete": ("mlp", VECTOR, gym.spaces.MultiDiscrete([3, 2]), {}),
    # a bare Discrete observation (FrozenLake, CliffWalking) travels as a byte row too
    "discrete_observations": ("mlp", gym.spaces.Discrete(8), DISCRETE, {}),
    "multi_binary_observations": ("mlp", gym.spaces.MultiBinary(5), DISCRETE, {}),
}


def _adapter(kind: str) -> tuple[PolicyAdapter, gym.spaces.Space, bool]:
    name, space, actions, kwargs = KINDS[kind]
    torch.manual_seed(0)
    policy = POLICIES[name].cls(space, actions, **kwargs)
    adapter = PolicyAdapter(policy, actions).eval()
    return adapter, space, adapter.takes_agent_ids


def _observations(kind: str, batch: int) -> np.ndarray:
    space = KINDS[kind][1]
    space.seed(1)
    rows = [space.sample() for _ in range(batch)]
    if travels_as_bytes(space):
        rows = [flatten_observation(row, space) for row in rows]
    return np.stack(rows)


def _inputs(adapter: PolicyAdapter, obs: np.ndarray, takes_ids: bool) -> list[np.ndarray]:
    inputs = [obs]
    if takes_ids:
        inputs.append(np.arange(len(obs)) % 3)
    if adapter.recurrent:
        state = adapter.initial_state(len(obs), torch.device("cpu"))
        inputs += [torch.randn_like(part).numpy() for part in state]
    return inputs


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_onnx_and_torchscript_match_the_policy(kind, tmp_path):
    adapter, space, takes_ids = _adapter(kind)
    reference = ExportedPolicy(adapter, takes_ids).eval()
    export_policy(adapter, space, takes_ids, tmp_path / "policy.pt", "torchscript")
    export_policy(adapter, space, takes_ids, tmp_path / "policy.onnx", "onnx")
    session = ort.InferenceSession(str(tmp_path / "policy.onnx"))
    input_names, output_names = graph_names(adapter, takes_ids)
    assert [i.name for i in session.get_inputs()] == input_names
    assert [o.name for o in session.get_outputs()] == output_names
    graphs = {
        "torchscript": torch.jit.load(str(tmp_path / "policy.pt")),
        "onnx": lambda *arrays: session.run(None, dict(zip(input_names, arrays, strict=True))),
    }
    for batch in (1, 5):
        inputs = _inputs(adapter, _observations(kind, batch), takes_ids)
        tensors = [torch.from_numpy(array) for array in inputs]
        with torch.no_grad():
            expected = [output.numpy() for output in reference(*tensors)]
            scripted = [output.numpy() for output in graphs["torchscript"](*tensors)]
        outputs = {"torchscript": scripted, "onnx": graphs["onnx"](*inputs)}
        for kind_of_graph, actual in outputs.items():
            for name, got, want in zip(output_names, actual, expected, strict=True):
                np.testing.assert_allclose(
                    got, want, rtol=1e-5, atol=1e-5, err_msg=f"{kind_of_graph} {name}"
                )


def test_a_recurrent_export_steps_a_sequence_with_a_reset_like_the_update(tmp_path):
    adapter, space, _ = _adapter("lstm")
    export_policy(adapter, space, False, tmp_path / "lstm.onnx", "onnx")
    session = ort.InferenceSession(str(tmp_path / "lstm.onnx"))
    steps, batch = 20, 3
    obs = np.stack([_observations("lstm", batch) for _ in range(steps)])
    starts = np.zeros((steps, batch), dtype=bool)
    starts[[0, 9], [1, 1]] = True  # a new episode at step 9 of row 1
    state = [np.zeros((batch, adapter.policy.hidden_size), np.float32) for _ in range(2)]
    logits = []
    for t in range(steps):
        state = [np.where(starts[t][:, None], 0.0, part).astype(np.float32) for part in state]
        out, _, *state = session.run(
            None, {"obs": obs[t], "state_h": state[0], "state_c": state[1]}
        )
        logits.append(out)
    zero = adapter.initial_state(batch, torch.device("cpu"))
    with torch.no_grad():
        expected, _ = adapter.policy.forward_sequence(
            torch.from_numpy(obs), zero, torch.from_numpy(starts)
        )
    np.testing.assert_allclose(np.concatenate(logits), expected.numpy(), rtol=1e-5, atol=1e-5)


class SortingPolicy(torch.nn.Module):
    """A user policy with an op ONNX cannot translate (a stable sort)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(6, 5)

    def forward(self, observations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.linear(torch.sort(observations, stable=True).values)
        return out[:, :4], out[:, 4]


def test_a_policy_with_an_untranslatable_op_gets_one_line_naming_it(tmp_path):
    adapter = PolicyAdapter(SortingPolicy(), DISCRETE).eval()
    with pytest.raises(UserError, match=re.escape("ONNX has no translation of aten.sort.stable")):
        export_policy(adapter, VECTOR, False, tmp_path / "policy.onnx", "onnx")
    assert not (tmp_path / "policy.onnx").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--checkpoint", "missing_run"], "does not exist"),
        (["--checkpoint", "tests/envs.py"], "corrupt or not a puffertrain checkpoint"),
        (["--checkpoint", "tests/data", "--output", "no/such/dir/p.onnx"], "does not exist"),
        (["--checkpoint", "tests/data", "--output", "tests"], "is a directory; name the file"),
    ],
)
def test_bad_export_input_gets_one_line(args, message, cli):
    if "--output" not in args:
        args = [*args, "--output", "p.onnx"]
    result = cli("export", *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_onnx_greedy_play_scores_as_eval_deterministic(tmp_path, cli):
    run_dir = tmp_path / "run"
    train = ["--env", "CartPole-v1", "--num-envs", "4", "--total-timesteps", "2048"]
    assert cli(*train, "--run-dir", str(run_dir)).returncode == 0
    exported = cli("export", "--checkpoint", str(run_dir), "--output", str(tmp_path / "p.onnx"))
    assert exported.returncode == 0, exported.stderr
    evaluated = cli(
        "eval", "--checkpoint", str(run_dir), "--episodes", "3", "--deterministic", "--seed", "5"
    )
    played = subprocess.run(
        [
            sys.executable,
            "examples/deploy_onnx.py",
            str(tmp_path / "p.onnx"),
            "--env",
            "CartPole-v1",
            "--episodes",
            "3",
            "--seed",
            "5",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    eval_scores = re.findall(r"game \d+: score (\S+),", evaluated.stdout)
    onnx_scores = re.findall(r"episode \d+: (\S+)", played.stdout)
    assert len(eval_scores) == 3 and eval_scores == onnx_scores


def test_a_dict_observation_run_is_exported_and_played(tmp_path, cli):
    """A run on a Dict-observation env, exported by the CLI, played on the env's own
    observations (flattened to the graph's byte rows): the graph's outputs are the
    checkpoint's policy's at every step."""
    run_dir, graph = tmp_path / "run", tmp_path / "policy.onnx"
    train = ["--env", "tests.envs:image_vector", "--policy", "multi_input", "--vec", "serial"]
    train += ["--num-envs", "2", "--num-steps", "16", "--total-timesteps", "64"]
    assert cli(*train, "--run-dir", str(run_dir)).returncode == 0
    exported = cli("export", "--checkpoint", str(run_dir), "--output", str(graph))
    assert exported.returncode == 0, exported.stderr
    restored = restore(run_dir, "--checkpoint")
    restored.engine.close()
    adapter = PolicyAdapter(restored.policy, restored.engine.single_action_space).eval()
    policy = ExportedPolicy(adapter, False).eval()
    session = ort.InferenceSession(str(graph))
    env = restored.recipe.factory()
    obs, _ = env.reset(seed=0)
    for _ in range(30):
        row = flatten_observation(obs, env.observation_space)[None]
        logits, value = session.run(None, {"obs": row})
        with torch.no_grad():
            expected = [output.numpy() for output in policy(torch.from_numpy(row))]
        np.testing.assert_allclose(logits, expected[0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(value, expected[1], rtol=1e-5, atol=1e-5)
        obs, _, terminated, truncated, _ = env.step(int(logits[0].argmax()))
        if terminated or truncated:
            obs, _ = env.reset()


def test_the_deploy_example_builds_atari_frames_as_eval_does():
    """examples/deploy_onnx.py --atari rebuilds the recipe without puffertrain: the same seed
    and actions give the same frames as the env `puffertrain eval` plays (FIRE on reset too)."""
    sys.path.insert(0, str(REPO_ROOT / "examples"))
    try:
        from deploy_onnx import make_env
    finally:
        sys.path.remove(str(REPO_ROOT / "examples"))
    ours = env_recipe("ALE/Breakout-v5", {}, episodic_life=False).factory()
    theirs = make_env("ALE/Breakout-v5", atari=True)
    frames = [ours.reset(seed=3)[0]], [theirs.reset(seed=3)[0]]
    for action in [2, 3, 3, 0, 2, 2, 1, 3] * 4:
        frames[0].append(ours.step(action)[0])
        frames[1].append(theirs.step(action)[0])
    assert all(np.array_equal(a, b) for a, b in zip(*frames, strict=True))


def test_an_exporter_message_reaches_the_user_without_its_colour_codes():
    from puffertrain.export import _reason

    error = RuntimeError("Failed to export. \x1b[96mThis is step 1/3\x1b[0m of exporting.\nmore")
    assert _reason(error) == "Failed to export. This is step 1/3 of exporting."


def test_an_onnx_export_is_one_file(tmp_path):
    """torch's exporter wrote the weights to a .onnx.data file beside the graph by default, so
    a deployed policy.onnx copied alone failed to load."""
    adapter, space, takes_ids = _adapter("cnn")
    export_policy(adapter, space, takes_ids, tmp_path / "policy.onnx", "onnx")
    assert [path.name for path in tmp_path.iterdir()] == ["policy.onnx"]


def test_the_deploy_example_says_in_one_line_what_it_cannot_play(tmp_path, cli):
    """On FrozenLake it fed the raw state where the graph takes a byte row and died in
    onnxruntime ('Invalid rank for input: obs')."""
    run_dir, graph = tmp_path / "run", tmp_path / "p.onnx"
    train = ["--env", "FrozenLake-v1", "--num-envs", "2", "--num-steps", "16"]
    assert cli(*train, "--total-timesteps", "32", "--run-dir", str(run_dir)).returncode == 0
    assert cli("export", "--checkpoint", str(run_dir), "--output", str(graph)).returncode == 0
    played = subprocess.run(
        [sys.executable, "examples/deploy_onnx.py", str(graph), "--env", "FrozenLake-v1"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert played.returncode == 1 and "Traceback" not in played.stderr
    assert played.stderr.startswith("deploy_onnx.py: the env's Discrete observations go in as")


def test_an_export_never_replaces_a_checkpoint_and_a_failed_one_leaves_the_old_file(tmp_path, cli):
    """`--output` of the run's newest checkpoint wrote the graph over it (exit 0; the run
    could no longer resume); an export that failed could leave half a file where the old
    one was."""
    from puffertrain.trainer.checkpoint import list_checkpoints

    run_dir = tmp_path / "run"
    train = ["--env", "CartPole-v1", "--num-envs", "2", "--num-steps", "16"]
    assert cli(*train, "--total-timesteps", "32", "--run-dir", str(run_dir)).returncode == 0
    (newest,) = list_checkpoints(run_dir)
    before = newest.read_bytes()
    result = cli("export", "--checkpoint", str(run_dir), "--output", str(newest))
    assert result.returncode == 2 and f"--output '{newest}' is a checkpoint" in result.stderr
    assert newest.read_bytes() == before
    old = tmp_path / "policy.onnx"
    old.write_bytes(b"the previous export")
    adapter = PolicyAdapter(SortingPolicy(), DISCRETE).eval()
    with pytest.raises(UserError):
        export_policy(adapter, VECTOR, False, old, "onnx")
    assert old.read_bytes() == b"the previous export" and list(tmp_path.glob(".*")) == []


def test_an_export_says_the_dtype_its_graph_takes(tmp_path, cli):
    """A float64 env's graph takes float32 (as traced), where the export said float64."""
    run_dir = tmp_path / "run"
    train = ["--env", "tests.space_envs:float64_vector", "--num-envs", "2", "--num-steps", "16"]
    assert cli(*train, "--total-timesteps", "32", "--run-dir", str(run_dir)).returncode == 0
    result = cli("export", "--checkpoint", str(run_dir), "--output", str(tmp_path / "p.pt"),
                 "--format", "torchscript")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "(obs: float32 rows of shape (3,))" in result.stdout
