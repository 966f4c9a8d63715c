"""A trial's score: read from its run's TensorBoard curve, at the end and along the way.

The curve is the eval mean return (``eval/episodic_return``) when the run evaluates, else the
mean of the last 20 training episodes after each one. Objectives:

- ``final``: the curve's last value (maximised);
- ``auc``: the area under the curve divided by the steps it spans, the return averaged over
  training (maximised): it prefers runs that learn early;
- ``steps``: the env steps until the curve first reaches ``--target`` (minimised); a run that
  never reaches it scores the budget plus its shortfall as a fraction of the target times the
  budget, so the closer ones still rank first.

While a trial runs, the same objective on the curve so far is reported at ``REPORTS`` evenly
spaced points of the budget; the pruner compares trials at those points, whatever their
update sizes.
"""

from __future__ import annotations

import itertools
import statistics
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Objective = Literal["final", "auc", "steps"]
REPORTS = 20
RECENT_EPISODES = 20
EVAL_TAG = "eval/episodic_return"
EPISODE_TAG = "charts/episodic_return"


def direction(objective: Objective) -> str:
    return "minimize" if objective == "steps" else "maximize"


def score(
    curve: list[tuple[int, float]],
    objective: Objective,
    budget: int,
    target: float | None,
    upto: int | None = None,
) -> float | None:
    """The objective of ``curve`` (step, value) pairs up to step ``upto`` (all of it: None);
    None while it has no point."""
    points = [(step, value) for step, value in curve if upto is None or step <= upto]
    if not points:
        return None
    if objective == "final":
        return points[-1][1]
    if objective == "auc":
        if len(points) == 1:
            return points[0][1]
        area = sum(
            (b_step - a_step) * (a_value + b_value) / 2
            for (a_step, a_value), (b_step, b_value) in itertools.pairwise(points)
        )
        return area / (points[-1][0] - points[0][0])
    assert target is not None
    for step, value in points:
        if value >= target:
            return float(step)
    best = max(value for _, value in points)
    return budget * (1 + (target - best) / max(abs(target), 1.0))


@dataclass
class Curve:
    """Reads a run's curve from its TensorBoard events as they are written (each call reads
    only what is new), and the last step it logged."""

    run_dir: Path
    use_eval: bool
    points: list[tuple[int, float]] = field(default_factory=list)
    last_step: int = 0
    _recent: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT_EPISODES))
    _events: object = None

    def read(self) -> list[tuple[int, float]]:
        """Read what is new; return the curve so far."""
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        if self._events is None:
            if not self.run_dir.is_dir():
                return self.points
            self._events = EventAccumulator(
                str(self.run_dir), size_guidance={"scalars": 0, "images": 1, "tensors": 1}
            )
        self._events.Reload()
        tags = self._events.Tags()["scalars"]
        if "charts/SPS" in tags:
            self.last_step = self._events.Scalars("charts/SPS")[-1].step
        tag = EVAL_TAG if self.use_eval else EPISODE_TAG
        if tag not in tags:
            return self.points
        events = self._events.Scalars(tag)
        if self.use_eval:
            self.points = [(event.step, event.value) for event in events]
            return self.points
        for event in events[len(self.points) :]:  # the running mean needs each episode once
            self._recent.append(event.value)
            self.points.append((event.step, statistics.fmean(self._recent)))
        return self.points
