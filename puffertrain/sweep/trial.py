"""One trial of a sweep: a normal training run in a child process, watched by the sweep.

While it runs, the objective on its curve so far is reported at the report points and the
pruner may stop it (SIGTERM: the run checkpoints and ends). When it ends the study is told how:
its objective, pruned, stopped by the user (failed, and queued again), or failed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from puffertrain.launcher import Job
from puffertrain.seeds import run_command
from puffertrain.sweep.objective import REPORTS, Curve, Objective, score
from puffertrain.sweep.study import HEARTBEAT_SECONDS, retry
from puffertrain.trainer.signals import stopped_status

if TYPE_CHECKING:
    import optuna

READ_SECONDS = 1.0
"""How often a running trial's TensorBoard events are read."""
LOG_FILE = "train.log"


def say(text: str) -> None:
    print(f"puffertrain: {text}", file=sys.stderr, flush=True)


@dataclass
class TrialJob(Job):
    study: optuna.Study
    trial: optuna.Trial
    run_dir: Path
    flags: list[str]
    objective: Objective
    budget: int
    target: float | None
    use_eval: bool
    heartbeat: Callable[[], None]
    """Records in the study that this trial's process is alive (study.heartbeat)."""
    curve: Curve = field(init=False)
    pruned: bool = False
    reported: int = 0
    started: float = field(default_factory=time.monotonic)
    _last_read: float = 0.0
    _last_heartbeat: float = 0.0

    def __post_init__(self) -> None:
        self.curve = Curve(self.run_dir, self.use_eval)
        self.log = self.run_dir / LOG_FILE

    def command(self) -> list[str]:
        return run_command(self.run_dir, self.flags)

    def watch(self) -> bool:
        now = time.monotonic()
        if now - self._last_heartbeat >= HEARTBEAT_SECONDS:
            self.heartbeat()
            self._last_heartbeat = now
        if now - self._last_read < READ_SECONDS:
            return False
        self._last_read = now
        if not self._report(self.curve.read()):
            return False
        self.pruned = self.trial.should_prune()
        return self.pruned

    def _report(self, curve: list[tuple[int, float]], ended: bool = False) -> bool:
        """Report the report points the curve has passed (all of them once the run has ended
        before the budget, at --stop-at-return: its score stays); return whether any was
        new."""
        if not curve:
            return False
        new = False
        while self.reported < REPORTS:
            upto = (self.reported + 1) * self.budget // REPORTS
            if curve[-1][0] < upto and not ended:
                break
            self.reported += 1
            value = score(curve, self.objective, self.budget, self.target, upto)
            if value is not None:
                self.trial.report(value, self.reported)
                new = True
        return new

    def finished(self, returncode: int, stopped: bool) -> bool:
        import optuna

        curve = self.curve.read()
        seconds = time.monotonic() - self.started
        self.trial.set_user_attr("steps", self.curve.last_step)
        self.trial.set_user_attr("wall_seconds", round(seconds, 1))
        number = self.trial.number
        if self.pruned:
            self.study.tell(self.trial, state=optuna.trial.TrialState.PRUNED)
            say(f"trial {number} pruned at step {self.curve.last_step:,} ({seconds:.0f} s)")
            return True
        if stopped or stopped_status(returncode):  # by the sweep, or by a signal of its own
            frozen = self.study.tell(self.trial, state=optuna.trial.TrialState.FAIL)
            retry(self.study, frozen)
            say(f"trial {number} stopped at step {self.curve.last_step:,}; queued to resume")
            return True
        value = score(curve, self.objective, self.budget, self.target)
        if returncode != 0 or value is None:
            self.study.tell(self.trial, state=optuna.trial.TrialState.FAIL)
            why = last_line(self.log) if returncode != 0 else "its run logged no curve"
            say(f"trial {number} failed: {why} (log: {self.log})")
            return False
        self._report(curve, ended=True)  # later trials are compared at every point
        self.study.tell(self.trial, value)
        say(
            f"trial {number} finished: objective {value:g} at step {self.curve.last_step:,} "
            f"({seconds:.0f} s)"
        )
        return True


def last_line(path: Path) -> str:
    """The last non-empty line of a log (a failed run's one-line error)."""
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    return lines[-1].strip() if lines else "no output"
