"""Env packages that register their ids on import: an id of their family that gymnasium does not
know yet is registered by importing the package, or named with the ``pip install`` it needs."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from puffertrain.errors import UserError


@dataclass(frozen=True)
class Family:
    """Ids starting with one of ``prefixes`` are registered by importing ``module``, which
    ``pip install {package}`` brings."""

    prefixes: tuple[str, ...]
    module: str
    package: str


FAMILIES = (
    Family(("MiniGrid-", "BabyAI-"), "minigrid", "minigrid"),
    Family(("ALE/",), "ale_py", "ale-py"),
    Family(("MiniWorld-",), "miniworld", "miniworld"),
    Family(
        ("highway-", "merge-", "roundabout-", "parking-", "intersection-", "racetrack-"),
        "highway_env",
        "highway-env",
    ),
    Family(
        ("Fetch", "HandManipulate", "HandReach", "AdroitHand", "PointMaze_", "AntMaze_"),
        "gymnasium_robotics",
        "gymnasium-robotics",
    ),
)


def family_of(env_id: str) -> Family | None:
    """The family whose prefix ``env_id`` starts with, if any."""
    return next((f for f in FAMILIES if env_id.startswith(f.prefixes)), None)


def import_family(family: Family, env_id: str) -> None:
    """Import the family's package (it registers its ids); ``UserError`` naming the
    ``pip install`` if it is missing."""
    try:
        module = importlib.import_module(family.module)
    except ImportError:
        raise UserError(
            f"env '{env_id}' is a {family.module} id and {family.module} is not installed: "
            f"pip install {family.package}"
        ) from None
    import gymnasium as gym

    gym.register_envs(module)
