"""The guide's attention policy, attending over tokens of the observation."""

from __future__ import annotations

import math

import gymnasium as gym
import torch
import torch.nn as nn
import torch.nn.functional as F

from policies.heads import EncoderHeads
from policies.init import layer_init


class TokenAttention(nn.Module):
    """Self-attention over the tokens of a Box observation, mean-pooled to one vector.

    A 2-D observation ``(entities, features)`` is a set of entity tokens. A 1-D observation is
    cut into at most ``num_tokens`` chunks of equal size (the last one zero-padded), each with a
    learned position embedding. Each token is embedded to ``d_model``; one pre-norm attention
    layer and a feed-forward layer update them; their mean goes through a ReLU layer.
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        d_model: int = 256,
        nhead: int = 8,
        num_tokens: int = 8,
    ) -> None:
        super().__init__()
        shape = getattr(observation_space, "shape", ())
        if not isinstance(observation_space, gym.spaces.Box) or len(shape) not in (1, 2):
            raise ValueError("needs a Box observation of 1 (chunks) or 2 (entities) dims")
        if len(shape) == 2:
            self.num_tokens, self.token_size = shape
            self.position = None
        else:
            self.token_size = math.ceil(shape[0] / min(num_tokens, shape[0]))
            self.num_tokens = math.ceil(shape[0] / self.token_size)  # none is all padding
            self.position = nn.Parameter(torch.randn(self.num_tokens, d_model) * 0.02)
        if self.num_tokens < 2:
            raise ValueError("needs at least 2 tokens to attend over")
        self.padding = self.num_tokens * self.token_size - math.prod(shape)
        self.embed = layer_init(nn.Linear(self.token_size, d_model))
        self.attention_norm = nn.LayerNorm(d_model)
        self.attention = nn.MultiheadAttention(d_model, nhead, batch_first=True)
        self.feed_forward = nn.Sequential(
            nn.LayerNorm(d_model),
            layer_init(nn.Linear(d_model, d_model)),
            nn.ReLU(),
            layer_init(nn.Linear(d_model, d_model)),
        )
        self.output = nn.Sequential(layer_init(nn.Linear(d_model, d_model)), nn.ReLU())

    def tokens(self, observations: torch.Tensor) -> torch.Tensor:
        """``(batch, num_tokens, token_size)`` float tokens of a batch of observations."""
        flat = observations.float().flatten(1)
        if self.padding:
            flat = F.pad(flat, (0, self.padding))
        return flat.view(-1, self.num_tokens, self.token_size)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        x = self.embed(self.tokens(observations))
        if self.position is not None:
            x = x + self.position
        normed = self.attention_norm(x)
        x = x + self.attention(normed, normed, normed, need_weights=False)[0]
        x = x + self.feed_forward(x)
        return self.output(x.mean(dim=1))


class AttentionPolicy(EncoderHeads):
    """The guide's AttentionPolicy, with something to attend over: the guide's sketch adds a
    sequence dim of 1, where attention returns a linear map of its one input (a no-op); here
    the tokens are the observation's entities or chunks (:class:`TokenAttention`)."""

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        action_space: gym.spaces.Space,
        d_model: int = 256,
        nhead: int = 8,
        num_tokens: int = 8,
    ) -> None:
        encoder = TokenAttention(observation_space, d_model, nhead, num_tokens)
        super().__init__(encoder, d_model, action_space)
        self.observation_space = observation_space
