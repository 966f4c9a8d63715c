"""uint8 images are scaled by their declared bounds, and MiniGrid declares its grid encoding's."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from policies.cnn import ImageEncoder
from puffertrain.envs.flatten import policy_observation_space
from puffertrain.envs.recipe import env_recipe


def _scaled_input(encoder: ImageEncoder, images: torch.Tensor) -> torch.Tensor:
    """What the encoder's first convolution receives for ``images``."""
    seen = []
    first = encoder.convs[0]
    handle = first.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    with torch.no_grad():
        encoder(images)
    handle.remove()
    return seen[0]


def test_pixels_are_still_divided_by_255():
    encoder = ImageEncoder(gym.spaces.Box(0, 255, (3, 10, 10), np.uint8))
    images = torch.full((2, 3, 10, 10), 255, dtype=torch.uint8)
    assert torch.equal(_scaled_input(encoder, images), torch.ones(2, 3, 10, 10))


def test_each_channel_is_divided_by_its_own_bound():
    high = np.broadcast_to(np.array([10, 5, 2], np.uint8), (7, 7, 3))
    encoder = ImageEncoder(gym.spaces.Box(0, high, dtype=np.uint8))
    images = torch.from_numpy(np.ascontiguousarray(high)).expand(4, 7, 7, 3)
    # the largest code of each channel becomes 1, as 255 does for a pixel
    assert torch.equal(_scaled_input(encoder, images), torch.ones(4, 3, 7, 7))


def test_the_bound_is_not_saved_with_the_policy():
    encoder = ImageEncoder(gym.spaces.Box(0, 255, (3, 10, 10), np.uint8))
    assert "bound" not in encoder.state_dict()


def test_minigrid_declares_its_grid_codes_not_pixels():
    pytest.importorskip("minigrid")
    from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, STATE_TO_IDX

    env = env_recipe("MiniGrid-Empty-5x5-v0", {}).factory()
    image = policy_observation_space(env)["image"]
    expected = [max(OBJECT_TO_IDX.values()), max(COLOR_TO_IDX.values()), max(STATE_TO_IDX.values())]
    assert (image.high == np.array(expected)).all() and image.dtype == np.uint8
    observation, _ = env.unwrapped.reset(seed=0)
    assert image.contains(observation["image"])
    env.close()


def test_minigrid_turned_into_pixels_keeps_0_to_255():
    pytest.importorskip("minigrid")
    env = env_recipe("tests.space_envs:minigrid_rgb", {}).factory()
    assert policy_observation_space(env)["image"].high.max() == 255
    env.close()
