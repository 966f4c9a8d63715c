"""Rollout engine: vectorised env backends behind one interface."""

from __future__ import annotations

from puffertrain.envs import EnvFactory
from puffertrain.vector.base import Episode, EpisodeTracker, StepResult, VectorEnv
from puffertrain.vector.serial import SerialVectorEnv


def make_vector_env(kind: str, factory: EnvFactory, num_envs: int) -> VectorEnv:
    """Build ``num_envs`` copies of the env on backend ``kind`` ("auto" → serial for now)."""
    if kind in ("auto", "serial"):
        return SerialVectorEnv([factory] * num_envs)
    raise ValueError(f"unknown vector backend {kind!r}")


__all__ = [
    "Episode",
    "EpisodeTracker",
    "SerialVectorEnv",
    "StepResult",
    "VectorEnv",
    "make_vector_env",
]
