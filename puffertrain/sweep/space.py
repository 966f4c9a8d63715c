"""The search space: which train flags a sweep searches, over which values.

A space maps train flag names (``learning-rate``) to a range or a list of choices; the entries
of the JSON-object flags (``policy-kwargs.hidden_size``) are searched one by one. Each preset
family has a default space; a TOML file (``--space``) changes it, entry by entry:

    [learning-rate]            # a range: floats, or ints when both ends are ints
    low = 1e-5
    high = 1e-2
    log = true
    num-minibatches = { choices = [1, 2, 4] }
    gamma = 0.99               # a value: fixed, not searched
    [policy-kwargs]
    hidden_size = { choices = [64, 128] }

and ``defaults = false`` at the top searches the file's entries alone.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from policies import POLICIES
from puffertrain.config import PPOConfig, TrainConfig, parse_kwargs, value_problem
from puffertrain.errors import UserError
from puffertrain.policy_loader import policy_class

if sys.version_info >= (3, 11):
    import tomllib
else:  # the `sweep` extra installs tomli there
    import tomli as tomllib

if typing.TYPE_CHECKING:
    import optuna

KWARGS_FLAGS = ("policy-kwargs", "env-kwargs")
"""Flags holding a JSON object, whose entries a space names as ``FLAG.KEY``."""
NOT_SEARCHABLE = frozenset(
    {"env", "seeds", "parallel", "run-dir", "resume", "config", "overwrite", "list-policies"}
)
Value = bool | int | float | str


def _flag_types() -> dict[str, Any]:
    """Each train flag's value type, by flag name."""
    hints = typing.get_type_hints(TrainConfig) | typing.get_type_hints(PPOConfig)
    return {
        name.replace("_", "-"): kind
        for name, kind in hints.items()
        if name != "ppo" and name.replace("_", "-") not in NOT_SEARCHABLE
    }


FLAG_TYPES = _flag_types()


