"""A sample of each env family the extras install goes through one tiny update via the CLI, or
stops with one clear line: never a traceback, never a hang. ``experiments/catalogue.py`` walks
every id."""

from __future__ import annotations

import importlib.util
import signal
import sys
from collections.abc import Iterator

import pytest

from puffertrain.cli import main

HANG_S = 300
TINY = ["--num-envs", "2", "--num-steps", "8", "--total-timesteps", "16", "--no-compile"]
TRAINS = [
    "CartPole-v1",  # classic control
    "Pendulum-v1",  # continuous preset: its 32 minibatches adapt to the 16-step batch
    "FrozenLake-v1",  # toy text: Discrete observations, one-hot
    "Taxi-v4",
    "Blackjack-v1",  # Tuple of Discretes
    "InvertedPendulum-v5",  # MuJoCo
    "ALE/Breakout-v5",  # native ALE engine: the preset's env batch of 4 adapts to 2 envs
    "Pong-v4",
    "MiniGrid-Empty-5x5-v0",  # registered by importing minigrid; mission dropped
    "BabyAI-GoToRedBallGrey-v0",
    "tests.space_envs:multi_binary",
    "tests.space_envs:integer_vector",
]
ONE_LINE = {
    "HalfCheetah-v2": "gymnasium-robotics). (HalfCheetah-v5 is registered)",
    "Pusher-v4": "only supported on `mujoco<3`",
    "GymV26Environment-v0": 'pip install "shimmy[gym-v26]"',
    "tests.space_envs:graph_leaf": "observation leaf 'links' is a Graph space",
}
if importlib.util.find_spec("Box2D") is None:  # the envs and dev extras install it
    ONE_LINE["LunarLander-v3"] = "Box2D is not installed"
else:
    TRAINS += ["LunarLander-v3", "BipedalWalker-v3"]  # Box2D: Discrete, and Box actions
if importlib.util.find_spec("highway_env") is None:
    ONE_LINE["highway-v0"] = "pip install highway-env"


@pytest.fixture
def deadline() -> Iterator[None]:
    """A hang fails the test instead of stalling the suite. The limit is generous: on a
    shared, loaded 2-core machine one tiny run took up to a minute."""

    def hang(signum: int, frame: object) -> None:
        raise TimeoutError(f"hung for {HANG_S} s")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.setitimer(signal.ITIMER_REAL, HANG_S)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def _vec(env_id: str) -> list[str]:
    """The serial engine outside ALE: worker start-up would dominate a 16-step run."""
    return [] if env_id.startswith(("ALE/", "Pong")) else ["--vec", "serial"]


@pytest.mark.parametrize("env_id", TRAINS)
def test_trains(env_id, tmp_path, capsys, deadline):
    main(["--env", env_id, *TINY, *_vec(env_id), "--device", "cpu", "--run-dir", str(tmp_path)])
    assert "Traceback" not in capsys.readouterr().err
    assert list((tmp_path / "checkpoints").glob("*.pt"))


@pytest.mark.parametrize("env_id", list(ONE_LINE))
def test_one_clear_line(env_id, tmp_path, capsys, deadline):
    with pytest.raises(SystemExit) as exit_info:
        main(["--env", env_id, *TINY, "--run-dir", str(tmp_path / "run")])
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("puffertrain: error: "), errors
    assert ONE_LINE[env_id] in errors[0]
    assert not (tmp_path / "run").exists()


def test_minigrid_id_notes_the_import_and_the_dropped_mission(tmp_path, capsys, deadline):
    pytest.importorskip("minigrid")
    main(["--env", "MiniGrid-Empty-5x5-v0", *TINY, "--vec", "serial", "--run-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert err.count("does not see the text observation leaf 'mission'") == 1


def _walker():
    """experiments/catalogue.py, the full walk's script."""
    from pathlib import Path

    path = Path(__file__).parents[1] / "experiments" / "catalogue.py"
    spec = importlib.util.spec_from_file_location("catalogue_walk", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_walk_runs_each_id_in_a_fresh_process_and_kills_a_hang(tmp_path):
    """The walk forked its children from a process that had imported torch and the env
    packages, and 4 of them hung at start-up; each id now starts a fresh process in its own
    session, and a timed-out one is killed with everything it started."""
    walker = _walker()
    rows = []
    walker.walk(["CartPole-v1"], jobs=1, timeout_s=0.3, vec="serial", on_row=rows.append)
    assert [(row.env_id, row.result) for row in rows] == [("CartPole-v1", "hang")]


def test_walk_resumes_from_its_rows(tmp_path):
    """The full walk goes in pieces: the ids already in --out are not walked again."""
    walker = _walker()
    out = tmp_path / "rows.jsonl"
    out.write_text('{"env_id": "CartPole-v1", "result": "trained", "message": "", "seconds": 1}\n')
    assert walker.read_rows(out)["CartPole-v1"].result == "trained"


def test_walk_tells_an_env_that_raises_from_a_traceback_of_puffertrain():
    """MiniGrid-WFC-* raise in their own reset (the minigrid 3.2.0 wheel lacks their pattern
    files): puffertrain names the env in one line and shows the env's traceback on purpose."""
    walker = _walker()
    stderr = (
        "puffertrain: error: env 0 raised on reset:\nTraceback (most recent call last):\n"
        '  File "wfc/config.py", line 56\nFileNotFoundError: SimpleMaze.png\n'
    )
    assert walker.classify(2, stderr) == ("env raised", "FileNotFoundError: SimpleMaze.png")
    assert walker.classify(1, "Traceback (most recent call last):\nKeyError: 1")[0] == "traceback"
