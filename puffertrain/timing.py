"""Where the wall time goes: env stepping, policy inference, the update, evaluation."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class PhaseTimer:
    """Accumulates wall time per named phase since construction (env, inference and update
    always; others, such as eval, once they have run)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.totals: dict[str, float] = {"env": 0.0, "inference": 0.0, "update": 0.0}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        begin = time.perf_counter()
        try:
            yield
        finally:
            self.totals[name] = self.totals.get(name, 0.0) + time.perf_counter() - begin

    def add(self, name: str, since: float) -> None:
        """Count the time from ``since`` (a ``time.perf_counter()``) to now to ``name``: the
        rollout's per-step form of :meth:`phase`, without a context manager's cost."""
        self.totals[name] += time.perf_counter() - since

    def fractions(self) -> dict[str, float]:
        """Share of the elapsed time per phase, plus "other" for the rest."""
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        shares = {name: total / elapsed for name, total in self.totals.items()}
        shares["other"] = max(0.0, 1.0 - sum(shares.values()))
        return shares

    def summary(self) -> str:
        return ", ".join(f"{name} {share:.0%}" for name, share in self.fractions().items())
