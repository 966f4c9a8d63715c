from __future__ import annotations

import importlib
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "puffertrain", *args]


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run ``python -m puffertrain ARGS`` in a subprocess and capture its output."""
    return _run(cli_command(*args), cwd or REPO_ROOT, timeout)


def run_python(script: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``python -c SCRIPT`` from the repo in a fresh interpreter and capture its output."""
    return _run([sys.executable, "-c", script], REPO_ROOT, timeout)


def _run(command: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=timeout
    )


def start_cli(*args: str) -> subprocess.Popen:
    """Start ``python -m puffertrain ARGS`` in a session of its own (so a test can signal its
    whole process group, as a terminal's Ctrl-C does), its output piped as text."""
    return subprocess.Popen(
        cli_command(*args),
        cwd=REPO_ROOT,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def in_process(capsys: pytest.CaptureFixture[str], *args: str) -> subprocess.CompletedProcess:
    """``python -m puffertrain ARGS`` run in this process, whose imports are already loaded (a
    new interpreter spends ~3 s importing torch): its exit status, stdout and stderr, as
    ``run_cli`` gives them. For tests of what a command does, not of how its process ends."""
    from puffertrain.cli import main

    capsys.readouterr()
    code: int | str | None = 0
    try:
        main(list(args))
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    if isinstance(code, str):  # sys.exit(message): Python prints it and exits 1
        code, err = 1, err + code + "\n"
    return subprocess.CompletedProcess(["puffertrain", *args], code or 0, out, err)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """The CLI, in this process (see ``in_process``)."""
    return lambda *args: in_process(capsys, *args)


@pytest.fixture
def experiment_script(monkeypatch: pytest.MonkeyPatch):
    """Imports a script of ``experiments/`` by name, freshly and with its folder on
    ``sys.path``, as the script itself runs."""

    def load(name: str):
        monkeypatch.syspath_prepend(str(REPO_ROOT / "experiments"))
        monkeypatch.delitem(sys.modules, name, raising=False)
        return importlib.import_module(name)

    return load


@pytest.fixture(autouse=True)
def closes_its_worker_processes(request):
    """Every test closes the worker processes it starts: one left running outlives the test,
    and at exit the interpreter waits for it."""
    before = set(multiprocessing.active_children())
    yield
    deadline = time.monotonic() + 5
    while set(multiprocessing.active_children()) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    left = set(multiprocessing.active_children()) - before
    assert not left, f"{request.node.name} left worker processes running: {left}"


def child_pids() -> set[int] | None:
    """This process's live child processes (None where /proc does not list them)."""
    children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children")
    if not children.exists():
        return None
    return {int(pid) for pid in children.read_text().split()}
