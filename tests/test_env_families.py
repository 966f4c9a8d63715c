"""Ids of env packages register by importing the package, or name the pip install."""

from __future__ import annotations

import warnings

import pytest

from puffertrain.engine.gym_vector import make_vector
from puffertrain.envs.families import Family, family_of, import_family
from puffertrain.envs.make import env_factory, out_of_date_note
from puffertrain.errors import UserError


def test_family_of_matches_prefixes():
    assert family_of("BabyAI-GoToLocal-v0").module == "minigrid"
    assert family_of("ALE/Pong-v5").module == "ale_py"
    assert family_of("CartPole-v1") is None


def test_a_missing_package_names_its_pip_install():
    family = Family(("Nope-",), "no_such_env_package", "nope-envs")
    with pytest.raises(UserError, match="pip install nope-envs"):
        import_family(family, "Nope-v0")


def test_an_unknown_id_of_a_family_still_suggests_close_ids():
    pytest.importorskip("minigrid")
    with pytest.raises(UserError, match="did you mean MiniGrid-Empty-5x5-v0"):
        env_factory("MiniGrid-Empty-5x5-v9")


def test_a_moved_id_names_the_newest_version():
    with pytest.raises(UserError, match=r"gymnasium-robotics.*\(Hopper-v5 is registered\)"):
        env_factory("Hopper-v3")()


def test_an_out_of_date_id_is_said_once_and_its_builds_stay_quiet(capsys):
    # gymnasium warned at every build of the env, in every worker: four yellow warnings for
    # Humanoid-v4 on the multiprocessing engine
    from puffertrain.cli import preset_family

    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        env_factory("CartPole-v0")().close()
        make_vector("CartPole-v0", 2, {}).close()  # the native engine's vector env
        assert preset_family("CartPole-v0", {})[0] == "classic_control"
    assert capsys.readouterr().err == (
        "puffertrain: note: CartPole-v0 is out of date; gymnasium also has CartPole-v1\n"
    )
    assert out_of_date_note("CartPole-v1") == out_of_date_note("Humanoid-v5") == ""
