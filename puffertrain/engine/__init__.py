"""The rollout engine: envs stepped in rows with same-step autoreset, by one of several
backends (serial, multiprocessing lockstep or async batches, ale-py's native vector env)."""

from puffertrain.engine.base import Engine, EnvError, StepResult
from puffertrain.engine.choose import (
    choose_backend,
    engine_from,
    make_engine,
    multiprocessing_engine,
)
from puffertrain.engine.episodes import Episode, EpisodeTracker
from puffertrain.engine.native import NativeAtariEngine
from puffertrain.engine.serial import SerialEngine

__all__ = [
    "Engine",
    "EnvError",
    "Episode",
    "EpisodeTracker",
    "NativeAtariEngine",
    "SerialEngine",
    "StepResult",
    "choose_backend",
    "engine_from",
    "make_engine",
    "multiprocessing_engine",
]
