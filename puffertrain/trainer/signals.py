"""Turn SIGINT/SIGTERM into a request to checkpoint and stop at the end of the update."""

from __future__ import annotations

import signal
from types import FrameType

from rich.console import Console


class StopSignals:
    """Context manager: SIGINT and SIGTERM set ``requested`` while it is entered (the
    launcher's plain form; :class:`StopRequest` also tells the user and aborts on a second
    Ctrl-C)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True

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
        self.requested = True
        name = signal.Signals(signum).name
        (self.console or Console(stderr=True)).print(
            f"{name}: saving a checkpoint after this update (Ctrl-C again to abort without one)",
            soft_wrap=True,
            markup=False,
            emoji=False,
            highlight=False,
        )
