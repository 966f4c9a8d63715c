"""How many CPUs this process may use, and how many threads its policy math should take.

The CPUs come from what the process is actually given, not from the machine: its CPU affinity
(``taskset``, Slurm, a launcher's pinning), a cgroup CPU quota (containers, Slurm), and the
torchrun ranks that share the node. The policy's threads come from how much math one call does:
a parallel region costs a fork and a join on every kernel, which small policies never earn
back, and a thread that waits in a join spins on a core another process may need.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC = Path("/proc")

PARALLEL_FLOPS = 1e9
"""The floating-point work of one call (forward, or forward and backward) from which the
policy's math runs on every CPU: below it a call takes a few milliseconds on one core, and
splitting its kernels saves less than their fork/join and spin-waiting cost (measured in
experiments/RESULTS.md, "Threads")."""


@dataclass(frozen=True)
class CpuBudget:
    """The CPUs this process may use, and where that number came from (printed at start)."""

    cpus: int
    reason: str
    whole_affinity: bool = True
    """The process may use every CPU of its affinity: no cgroup quota and no ranks cut it to a
    share, so what other processes do on those CPUs is what it competes with."""


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (cgroup v2 ``cpu.max``, or v1
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``); None where there is no quota."""
    v2 = root / "cpu.max"
    if v2.is_file():
        quota, _, period = v2.read_text().strip().partition(" ")
        return None if quota == "max" else int(quota) / int(period or 100_000)
    for folder in ("cpu", "cpu,cpuacct"):
        quota_file = root / folder / "cpu.cfs_quota_us"
        if quota_file.is_file():
            quota = int(quota_file.read_text())
            period = int((root / folder / "cpu.cfs_period_us").read_text())
            return None if quota <= 0 else quota / period
    return None


def _affinity() -> set[int]:
    if hasattr(os, "sched_getaffinity"):
        return os.sched_getaffinity(0)
    return set(range(os.cpu_count() or 1))


def cpu_budget(
    local_ranks: int = 1,
    affinity: Callable[[], set[int]] = _affinity,
    cgroup_root: Path = CGROUP_ROOT,
) -> CpuBudget:
    """The CPUs of this process's affinity, capped by a cgroup quota (rounded down, at least
    one), shared evenly by the ``local_ranks`` ranks on this node."""
    cpus = whole = len(affinity())
    reason = f"{cpus} CPU(s) in the process's affinity"
    quota = cgroup_cpu_limit(cgroup_root)
    if quota is not None and math.floor(quota) < cpus:
        cpus = max(1, math.floor(quota))
        reason = f"a cgroup CPU quota of {quota:g}"
    if local_ranks > 1:
        cpus = max(1, cpus // local_ranks)
        reason += f", shared by {local_ranks} ranks"
    return CpuBudget(cpus, reason, cpus == whole)


def _busy_ticks(cpus: set[int], proc: Path) -> int:
    """Clock ticks ``cpus`` have spent busy since boot: every state of ``/proc/stat`` but idle
    and iowait (guest time is already inside user time)."""
    busy = 0
    for line in (proc / "stat").read_text().splitlines():
        name, *values = line.split()
        if name[3:].isdigit() and name.startswith("cpu") and int(name[3:]) in cpus:
            ticks = [int(value) for value in values[:8]]
            busy += sum(ticks) - ticks[3] - ticks[4]
    return busy


def _own_ticks(proc: Path) -> int:
    """Clock ticks this process and every process below it (env workers) have run."""
    children: dict[int, list[int]] = {}
    ticks: dict[int, int] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:  # ended since the listing
            continue
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)  # after the name: state, ppid, ...
        ticks[pid] = int(fields[11]) + int(fields[12])  # utime, stime
    total, below = 0, [os.getpid()]
    while below:
        pid = below.pop()
        total += ticks.get(pid, 0)
        below += children.get(pid, [])
    return total


