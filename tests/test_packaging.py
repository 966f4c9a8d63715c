"""The Dockerfile lints clean, and it, CI and README's commands share one install step."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.conftest import REPO_ROOT

INSTALL = "bash install.sh"


def readme_commands() -> list[str]:
    """The indented shell lines of README's quick start."""
    text = (REPO_ROOT / "README.md").read_text()
    quick_start = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [line.strip() for line in quick_start.splitlines() if line.startswith("    ")]


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint comes with the dev extra")
def test_the_dockerfile_passes_hadolint():
    done = subprocess.run(["hadolint", "Dockerfile"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_readme_ci_and_docker_install_with_the_same_script():
    train, tests = readme_commands()[:2]
    assert train == f"{INSTALL} && python -m puffertrain --env ALE/Breakout-v5 --policy cnn"
    assert tests.startswith(f"{INSTALL} dev && ") and tests.endswith("python -m pytest")
    assert tests in (REPO_ROOT / ".ci" / "run").read_text()
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert re.search(r"^RUN .*\bbash install\.sh$", dockerfile, re.MULTILINE)
    for copied in ("install.sh", "pyproject.toml", "puffertrain", "policies"):
        assert re.search(rf"^COPY .*\b{re.escape(copied)}\b", dockerfile, re.MULTILINE), copied


def test_the_image_runs_the_trainer_as_a_non_root_user():
    lines = (REPO_ROOT / "Dockerfile").read_text().splitlines()
    assert 'ENTRYPOINT ["python", "-m", "puffertrain"]' in lines
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert {".git", "runs"} <= set(ignored)


def test_the_console_script_imports_a_users_module_from_the_current_directory(tmp_path):
    """`puffertrain --policy mypolicy:Tiny` could not import mypolicy.py from the directory it
    ran in, where `python -m puffertrain` (which the README says it is) could."""
    script = shutil.which("puffertrain")
    if script is None:
        pytest.skip("the puffertrain console script is not installed")
    (tmp_path / "mypolicy.py").write_text(
        (REPO_ROOT / "tests" / "user_policy.py").read_text().split("\n\nclass DictReader")[0]
    )
    args = ["--env", "CartPole-v1", "--policy", "mypolicy:TinyPolicy", "--num-envs", "2"]
    args += ["--num-steps", "16", "--total-timesteps", "32", "--run-dir", str(tmp_path / "r")]
    result = subprocess.run([script, *args], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
