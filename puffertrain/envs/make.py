"""Turn an env id from the command line into env factories, with clear errors for bad ids."""

from __future__ import annotations

import difflib
import importlib
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, NamedTuple

import gymnasium as gym

from puffertrain.envs.families import family_of, import_family
from puffertrain.envs.multiagent import AgentRows, is_parallel_env
from puffertrain.errors import UserError

EnvFactory = Callable[[], gym.Env]


def register_ale() -> None:
    """Make the ``ALE/*`` ids known to gymnasium (ale-py registers them on import)."""
    import ale_py

    gym.register_envs(ale_py)


def _import(module_name: str, env_id: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ImportError as error:
        raise UserError(f"env '{env_id}': cannot import module '{module_name}': {error}") from None


def _unknown_id(env_id: str) -> UserError:
    close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return UserError(f"unknown env id '{env_id}'{hint}")


def _newer_version(env_id: str) -> str:
    """`` (NAME-vK is registered)`` for the newest other version of a versioned id built by
    other code (the same entry point would fail the same way), else ""."""
    namespace, name, version = gym.envs.registration.parse_env_id(env_id)
    newest = gym.envs.registration.find_highest_version(namespace, name)
    if version is None or newest is None or newest == version:
        return ""
    newest_id = gym.envs.registration.get_env_id(namespace, name, newest)
    if gym.registry[newest_id].entry_point == gym.registry[env_id].entry_point:
        return ""
    return f" ({newest_id} is registered)"


def _with_kwargs(build: Callable[..., gym.Env], env_id: str, kwargs: dict[str, Any]) -> gym.Env:
    """``build(**kwargs)``; a keyword the env does not take is the user's --env-kwargs, and a
    missing optional dependency (Box2D, mujoco<3, shimmy...) is one line with the env's hint."""
    try:
        return build(**kwargs)
    except TypeError as error:
        if kwargs and "keyword argument" in str(error):
            reason = str(error).split(" was raised from")[0]
            if "'render_mode'" in reason:  # asked for by video recording, not by the user
                raise UserError(
                    f"env '{env_id}' cannot record videos (--video, --video-interval): "
                    f"it takes no render_mode ({reason})"
                ) from None
            raise UserError(f"--env-kwargs for '{env_id}': {reason}") from None
        raise
    except (gym.error.DependencyNotInstalled, ImportError) as error:
        hint = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UserError(
            f"env '{env_id}' needs something not installed: {hint}{_newer_version(env_id)}"
        ) from None


def out_of_date_note(env_id: str) -> str:
    """One line saying a newer version of a registered id exists, else "": gymnasium warns at
    every build, in every worker, which the envs' builds now keep quiet."""
    name = env_id.split(":", 1)[1] if ":" in env_id else env_id
    if name not in gym.registry:
        return ""
    namespace, base, version = gym.envs.registration.parse_env_id(name)
    newest = gym.envs.registration.find_highest_version(namespace, base)
    if version is None or newest is None or newest <= version:
        return ""
    newest_id = gym.envs.registration.get_env_id(namespace, base, newest)
    return f"puffertrain: note: {name} is out of date; gymnasium also has {newest_id}"


def _make_registered(module_name: str | None, env_id: str, kwargs: dict[str, Any]) -> gym.Env:
    if module_name:
        importlib.import_module(module_name)
    register_ale()
    with quiet_out_of_date():
        return _with_kwargs(partial(gym.make, env_id), env_id, kwargs)


@contextmanager
def quiet_out_of_date() -> Iterator[None]:
    """Builds of an env without gymnasium's warning that its id is out of date, which it gives
    at every build, in every worker: the command says it once (:func:`out_of_date_note`)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is out of date", category=DeprecationWarning)
        yield


def _call(module_name: str, name: str, kwargs: dict[str, Any]) -> gym.Env:
    build = getattr(importlib.import_module(module_name), name)
    return _with_kwargs(build, f"{module_name}:{name}", kwargs)


def env_factory(env_id: str, env_kwargs: dict[str, Any] | None = None) -> EnvFactory:
    """A zero-argument callable that builds one env for ``env_id``; it pickles, so worker
    processes can build their own envs with it.

    Accepts a registered id, ``module:EnvName-v0`` (the module registers the id on import) and
    ``package.module:callable`` (the callable returns a gymnasium env or a PettingZoo
    ``ParallelEnv``, such as ``mpe2.simple_spread_v3:parallel_env``). An id of a package's
    family (``MiniGrid-*``: minigrid) is registered by importing the package, with a note on
    stderr. Raises ``UserError`` for ids that resolve to nothing, suggesting close registered
    ids, and naming the ``pip install`` of a family whose package is missing.
    """
    kwargs = dict(env_kwargs or {})
    if ":" in env_id:
        module_name, name = env_id.split(":", 1)
        module = _import(module_name, env_id)
        if name in gym.registry:
            return partial(_make_registered, module_name, name, kwargs)
        if not callable(getattr(module, name, None)):
            raise UserError(
                f"env '{env_id}': module '{module_name}' neither registers id '{name}' "
                f"nor defines a callable named '{name}'"
            )
        return partial(_call, module_name, name, kwargs)
    register_ale()
    family = family_of(env_id)
    if env_id not in gym.registry and family is not None and family.module not in sys.modules:
        import_family(family, env_id)
        print(
            f"puffertrain: note: imported {family.module} to register '{env_id}' "
            f"({family.module} registers the {'*, '.join(family.prefixes)}* ids)",
            file=sys.stderr,
        )
    if env_id not in gym.registry:
        raise _unknown_id(env_id)
    return partial(_make_registered, family.module if family else None, env_id, kwargs)


def _family_of(location: str) -> str:
    """The preset family of the code at ``location`` (an entry point or a module name)."""
    if location.startswith("ale_py"):
        return "atari"
    if location.startswith("minigrid"):
        return "minigrid"
    if "classic_control" in location:
        return "classic_control"
    if "mujoco" in location:
        return "mujoco"
    return "other"


def env_family(env_id: str) -> str:
    """Which preset family an id belongs to: "atari", "classic_control", "mujoco", "minigrid"
    or "other"."""
    register_ale()
    name = env_id.split(":", 1)[1] if ":" in env_id else env_id
    spec = gym.registry.get(name)
    return _family_of(str(spec.entry_point) if spec is not None else "")


def built_env_family(env: Any) -> str:
    """The preset family of an env that was built, by the module of the env inside its
    wrappers: a ``module:callable`` id (a wrapped CartPole, say) has no registry entry to
    tell, and without this got CleanRL's generic values instead of its family's preset."""
    return _family_of(type(getattr(env, "unwrapped", env)).__module__)


class Probe(NamedTuple):
    """What one built env tells about its id: spaces (of one agent's row for a multi-agent
    env), number of agents (0 for a gymnasium env) and preset family
    (:func:`built_env_family`)."""

    observation_space: gym.spaces.Space
    action_space: gym.spaces.Space
    num_agents: int
    family: str


def probe_env(factory: EnvFactory) -> Probe | None:
    """Build one env with ``factory`` and describe it, or None if it fails to build (the
    trainer reports that failure when it builds its envs); a ``UserError`` (a missing
    dependency) is raised at once."""
    try:
        env = factory()
        family = built_env_family(env)
        if is_parallel_env(env):
            env = AgentRows(env)
    except UserError:
        raise
    except Exception:
        return None
    try:
        return Probe(env.observation_space, env.action_space, getattr(env, "num_agents", 0), family)
    finally:
        env.close()


def is_atari(env_id: str) -> bool:
    """Whether ``env_id`` is an ALE id (gets the Atari preprocessing and the native backend)."""
    return env_family(env_id) == "atari"