class OtherLoad:
    """How many of this process's CPUs other processes keep busy, measured from this object's
    creation on (``/proc/stat``; this process and its children, such as env workers, left out).

    A trainer creates it first, so the window covers its own start-up: two runs started
    together see each other starting, where a short look at the end of start-up could fall
    while both sleep."""

    def __init__(self, cpus: set[int] | None = None, proc: Path = PROC) -> None:
        self.cpus, self.proc = _affinity() if cpus is None else cpus, proc
        self.started = time.monotonic()
        try:
            self.ticks: tuple[int, int] | None = (_busy_ticks(self.cpus, proc), _own_ticks(proc))
        except (OSError, ValueError, IndexError):
            self.ticks = None  # no /proc: nothing to tell

    def cpus_busy(self, min_window_s: float = 0.2) -> float:
        """CPUs' worth of other processes' work since creation (at least ``min_window_s``
        seconds, waiting out the rest); 0 where ``/proc`` cannot tell."""
        if self.ticks is None:
            return 0.0
        time.sleep(max(0.0, self.started + min_window_s - time.monotonic()))
        try:
            busy = _busy_ticks(self.cpus, self.proc) - self.ticks[0]
            own = _own_ticks(self.proc) - self.ticks[1]
        except (OSError, ValueError, IndexError):
            return 0.0
        seconds = time.monotonic() - self.started
        return max(0.0, (busy - own) / os.sysconf("SC_CLK_TCK") / seconds)


def forward_flops(call: Callable[[], object]) -> int:
    """Floating-point operations ``call`` runs (matmuls, convolutions, attention)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        call()
    return counter.get_total_flops()


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """torch's intra-op threads set to ``count`` inside the block, and back after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def threads_for(flops: float, cpus: int) -> int:
    """Threads for a call doing ``flops`` of work on ``cpus`` CPUs: all of them for large
    calls, one for small ones."""
    return cpus if flops >= PARALLEL_FLOPS else 1


@dataclass(frozen=True)
class ThreadPlan:
    """Torch threads for the update and for acting in the rollout, and why (printed)."""

    update: int
    acting: int
    reason: str


def plan_threads(
    flops_per_row: float,
    minibatch_rows: int,
    acting_rows: int,
    budget: CpuBudget,
    env_threads: int,
    requested: int = 0,
    busy: Callable[[], float] = lambda: 0.0,
    kept: int | None = None,
) -> ThreadPlan:
    """Threads for a policy doing ``flops_per_row`` per row forward: the update (forward and
    backward of ``minibatch_rows`` rows) may use every CPU that other processes leave free at
    start (``busy``: how many they keep busy, asked only for an update large enough to want
    several, and only where the budget is the whole affinity), acting (``acting_rows`` rows at
    a time) those that the ``env_threads`` stepping envs leave; each takes one thread unless
    its call is large enough to pay for more.
    ``requested`` (``--threads``) overrides both; ``kept``, a resumed run's update threads from
    its start, overrides the update's, so the run goes on computing as it began."""
    acting_cpus = max(1, budget.cpus - env_threads)
    if requested:
        acting = min(requested, acting_cpus)
        return ThreadPlan(requested, acting, f"--threads {requested}; {budget.reason}")
    update_flops = 3 * flops_per_row * minibatch_rows
    update = threads_for(update_flops, budget.cpus)
    acting = threads_for(flops_per_row * acting_rows, acting_cpus)
    size = "at least" if update_flops >= PARALLEL_FLOPS else "under"
    reason = (
        f"{update_flops / 1e9:.3g} GFLOP per minibatch step, {size} "
        f"{PARALLEL_FLOPS / 1e9:g}; {budget.reason}"
    )
    if kept is not None:
        return ThreadPlan(min(kept, budget.cpus), acting, f"as the run began; {reason}")
    if update > 1 and budget.whole_affinity:
        # threads that share a core with another busy process wait on each other in every
        # join: two Breakout runs at once took 1.5x two in turn, one beside a busy loop 3.3x.
        # (Under a quota or beside sibling ranks, the load on the affinity's CPUs is not all
        # this process's competition: it keeps its share.)
        taken = math.floor(busy() + 0.5)
        if taken:
            update = max(1, update - taken)
            reason += f", {taken} kept busy by other processes at start"
    return ThreadPlan(update, acting, reason)
