"""torch._dynamo stays unloaded until something compiles, and compiled policies keep their hints."""

from __future__ import annotations

import textwrap

import gymnasium as gym
import numpy as np
import torch

from policies.compile_hints import constant_when_compiled
from policies.recurrent import LSTMPolicy
from tests.conftest import run_python

POLICIES_WITHOUT_COMPILING = textwrap.dedent(
    """
    import sys

    import gymnasium as gym
    import numpy as np
    import torch

    import puffertrain.cli
    from policies.flatten import flatten_observation
    from policies.mlp import BasicPolicy
    from policies.multi_input import MultiInputPolicy
    from policies.recurrent import LSTMPolicy

    space = gym.spaces.Dict({"x": gym.spaces.Box(-1, 1, (3,)), "n": gym.spaces.Discrete(4)})
    rows = np.stack([flatten_observation(space.sample(), space) for _ in range(5)])
    MultiInputPolicy(space, gym.spaces.Discrete(2))(torch.from_numpy(rows))
    BasicPolicy(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2))(torch.randn(5, 4))
    lstm = LSTMPolicy(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2))
    lstm(torch.randn(5, 4))
    assert "torch._dynamo" not in sys.modules, "something imported torch._dynamo"
    """
)


def test_the_cli_and_eager_policies_leave_dynamo_unloaded():
    """Importing the CLI, and the forward passes of an MLP, a policy on a Dict space (the byte
    layout) and an LSTM step, cost no import of the compiler. (An LSTM's update loads it at
    its first sequence, as the optimizer's construction does.)"""
    done = run_python(POLICIES_WITHOUT_COMPILING)
    assert done.returncode == 0, done.stderr


def test_the_constant_mark_is_the_one_torch_sets():
    def marked() -> None: ...

    def ours() -> None: ...

    assert vars(torch.compiler.assume_constant_result(marked)) == vars(constant_when_compiled(ours))


def test_lstm_over_segments_runs_eagerly_inside_a_compiled_function():
    """Its Python loop depends on where episodes start: traced, it would be in the graph and
    recompile for each new pattern of resets."""
    torch.manual_seed(0)
    policy = LSTMPolicy(gym.spaces.Box(-1, 1, (4,), np.float32), gym.spaces.Discrete(2))
    graphs = []

    def backend(graph: torch.fx.GraphModule, example_inputs: list) -> callable:
        graphs.append(graph)
        return graph.forward

    def loss(observations, state, starts):
        logits, value = policy.forward_sequence(observations, state, starts)
        return logits.sum() + value.sum()

    compiled = torch.compile(loss, backend=backend)
    state = policy.initial_state(4)
    counts = []
    for probability in (0.0, 0.1, 0.3, 0.5, 0.9):
        observations = torch.randn(8, 4, 4)
        starts = torch.rand(8, 4) < probability
        torch.testing.assert_close(
            compiled(observations, state, starts), loss(observations, state, starts)
        )
        counts.append(len(graphs))
    assert counts[1:] == counts[:1] * 4, "a new pattern of resets compiled new graphs"
    traced = [str(node.target) for graph in graphs for node in graph.graph.nodes]
    assert not any("lstm" in target.lower() for target in traced), traced
