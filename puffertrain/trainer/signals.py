"""Turn SIGINT/SIGTERM into a request to checkpoint and stop at the end of the update, and end
the process as that signal would have once everything is saved."""

from __future__ import annotations

import atexit
import os
import signal
import sys
from types import FrameType
from typing import NoReturn

from rich.console import Console


class StopSignals:
    """Context manager: SIGINT and SIGTERM set ``requested`` while it is entered (the
    launcher's plain form; :class:`StopRequest` also tells the user and aborts on a second
    Ctrl-C)."""

    def __init__(self) -> None:
        self.requested = False
        self.signum: int | None = None
        """The first signal that asked to stop."""
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        self.signum = self.signum or signum

    def __enter__(self) -> StopSignals:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


class StopRequest(StopSignals):
    """``requested`` becomes True on the first signal, said on ``console`` (the run's, once it
    has one); a second SIGINT aborts."""

    def __init__(self, console: Console | None = None) -> None:
        super().__init__()
        self.console = console

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            # Said once: a SIGTERM that follows Ctrl-C (a launcher stopping its runs) may land
            # while this handler is still printing, and a nested print broke rich's lazy import
            # of its tables and killed the run without its checkpoint.
            return
        self.requested, self.signum = True, signum
        name = signal.Signals(signum).name
        (self.console or Console(stderr=True)).print(
            f"{name}: saving a checkpoint after this update (Ctrl-C again to abort without one)",
            soft_wrap=True,
            markup=False,
            emoji=False,
            highlight=False,
        )


STOPPED_STATUS = {128 + signal.SIGINT: signal.SIGINT, 128 + signal.SIGTERM: signal.SIGTERM}
"""The exit status of a command stopped by a signal (after its checkpoint): 128 + the signal,
as a shell reports a process the signal ended."""


def stopped_status(returncode: int) -> bool:
    """Whether a child's ``returncode`` says a stop signal ended it (its run checkpointed)."""
    return returncode in STOPPED_STATUS or -returncode in STOPPED_STATUS.values()


def end_as_stopped(status: int) -> NoReturn:
    """End the process by the signal a stop ``status`` stands for, with the default action:
    a shell then sees the signal, not an exit, and stops a loop of commands as it does for
    any process Ctrl-C ends (an exit of 130 would let the loop go on to the next run)."""
    atexit._run_exitfuncs()  # what a normal exit runs: multiprocessing's cleanup, the flushes
    sys.stdout.flush()
    sys.stderr.flush()
    signum = STOPPED_STATUS[status]
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    sys.exit(status)  # where the signal is blocked
