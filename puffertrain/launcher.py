"""Training runs as child processes, K at a time, each pinned to its share of the CPUs.

The one launcher behind ``--seeds`` and ``sweep``. Runs that go at once are pinned to disjoint
CPUs, so each one's thread choice (threads.py) sees only its share and no two runs spin against
each other. Ctrl-C or SIGTERM stops the launcher cleanly: every running run is sent SIGTERM
(which it answers with a checkpoint, even if the terminal's SIGINT reached it too), the
launcher waits for them and starts no more. So does an error in the launcher's own process
before it is raised; and on Linux a launcher killed outright (SIGKILL, no handler runs) takes
its runs with it: the kernel sends them SIGTERM.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from puffertrain.trainer.signals import StopSignals, stopped_status

POLL_SECONDS = 0.05
PR_SET_PDEATHSIG = 1
"""prctl(2)'s option: the signal a process gets when the thread that started it ends."""


class Job:
    """One child run. Subclasses give its command; a job may watch its run while it goes (and
    ask for it to stop) and hear how it ended."""

    log: Path | None = None
    """Where the run's output goes (None: this process's terminal)."""

    def command(self) -> list[str]:
        raise NotImplementedError

    def watch(self) -> bool:
        """Called while the run goes; True asks it to stop (it checkpoints first)."""
        return False

    def finished(self, returncode: int, stopped: bool) -> bool:
        """The run ended with ``returncode``; ``stopped`` when the launcher was told to stop
        while it ran. Return whether it succeeded (or checkpointed when told to stop)."""
        return returncode == 0 or (stopped and stopped_status(returncode))


def cpu_share(cpus: list[int], slot: int, parallel: int) -> set[int]:
    """Slot ``slot``'s CPUs when ``parallel`` runs share ``cpus`` (at least one each)."""
    if not cpus:
        return set()
    size = max(1, len(cpus) // parallel)
    start = (slot * size) % len(cpus)
    return set(cpus[start : start + size])


def _dies_with_parent() -> Callable[[], None] | None:
    """What a child runs before its command so that it gets SIGTERM (and checkpoints) when
    this process dies, however it dies: prctl(PR_SET_PDEATHSIG) on Linux; None elsewhere,
    where a killed launcher's runs go on to their end."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here, not in the fork
    parent = os.getpid()

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the line above took hold
            os.kill(os.getpid(), signal.SIGTERM)

    return arm


def _start(job: Job, cpus: set[int]) -> subprocess.Popen:
    output = None
    if job.log is not None:
        job.log.parent.mkdir(parents=True, exist_ok=True)
        output = job.log.open("a")
    try:
        process = subprocess.Popen(
            job.command(), stdout=output, stderr=output, preexec_fn=_dies_with_parent()
        )
    finally:
        if output is not None:
            output.close()
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(process.pid, cpus)
    return process


def run_jobs(next_job: Callable[[], Job | None], parallel: int) -> tuple[bool, int | None]:
    """Run the jobs ``next_job`` hands out (None: no more for now), ``parallel`` at a time,
    until it has none and none is running. Return whether a job failed, and the signal that
    stopped the launcher (Ctrl-C or SIGTERM; None if none did). An exception from a job (or
    ``next_job``) stops the running runs, waits for them, and propagates."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    running: dict[int, tuple[Job, subprocess.Popen]] = {}  # by slot
    told_to_stop: set[int] = set()  # pids sent SIGTERM
    failed = False
    with StopSignals() as stop:
        try:
            while True:
                while len(running) < parallel and not stop.requested:
                    job = next_job()
                    if job is None:
                        break
                    slot = min(set(range(parallel)) - set(running))
                    running[slot] = (job, _start(job, cpu_share(cpus, slot, parallel)))
                if not running:
                    break
                for slot, (job, process) in list(running.items()):
                    if process.poll() is not None:
                        failed |= not job.finished(process.returncode, stop.requested)
                        del running[slot]
                    elif process.pid not in told_to_stop and (stop.requested or job.watch()):
                        process.send_signal(signal.SIGTERM)
                        told_to_stop.add(process.pid)
                time.sleep(POLL_SECONDS)
        except BaseException:
            for _, process in running.values():
                if process.poll() is None and process.pid not in told_to_stop:
                    process.send_signal(signal.SIGTERM)
            for _, process in running.values():
                process.wait()
            raise
    return failed, stop.signum
