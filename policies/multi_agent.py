"""Multi-agent policies: one network shared by every agent, or one network per agent.

The trainer batches every agent of every env as rows; a policy that needs to know whose row it
is takes ``forward(observations, agent_ids)`` with ``agent_ids[b]`` the agent index of row b
(its position in the env's ``possible_agents``). Outputs come back one per row, in input order.
"""

from __future__ import annotations

import math

import gymnasium as gym
import torch
import torch.nn as nn
import torch.nn.functional as F

from policies.cnn import image_trunk, is_image
from policies.heads import EncoderHeads, action_head_size
from policies.init import layer_init
from policies.mlp import mlp_encoder
from policies.recurrent import LSTMWrapper


def _agent_rows(
    agent_ids: torch.Tensor | None, rows: torch.SymInt | int, device: torch.device
) -> torch.Tensor:
    """Each row's agent (agent 0 for all without ids). ``rows`` is ``x.shape[0]``, never
    ``len(x)``: ``len`` makes an exported graph's batch size a constant."""
    if agent_ids is None:
        return torch.zeros(rows, dtype=torch.long, device=device)
    return agent_ids.reshape(-1).long()


class SharedMultiAgentPolicy(EncoderHeads):
    """One network for every agent (parameter sharing): an encoder (Nature CNN for images, 2 ×
    ``hidden_size`` ReLU MLP otherwise) with actor and critic heads.

    With ``agent_ids=True`` the network is told whose row it is: a one-hot of the agent id is
    joined to the encoder's input (vectors) or to the CNN's features (images), so agents can
    learn different behaviour from one set of weights. Without it, every agent with the same
    observation acts the same (the guide's sketch).
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        action_space: gym.spaces.Space,
        num_agents: int = 1,
        agent_ids: bool = False,
        hidden_size: int = 256,
    ) -> None:
        self.num_agents = num_agents
        extra = num_agents if agent_ids else 0
        if is_image(observation_space):
            trunk = image_trunk(observation_space, hidden_size)
            layers = [layer_init(nn.Linear(hidden_size + extra, hidden_size)), nn.ReLU()]
            super().__init__(nn.Sequential(*layers), hidden_size, action_space)
            self.trunk: nn.Module | None = trunk
        else:
            width = math.prod(observation_space.shape) + extra
            space = gym.spaces.Box(-math.inf, math.inf, (width,))
            super().__init__(
                mlp_encoder(space, hidden_size, hidden_size), hidden_size, action_space
            )
            self.trunk = None
        self.takes_agent_ids = agent_ids
        self.observation_space = observation_space

    def encode_observations(
        self, observations: torch.Tensor, agent_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        features = observations.float()
        features = self.trunk(features) if self.trunk is not None else features.flatten(1)
        if self.takes_agent_ids:
            ids = _agent_rows(agent_ids, features.shape[0], features.device)
            features = torch.cat([features, F.one_hot(ids, self.num_agents).float()], dim=1)
        return self.encoder(features)

    def forward(
        self, observations: torch.Tensor, agent_ids: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        return self.decode_actions(self.encode_observations(observations, agent_ids))


class SharedLSTMPolicy(LSTMWrapper):
    """``--policy lstm`` on a multi-agent env: a :class:`SharedMultiAgentPolicy` (told the agent
    ids when ``agent_ids``) with an LSTM of ``hidden_size`` units between its encoder and its
    heads. State is per row, so each agent keeps its own memory."""

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        action_space: gym.spaces.Space,
        num_agents: int = 1,
        agent_ids: bool = False,
        hidden_size: int = 128,
    ) -> None:
        shared = SharedMultiAgentPolicy(
            observation_space, action_space, num_agents, agent_ids, hidden_size
        )
        super().__init__(shared, hidden_size, hidden_size)


def _stacked_linear(
    num_agents: int, in_size: int, out_size: int, std: float
) -> tuple[nn.Parameter, nn.Parameter]:
    """``num_agents`` independent ``layer_init`` linear layers as ``[A, in, out]`` weights and
    ``[A, 1, out]`` biases."""
    weights = [layer_init(nn.Linear(in_size, out_size), std).weight.t() for _ in range(num_agents)]
    bias = torch.zeros(num_agents, 1, out_size)
    return nn.Parameter(torch.stack(weights).contiguous()), nn.Parameter(bias)


class IndependentMultiAgentPolicy(nn.Module):
    """One network per agent (no parameter sharing), each a 2 × ``hidden_size`` ReLU MLP with
    its own actor (std 0.01) and critic (std 1.0); Box actions get a log-std per agent.

    The agents' weights are stacked (``[A, in, out]``), and a batch runs as a few batched
    matmuls whatever the number of agents: rows are grouped by agent into a zero-padded
    ``[A, rows per agent, features]`` block, every agent's network runs on its group at once
    (``torch.baddbmm``), and the outputs go back to the rows they came from. The guide's sketch
    loops over agents and concatenates their outputs agent by agent, which reorders the batch;
    here row b's output is always agent ``agent_ids[b]``'s network applied to row b.
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        action_space: gym.spaces.Space,
        num_agents: int = 1,
        hidden_size: int = 256,
    ) -> None:
        super().__init__()
        if not isinstance(observation_space, gym.spaces.Box):
            raise ValueError("needs a Box observation space")
        self.num_agents = num_agents
        self.continuous = isinstance(action_space, gym.spaces.Box)
        outputs = action_head_size(action_space)
        inputs = math.prod(observation_space.shape)
        self.weight1, self.bias1 = _stacked_linear(num_agents, inputs, hidden_size, math.sqrt(2))
        self.weight2, self.bias2 = _stacked_linear(
            num_agents, hidden_size, hidden_size, math.sqrt(2)
        )
        self.actor_weight, self.actor_bias = _stacked_linear(num_agents, hidden_size, outputs, 0.01)
        self.critic_weight, self.critic_bias = _stacked_linear(num_agents, hidden_size, 1, 1.0)
        self.logstd = nn.Parameter(torch.zeros(num_agents, outputs)) if self.continuous else None
        self.observation_space = observation_space
        self.action_space = action_space

    def _networks(
        self, grouped: torch.Tensor, agents: slice = slice(None)
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The networks of ``agents``, each on its group of ``grouped[A, N, features]``:
        ``(actor outputs, values)``, both ``[A, N, ...]``."""
        hidden = torch.relu(torch.baddbmm(self.bias1[agents], grouped, self.weight1[agents]))
        hidden = torch.relu(torch.baddbmm(self.bias2[agents], hidden, self.weight2[agents]))
        actor = torch.baddbmm(self.actor_bias[agents], hidden, self.actor_weight[agents])
        return actor, torch.baddbmm(self.critic_bias[agents], hidden, self.critic_weight[agents])

    def _outputs(
        self, actor: torch.Tensor, value: torch.Tensor, ids: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        if self.logstd is None:
            return actor, value
        return actor, self.logstd[ids].exp(), value

    def forward(
        self, observations: torch.Tensor, agent_ids: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        """``(logits, value)`` or ``(mean, std, value)``, row b from agent ``agent_ids[b]``'s
        network (agent 0 for every row when ``agent_ids`` is None)."""
        rows = observations.float().flatten(1)
        ids = _agent_rows(agent_ids, rows.shape[0], rows.device)
        if torch.compiler.is_exporting() or torch.jit.is_tracing():
            return self._every_network_then_pick(rows, ids)
        order = torch.argsort(ids, stable=True)
        counts = torch.bincount(ids, minlength=self.num_agents)
        starts = torch.cumsum(counts, 0) - counts
        sorted_ids = ids[order]
        position = torch.arange(len(rows), device=rows.device) - starts[sorted_ids]
        grouped = rows.new_zeros(self.num_agents, int(counts.max()), rows.shape[1])
        grouped[sorted_ids, position] = rows[order]
        actor, value = self._networks(grouped)
        by_row = torch.empty_like(order)
        by_row[order] = torch.arange(len(rows), device=rows.device)
        where = (sorted_ids[by_row], position[by_row])
        return self._outputs(actor[where], value[where], ids)

    def _every_network_then_pick(
        self, rows: torch.Tensor, ids: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """``forward`` for an exported graph: ONNX has no stable sort, so every agent's network
        runs on every row (``num_agents`` times the work) and each row keeps its agent's."""
        every = rows.unsqueeze(0).expand(self.num_agents, -1, -1)
        actor, value = self._networks(every)
        picked = ids.view(1, -1, 1)
        actor = actor.gather(0, picked.expand(1, -1, actor.shape[-1]))[0]
        value = value.gather(0, picked)[0]
        return self._outputs(actor, value, ids)

    def forward_agent(self, observations: torch.Tensor, agent: int) -> tuple[torch.Tensor, ...]:
        """Agent ``agent``'s network alone on every row of ``observations`` (to run or export
        one agent's policy)."""
        rows = observations.float().flatten(1)
        actor, value = self._networks(rows.unsqueeze(0), slice(agent, agent + 1))
        ids = torch.full((len(rows),), agent, dtype=torch.long, device=rows.device)
        return self._outputs(actor[0], value[0], ids)
