"""The stop request: one message, however the signals that ask for it interleave."""

from __future__ import annotations

import io
import signal

import pytest
from rich.console import Console

from puffertrain.trainer.signals import StopRequest


class SignalledMidWrite(io.StringIO):
    """A console file during whose first write a SIGTERM arrives (calls the handler)."""

    def __init__(self, stop: StopRequest) -> None:
        super().__init__()
        self.stop, self.signalled = stop, False

    def write(self, text: str) -> int:
        if not self.signalled:
            self.signalled = True
            self.stop._handle(signal.SIGTERM, None)
        return super().write(text)


def test_a_sigterm_while_the_first_signal_is_being_said_is_not_said_again():
    """A launcher sends its runs SIGTERM after the terminal's Ctrl-C reached them: the second
    handler call ran inside the first one's print, printed again, and rich's half-imported
    tables raised, killing the run without its checkpoint."""
    stop = StopRequest()
    file = SignalledMidWrite(stop)
    stop.console = Console(file=file, width=200)
    stop._handle(signal.SIGINT, None)
    assert stop.requested
    assert file.getvalue().count("saving a checkpoint") == 1
    assert file.getvalue().startswith("SIGINT:")


def test_a_second_ctrl_c_aborts():
    stop = StopRequest(Console(file=io.StringIO()))
    stop._handle(signal.SIGTERM, None)
    with pytest.raises(KeyboardInterrupt):
        stop._handle(signal.SIGINT, None)
