"""Rollout engine: vectorised env backends behind one interface."""

from __future__ import annotations

import os
from typing import Any

from puffertrain.envs import env_factory, is_atari
from puffertrain.envs.atari import atari_settings, make_wrapped_atari
from puffertrain.errors import UserError
from puffertrain.vector.base import Episode, EpisodeTracker, StepResult, VectorEnv
from puffertrain.vector.native import NativeAtariVectorEnv
from puffertrain.vector.serial import SerialVectorEnv


def resolve_backend(kind: str, env_id: str) -> str:
    """The backend ``--vec kind`` means for this env ("auto": native for ALE ids, else serial)."""
    atari = is_atari(env_id)
    if kind == "auto":
        return "native" if atari else "serial"
    if kind == "native" and not atari:
        raise UserError(f"--vec native runs ALE ids only; '{env_id}' is not one (use serial)")
    return kind


def make_vector_env(
    kind: str, env_id: str, num_envs: int, env_kwargs: dict[str, Any], num_threads: int = 0
) -> VectorEnv:
    """``num_envs`` copies of the env on the backend ``kind`` resolves to.

    ALE ids get the standard Atari preprocessing on either backend: natively in C++, or as
    gymnasium wrappers on the serial backend (the reference path).
    """
    backend = resolve_backend(kind, env_id)
    if backend == "native":
        threads = num_threads or os.cpu_count() or 1
        return NativeAtariVectorEnv(atari_settings(env_id, env_kwargs), num_envs, threads)
    if is_atari(env_id):
        settings = atari_settings(env_id, env_kwargs)
        return SerialVectorEnv([lambda: make_wrapped_atari(env_id, settings)] * num_envs)
    return SerialVectorEnv([env_factory(env_id, env_kwargs)] * num_envs)


__all__ = [
    "Episode",
    "EpisodeTracker",
    "NativeAtariVectorEnv",
    "SerialVectorEnv",
    "StepResult",
    "VectorEnv",
    "make_vector_env",
    "resolve_backend",
]
