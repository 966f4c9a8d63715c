"""Convolutional policies for stacked-frame image observations (Atari)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn

from policies.heads import EncoderHeads, actor_critic, actor_head
from policies.init import layer_init


def _flat_size(convs: nn.Module, chw: tuple[int, ...]) -> int:
    with torch.no_grad():
        return convs(torch.zeros(1, *chw)).shape[1]


def nature_convs(observation_space: gym.spaces.Space) -> tuple[nn.Sequential, int]:
    """The Nature-DQN conv stack (32×8 s4, 64×4 s2, 64×3 s1, flatten) and its output size.

    Input channels come from the (channels, height, width) observation space; the output size
    from a dummy forward pass, so any image size works.
    """
    if not is_image(observation_space):
        raise ValueError("needs a (channels, height, width) Box observation")
    chw = observation_space.shape
    convs = nn.Sequential(
        layer_init(nn.Conv2d(chw[0], 32, kernel_size=8, stride=4)),
        nn.ReLU(),
        layer_init(nn.Conv2d(32, 64, kernel_size=4, stride=2)),
        nn.ReLU(),
        layer_init(nn.Conv2d(64, 64, kernel_size=3, stride=1)),
        nn.ReLU(),
        nn.Flatten(),
    )
    return convs, _flat_size(convs, chw)


def is_image(space: gym.spaces.Space) -> bool:
    """A Box of three dims: an image, channels first or last."""
    return isinstance(space, gym.spaces.Box) and len(space.shape) == 3


def channel_bound(space: gym.spaces.Box, channels_last: bool) -> torch.Tensor:
    """The largest value each channel of the image ``space`` declares (at least 1), shaped to
    divide a batch of its images: one number where every channel has the same bound."""
    high = np.broadcast_to(np.asarray(space.high, np.float32), space.shape)
    channel_axis = 2 if channels_last else 0
    spatial = tuple(axis for axis in range(3) if axis != channel_axis)
    bound = np.maximum(high.max(axis=spatial), 1.0)
    if (bound == bound[0]).all():
        return torch.tensor(float(bound[0]))
    return torch.from_numpy(bound if channels_last else bound.reshape(-1, 1, 1)).float()


class ImageEncoder(nn.Module):
    """Convolutions for any image Box; ``output_size`` features per image.

    Channels last ``(H, W, C)`` is recognised when the last dim has at most 4 entries and fewer
    than the first. uint8 images are divided by their space's upper bound, per channel: 255 for
    pixels, less for codes such as MiniGrid's object, colour and state ids (its recipe declares
    them), which ÷255 would squeeze into [0, 0.04]. Float images are taken as they are.
    Images of at least 36×36 get the Nature convs; smaller ones (grid worlds) two 3×3 convs
    (32, 64 channels, the second stride 2). When gradients are on (the update's large batches)
    the images go channels-last in memory, which runs oneDNN's faster NHWC convolutions; the
    rollout's small batches stay NCHW, which measured faster there.
    """

    def __init__(self, space: gym.spaces.Box) -> None:
        super().__init__()
        if not is_image(space):
            raise ValueError("needs an image Box of three dims")
        shape = space.shape
        self.channels_last = shape[-1] <= 4 and shape[-1] < shape[0]
        chw = (shape[2], shape[0], shape[1]) if self.channels_last else shape
        self.pixels = space.dtype == np.uint8
        if self.pixels:
            bound = channel_bound(space, self.channels_last)
            self.register_buffer("bound", bound, persistent=False)
        if min(chw[1:]) >= 36:
            self.convs, self.output_size = nature_convs(gym.spaces.Box(0, 1, chw, np.float32))
        else:
            self.convs = nn.Sequential(
                layer_init(nn.Conv2d(chw[0], 32, kernel_size=3, padding=1)),
                nn.ReLU(),
                layer_init(nn.Conv2d(32, 64, kernel_size=3, stride=2, padding=1)),
                nn.ReLU(),
                nn.Flatten(),
            )
            self.output_size = _flat_size(self.convs, chw)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float()
        if self.pixels:
            x = x / self.bound
        if self.channels_last:
            x = x.permute(0, 3, 1, 2)
        if torch.is_grad_enabled():
            x = x.contiguous(memory_format=torch.channels_last)
        return self.convs(x)


def image_trunk(space: gym.spaces.Box, size: int) -> nn.Sequential:
    """:class:`ImageEncoder`, then a ``size``-unit ReLU layer."""
    images = ImageEncoder(space)
    return nn.Sequential(images, layer_init(nn.Linear(images.output_size, size)), nn.ReLU())


class CNNPolicy(EncoderHeads):
    """The Nature CNN (conv 32×8 s4, 64×4 s2, 64×3 s1, fc 512) with actor and critic heads.

    uint8 pixels are divided by 255 inside the network, so observations stay uint8 everywhere
    else. The guide's sketch hard-codes 3 input channels and a 7×7 feature map; here both come
    from the observation space (4 channels for a 4-frame stack), channels-last images are
    transposed, and images under 36×36 get :class:`ImageEncoder`'s small convs. Box actions get
    a Gaussian head.
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        action_space: gym.spaces.Space,
        hidden_size: int = 512,
    ) -> None:
        super().__init__(image_trunk(observation_space, hidden_size), hidden_size, action_space)
        self.observation_space = observation_space


class EfficientCNN(nn.Module):
    """The guide's EfficientCNN: Nature convs, then an fc layer sized by a dummy forward pass.

    Same function as :class:`CNNPolicy` (which sizes its fc layer the same way), kept under the
    docs' attribute names ``network`` and ``fc``.
    """

    def __init__(self, observation_space: gym.spaces.Box, action_space: gym.spaces.Space) -> None:
        super().__init__()
        self.network, n_features = nature_convs(observation_space)
        self.fc = layer_init(nn.Linear(n_features, 512))
        self.actor = actor_head(512, action_space)
        self.critic = layer_init(nn.Linear(512, 1), std=1.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = torch.relu(self.fc(self.network(x.float() / 255.0)))
        return actor_critic(self.actor, self.critic, x)
