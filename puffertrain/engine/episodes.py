"""Finished episodes and the running score and length of each row's current one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np


class Episode(NamedTuple):
    """A finished episode (for Atari: a whole game), scored with raw, unclipped rewards.

    For a multi-agent env, ``score`` is the mean of ``agent_scores`` (each agent's own return,
    by agent name) and ``env_index`` numbers the env, not the row. A named tuple: built for
    every episode as it ends, at half a frozen dataclass's cost."""

    env_index: int
    score: float
    length: int
    agent_scores: dict[str, float] | None = None


class EpisodeTracker:
    """Running score and length of each row's current episode.

    With ``agent_names``, rows come in blocks of one per agent; an episode closes for the whole
    block (every row of the env is ``episode_over`` at once) and reports each agent's score.
    """

    def __init__(self, num_rows: int, agent_names: Sequence[str] = ()) -> None:
        self.scores = np.zeros(num_rows, dtype=np.float64)
        self.lengths = np.zeros(num_rows, dtype=np.int64)
        self.agent_names = tuple(agent_names)

    def update(
        self, rows: slice | np.ndarray, rewards: np.ndarray, episode_over: np.ndarray
    ) -> list[Episode]:
        """Add one step of ``rows`` (row ids, or a slice of them); return the episodes that
        ``episode_over`` closes, and restart them."""
        if isinstance(rows, slice):  # views, added to in place: half the cost of `[rows] +=`
            scores, lengths = self.scores[rows], self.lengths[rows]
            scores += rewards
            lengths += 1
        else:
            self.scores[rows] += rewards
            self.lengths[rows] += 1
        # `.nonzero()`: a fifth of `np.flatnonzero`'s and of `.any()`'s cost, whose Python
        # wrappers dominate small arrays
        ended = episode_over.nonzero()[0]
        if not ended.size:  # most steps: nothing to close
            return []
        if isinstance(rows, slice):
            if rows.start:
                ended += rows.start
        else:
            ended = rows[ended]
        if self.agent_names:
            finished = [self._agents_episode(int(row)) for row in ended[:: len(self.agent_names)]]
        else:
            # python scalars in one conversion each, not one numpy scalar per field per episode
            columns = ended.tolist(), self.scores[ended].tolist(), self.lengths[ended].tolist()
            finished = list(map(Episode, *columns))
        self.scores[ended] = 0.0
        self.lengths[ended] = 0
        return finished

    def _agents_episode(self, first_row: int) -> Episode:
        block = self.scores[first_row : first_row + len(self.agent_names)]
        return Episode(
            first_row // len(self.agent_names),
            float(block.mean()),
            int(self.lengths[first_row]),
            dict(zip(self.agent_names, block.tolist(), strict=True)),
        )

    def state_dict(self) -> dict[str, Any]:
        return {"scores": self.scores.tolist(), "lengths": self.lengths.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scores[:] = state["scores"]
        self.lengths[:] = state["lengths"]
