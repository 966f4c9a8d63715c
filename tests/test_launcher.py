"""The launcher behind ``--seeds`` and ``sweep``: its runs never outlive it, however it ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from puffertrain.launcher import Job, run_jobs
from tests.conftest import REPO_ROOT, child_pids, cli_env


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its new parent to reap it does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _wait_for(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_launcher_killed_outright_takes_its_runs_with_it(tmp_path):
    pid_file = tmp_path / "child.pid"
    launcher = textwrap.dedent(
        f"""
        from puffertrain.launcher import Job, run_jobs

        class Sleeper(Job):
            def command(self):
                return ["sh", "-c", "echo $$ > {pid_file}; exec sleep 60"]

        jobs = [Sleeper()]
        run_jobs(lambda: jobs.pop() if jobs else None, 1)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", launcher], cwd=REPO_ROOT, env=cli_env())
    try:
        assert _wait_for(lambda: pid_file.exists() and pid_file.read_text().strip())
        child = int(pid_file.read_text())
        assert _alive(child)
        process.kill()  # SIGKILL: no handler of the launcher's runs
        process.wait()
        assert _wait_for(lambda: not _alive(child)), "the run outlived its killed launcher"
    finally:
        process.kill()
        if pid_file.exists() and _alive(child := int(pid_file.read_text())):
            os.kill(child, signal.SIGKILL)


class _Failing(Job):
    """A long run whose watcher fails (as a sweep's does when its database goes)."""

    def command(self) -> list[str]:
        return ["sleep", "60"]

    def watch(self) -> bool:
        raise RuntimeError("the watcher failed")


def test_an_error_in_the_launcher_stops_its_runs_before_it_propagates():
    jobs: list[Job] = [_Failing()]
    before, started = child_pids(), time.monotonic()
    with pytest.raises(RuntimeError, match="the watcher failed"):
        run_jobs(lambda: jobs.pop() if jobs else None, 1)
    assert time.monotonic() - started < 30
    after = child_pids()
    if after is not None:  # the run was stopped and waited for (earlier tests' children aside)
        assert after <= before


def test_a_run_that_checkpointed_when_told_to_stop_did_not_fail():
    from puffertrain.launcher import Job

    job = Job()
    assert job.finished(-signal.SIGTERM, stopped=True) and job.finished(143, stopped=True)
    assert not job.finished(-signal.SIGTERM, stopped=False) and not job.finished(2, stopped=True)
