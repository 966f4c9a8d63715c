"""Building and describing environments."""

from puffertrain.envs.make import EnvFactory, env_factory, env_family, is_atari, probe_env
from puffertrain.envs.state import capture_env_state, restore_env_state

__all__ = [
    "EnvFactory",
    "capture_env_state",
    "env_factory",
    "env_family",
    "is_atari",
    "probe_env",
    "restore_env_state",
]
