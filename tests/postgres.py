"""A throwaway PostgreSQL server for tests: its own cluster in a temporary dir, on a free port,
started with the Debian packages' binaries (``apt-get install postgresql``); the test skips,
saying why, where it cannot start one."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def _binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server; yield its SQLAlchemy URL; stop it and remove its files."""
    pytest.importorskip("psycopg", reason="no PostgreSQL driver (pip install 'psycopg[binary]')")
    binaries = _binaries()
    if binaries is None:
        pytest.skip("no PostgreSQL server binaries (apt-get install postgresql)")
    # postgres refuses to run as root: as root, the cluster belongs to `nobody`
    user = "nobody" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="puffertrain-pg-"))
    data = root / "data"
    if user is not None:
        shutil.chown(root, user)
    port = _free_port()

    def run(*command: str) -> subprocess.CompletedProcess:
        return subprocess.run(command, user=user, capture_output=True, text=True, timeout=120)

    try:
        made = run(str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust")
        if made.returncode != 0:
            pytest.skip(f"initdb failed: {made.stderr.strip().splitlines()[-1:]}")
        options = f"-p {port} -k {root} -h 127.0.0.1"
        log = str(root / "server.log")
        pg_ctl = str(binaries / "pg_ctl")
        started = run(pg_ctl, "-D", str(data), "-l", log, "-o", options, "-w", "start")
        if started.returncode != 0:
            pytest.skip(f"PostgreSQL did not start: {Path(log).read_text()[-300:]}")
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            run(pg_ctl, "-D", str(data), "-m", "immediate", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
