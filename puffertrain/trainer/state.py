"""The training state a checkpoint holds: the one schema train, resume and eval read and write.

A file is a plain-data dict (``torch.load(weights_only=True)`` reads it; nothing in it is code)
with a ``format`` number. Rank 0's own state sits at the top level (the single-rank layout) and
the other ranks' under ``other_ranks``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from policies.contract import State
from puffertrain.errors import UserError

FORMAT_VERSION = 1
"""Bumped whenever a field changes meaning; files of another format are refused by name."""


@dataclass
class RankState:
    """What one rank alone holds: its RNG states, its envs (``{"envs": None}`` when episodes
    restart on resume), its rows' recurrent state and its reward scaling."""

    rng: dict[str, Any]
    envs: dict[str, Any]
    policy_state: State | None = None
    reward_normalizer: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RankState:
        return cls(**{item.name: data[item.name] for item in fields(cls) if item.name in data})

    def to_dict(self) -> dict[str, Any]:
        return {item.name: getattr(self, item.name) for item in fields(self)}


@dataclass
class TrainingState:
    """A run at the end of one update: the config it was started with, how far it got, the
    shared model and optimizer, and every rank's :class:`RankState`."""

    config: dict[str, Any]
    global_step: int
    iteration: int
    policy: dict[str, Any]
    optimizer: dict[str, Any]
    ranks: list[RankState] = field(default_factory=list)
    evaluation: dict[str, Any] | None = None
    """How many evaluations ran and the best mean return (None when evaluation is off)."""
    update_threads: int | None = None
    """The torch threads the update ran on since the start (None in older checkpoints): a
    resume keeps them, so the run computes as it would have without the stop."""

    @property
    def world_size(self) -> int:
        return len(self.ranks)

    def to_dict(self) -> dict[str, Any]:
        main, *others = self.ranks
        return {
            "format": FORMAT_VERSION,
            "config": self.config,
            "global_step": self.global_step,
            "iteration": self.iteration,
            "world_size": self.world_size,
            "policy": self.policy,
            "optimizer": self.optimizer,
            **main.to_dict(),
            "other_ranks": [rank.to_dict() for rank in others],
            "evaluation": self.evaluation,
            "update_threads": self.update_threads,
        }

    @classmethod
    def from_dict(cls, data: Any, source: str) -> TrainingState:
        """Read a checkpoint's dict; ``UserError`` naming ``source`` and the format if it is
        not one this version reads."""
        if not isinstance(data, dict) or "format" not in data:
            raise UserError(f"checkpoint '{source}' is not a puffertrain checkpoint (no format)")
        found = data["format"]
        if found != FORMAT_VERSION:
            age = "newer" if isinstance(found, int) and found > FORMAT_VERSION else "older"
            raise UserError(
                f"checkpoint '{source}' has format {found!r}, an {age} one than this puffertrain "
                f"reads (format {FORMAT_VERSION}); use the puffertrain version that wrote it"
            )
        try:
            ranks = [RankState.from_dict(data)]
            ranks += [RankState.from_dict(rank) for rank in data.get("other_ranks", [])]
            return cls(
                config=data["config"],
                global_step=int(data["global_step"]),
                iteration=int(data["iteration"]),
                policy=data["policy"],
                optimizer=data["optimizer"],
                ranks=ranks,
                evaluation=data.get("evaluation"),
                update_threads=data.get("update_threads"),
            )
        except (KeyError, TypeError) as error:
            raise UserError(
                f"checkpoint '{source}' (format {FORMAT_VERSION}) is missing {error}"
            ) from None
