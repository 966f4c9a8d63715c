"""The rollout engine: envs stepped in rows with same-step autoreset, by one of several
backends (serial, multiprocessing lockstep or async batches, the env's own vector env:
ale-py's or a gymnasium vector entry point, EnvPool)."""

from puffertrain.engine.base import Engine, EnvError, StepResult
from puffertrain.engine.choose import (
    choose_backend,
    engine_from,
    make_engine,
    multiprocessing_engine,
)
from puffertrain.engine.envpool import EnvPoolEngine
from puffertrain.engine.episodes import Episode, EpisodeTracker
from puffertrain.engine.gym_vector import GymVectorEngine
from puffertrain.engine.native import NativeAtariEngine
from puffertrain.engine.serial import SerialEngine

__all__ = [
    "Engine",
    "EnvError",
    "EnvPoolEngine",
    "Episode",
    "EpisodeTracker",
    "GymVectorEngine",
    "NativeAtariEngine",
    "SerialEngine",
    "StepResult",
    "choose_backend",
    "engine_from",
    "make_engine",
    "multiprocessing_engine",
]