@dataclass(frozen=True)
class Param:
    """One searched flag: a range (``low``..``high``, on a log scale if ``log``) or
    ``choices``."""

    flag: str
    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    choices: tuple[Value, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Value:
        if self.choices:
            return trial.suggest_categorical(self.flag, list(self.choices))
        if isinstance(self.low, int) and isinstance(self.high, int):
            return trial.suggest_int(self.flag, self.low, self.high, log=self.log)
        return trial.suggest_float(self.flag, float(self.low), float(self.high), log=self.log)

    def contains(self, value: Value) -> bool:
        if self.choices:
            return value in self.choices
        return isinstance(value, (int, float)) and self.low <= value <= self.high

    def describe(self) -> str:
        if self.choices:
            return "{" + ", ".join(map(str, self.choices)) + "}"
        return f"{self.low:g}..{self.high:g}{' (log)' if self.log else ''}"


@dataclass(frozen=True)
class Space:
    """Searched flags, and flags the space fixes."""

    params: dict[str, Param]
    fixed: dict[str, Value] = dataclasses.field(default_factory=dict)

    def suggest(self, trial: optuna.Trial) -> dict[str, Value]:
        """A trial's values for every flag: searched ones from the trial, fixed ones as set."""
        return {**self.fixed, **{flag: param.suggest(trial) for flag, param in self.params.items()}}

    def as_dict(self) -> dict[str, Any]:
        """What the study keeps to tell a later command's space from its own."""
        return {
            "params": {flag: dataclasses.asdict(param) for flag, param in self.params.items()},
            "fixed": self.fixed,
        }


def _log_range(flag: str, low: float, high: float) -> Param:
    return Param(flag, low, high, log=True)


def default_space(family: str, width: int | None, start: TrainConfig | None = None) -> Space:
    """The default space for a preset family; ``width`` is the policy's default hidden size
    (None: the policy takes none, and width is not searched). Entropy bonuses are linear
    from 0, the presets' value for several families. A choice also holds ``start``'s value,
    so the first trial can try the starting config (the generic preset's 16 minibatches)."""
    if family in ("mujoco", "classic_continuous"):  # the continuous preset's sizes
        family = "continuous"
    steps = {
        "atari": (64, 128, 256),
        "continuous": (512, 1024, 2048, 4096),
        "multi_agent": (32, 64, 128),
    }.get(family, (16, 32, 64, 128, 256))
    minibatches = (8, 16, 32, 64) if family == "continuous" else (1, 2, 4, 8)
    params = [
        _log_range("learning-rate", 1e-5, 1e-3 if family == "atari" else 1e-2),
        Param("ent-coef", 0.0, 0.05),
        Param("clip-coef", 0.1, 0.4),
        Param("update-epochs", 1, 20, log=True),
        Param("num-minibatches", choices=minibatches),
        Param("gamma", choices=(0.9, 0.95, 0.98, 0.99, 0.995, 0.999)),
        Param("gae-lambda", choices=(0.8, 0.9, 0.92, 0.95, 0.98, 0.99, 1.0)),
        Param("num-steps", choices=steps),
    ]
    if width is not None:
        widths = (256, 512) if family == "atari" else (64, 128, 256)
        params.append(Param("policy-kwargs.hidden_size", choices=tuple(sorted({*widths, width}))))
    if start is not None:
        params = [_with_start(param, start) for param in params]
    return Space({param.flag: param for param in params})


def _config_value(config: TrainConfig, flag: str) -> Any:
    """The value ``config`` holds for the train flag ``flag`` (None for no such field)."""
    field = flag.replace("-", "_")
    return getattr(config.ppo if hasattr(config.ppo, field) else config, field, None)


def _with_start(param: Param, start: TrainConfig) -> Param:
    """``param`` with ``start``'s value among its choices (a range is left as it is)."""
    value = _config_value(start, param.flag)
    if not param.choices or value is None:
        return param
    return dataclasses.replace(param, choices=tuple(sorted({*param.choices, value})))


def policy_width(policy: str) -> int | None:
    """The default ``hidden_size`` of a library policy (None if it takes none)."""
    entry = POLICIES.get(policy)
    if entry is None:
        return None
    parameter = inspect.signature(entry.cls).parameters.get("hidden_size")
    return None if parameter is None else parameter.default


def _error(source: str, key: str, problem: str) -> UserError:
    return UserError(f"--space {source}: key '{key}': {problem}")


def _check_value(source: str, key: str, kind: Any, value: Any) -> None:
    """Refuse ``value`` unless a flag of type ``kind`` takes it and a run can use it."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is not None and type(None) in args:
        kind = next(arg for arg in args if arg is not type(None))
        origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is Literal:
        fits = value in args
    elif kind is bool:
        fits = isinstance(value, bool)
    elif kind is int:
        fits = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        fits = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        fits = isinstance(value, str)
    if not fits:
        raise _error(source, key, f"{value!r} is not a value of this flag")
    problem = value_problem(key.replace("-", "_"), value)
    if problem:  # a trial would fail on it, after the study holds it
        raise _error(source, key, problem)
    if key == "policy" and value != "auto":
        try:
            policy_class(value)
        except UserError as error:
            raise _error(source, key, str(error)) from None


def _entry(source: str, key: str, spec: Any, kind: Any) -> Param | Value:
    """A TOML entry as a ``Param``, or the value it fixes."""
    if not isinstance(spec, dict):
        if kind is not None:
            _check_value(source, key, kind, spec)
        return spec
    unknown = set(spec) - {"low", "high", "log", "choices"}
    if unknown:
        raise _error(source, key, f"unknown field '{sorted(unknown)[0]}' (low, high, log, choices)")
    if "choices" in spec:
        choices = spec["choices"]
        if set(spec) != {"choices"} or not isinstance(choices, list) or not choices:
            raise _error(source, key, "choices must be a non-empty list, alone")
        for choice in choices:
            if kind is not None:
                _check_value(source, key, kind, choice)
            if not isinstance(choice, (bool, int, float, str)):
                raise _error(source, key, f"choice {choice!r} is not a number, bool or string")
        return Param(key, choices=tuple(choices))
    if "low" not in spec or "high" not in spec:
        raise _error(source, key, "a range needs low and high (or give choices)")
    low, high, log = spec["low"], spec["high"], spec.get("log", False)
    for bound in (low, high):
        if not isinstance(bound, (int, float)) or isinstance(bound, bool):
            raise _error(source, key, f"{bound!r} is not a number")
        if kind is not None:
            _check_value(source, key, kind, bound)
    if not isinstance(log, bool):
        raise _error(source, key, "log must be true or false")
    if low >= high:
        raise _error(source, key, f"low {low} must be below high {high}")
    if log and low <= 0:
        raise _error(source, key, "a log range needs low > 0")
    return Param(key, low, high, log)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except OSError as error:
        raise UserError(f"--space {path}: cannot read it ({error.strerror})") from None
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"--space {path}: not valid TOML: {error}") from None


def load_space(path: Path, default: Space) -> Space:
    """``default`` changed by the TOML file at ``path``; ``UserError`` naming the first bad
    key."""
    data = _read_toml(path)
    keep_defaults = data.pop("defaults", True)
    if not isinstance(keep_defaults, bool):
        raise _error(str(path), "defaults", "must be true or false")
    params = dict(default.params) if keep_defaults else {}
    fixed = dict(default.fixed) if keep_defaults else {}
    entries: list[tuple[str, Any, Any]] = []
    for key, spec in data.items():
        if key in KWARGS_FLAGS:
            if not isinstance(spec, dict):
                raise _error(str(path), key, "must be a table of its entries, e.g. [policy-kwargs]")
            entries += [(f"{key}.{name}", value, None) for name, value in spec.items()]
        elif key in FLAG_TYPES:
            entries.append((key, spec, FLAG_TYPES[key]))
        else:
            raise _error(str(path), key, "not a train flag this sweep can search")
    for key, spec, kind in entries:
        entry = _entry(str(path), key, spec, kind)
        params.pop(key, None)
        fixed.pop(key, None)
        if isinstance(entry, Param):
            params[key] = entry
        else:
            fixed[key] = entry
    return Space(params, fixed)


def without_given(space: Space, given: set[str]) -> Space:
    """``space`` less the flags the command line sets (field names, as adapt.given_fields
    reads them): those are fixed by the user."""
    flags = {name.replace("_", "-") for name in given}

    def kept(flag: str) -> bool:
        return flag.split(".", 1)[0] not in flags

    return Space(
        {flag: param for flag, param in space.params.items() if kept(flag)},
        {flag: value for flag, value in space.fixed.items() if kept(flag)},
    )


def starting_values(space: Space, config: TrainConfig, width: int | None) -> dict[str, Value]:
    """The starting config's value of each searched flag that lies in the space (the first
    trial of a new study tries it); ``width`` is the policy's default hidden size."""
    values: dict[str, Value] = {}
    kwargs = {
        "policy-kwargs": parse_kwargs(config.policy_kwargs, "--policy-kwargs"),
        "env-kwargs": parse_kwargs(config.env_kwargs, "--env-kwargs"),
    }
    if width is not None:
        kwargs["policy-kwargs"].setdefault("hidden_size", width)
    for flag, param in space.params.items():
        if "." in flag:
            name, key = flag.split(".", 1)
            value = kwargs[name].get(key)
        else:
            value = _config_value(config, flag)
        if value is not None and param.contains(value):
            values[flag] = value
    return values


def trial_flags(values: dict[str, Value], config: TrainConfig) -> list[str]:
    """Train flags setting ``values`` over the starting ``config`` (JSON-object flags merge
    the trial's entries into the config's)."""
    flags: list[str] = []
    kwargs: dict[str, dict[str, Any]] = {}
    for flag, value in values.items():
        if "." in flag:
            name, key = flag.split(".", 1)
            if name not in kwargs:
                current = getattr(config, name.replace("-", "_"))
                kwargs[name] = parse_kwargs(current, f"--{name}")
            kwargs[name][key] = value
        elif isinstance(value, bool):
            flags.append(f"--{flag}" if value else f"--no-{flag}")
        else:
            flags += [f"--{flag}", repr(value) if isinstance(value, float) else str(value)]
    for name, entries in kwargs.items():
        flags += [f"--{name}", json.dumps(entries, sort_keys=True)]
    return flags
