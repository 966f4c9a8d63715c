"""Resolve ``--policy`` to a policy module and check it can take the env's spaces."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn

from policies import POLICIES
from policies.checks import sample_observations
from policies.cnn import is_image
from policies.contract import is_recurrent
from policies.flatten import is_structured
from policies.heads import action_head_size
from policies.normalize import normalize_observations
from puffertrain.config import parse_kwargs
from puffertrain.envs.spaces import describe_space
from puffertrain.errors import UserError
from puffertrain.threads import torch_threads


def list_policies() -> str:
    """One line per built-in policy name."""
    width = max(len(name) for name in POLICIES)
    lines = [
        "auto".ljust(width) + "  picks from the spaces: cnn for uint8 images, multi_input for "
        "Dict/Tuple, mlp otherwise (separate_mlp in the classic-control preset; each with a "
        "Gaussian head for Box actions); shared for multi-agent envs, where lstm means shared_lstm"
    ]
    lines += [f"{name.ljust(width)}  {entry.summary}" for name, entry in POLICIES.items()]
    lines.append(
        "package.module:Class".ljust(width) + "  your own nn.Module with the same contract"
    )
    return "\n".join(lines)


def auto_policy_name(observation_space: gym.spaces.Space) -> str:
    """The built-in policy ``--policy auto`` picks for an observation space (the action head,
    logits or Gaussian, follows the action space in every one of them)."""
    if is_structured(observation_space):
        return "multi_input"
    if is_image(observation_space) and observation_space.dtype == np.uint8:
        return "cnn"
    return "mlp"


def policy_class(name: str) -> type[nn.Module]:
    """The class ``--policy`` names: a library policy or ``package.module:Class``."""
    if name in POLICIES:
        return POLICIES[name].cls
    if ":" in name:
        module_name, class_name = name.split(":", 1)
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise UserError(f"policy '{name}': cannot import '{module_name}': {error}") from None
        cls = getattr(module, class_name, None)
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise UserError(f"policy '{name}': '{class_name}' is not an nn.Module class")
        return cls
    names = ", ".join(["auto", *POLICIES])
    raise UserError(f"unknown policy '{name}'; choose one of {names} or package.module:Class")


def _check_outputs(
    policy: nn.Module, observation_space: gym.spaces.Space, action_space: gym.spaces.Space
) -> None:
    obs = sample_observations(observation_space, 2)
    with torch.no_grad():
        if is_recurrent(policy):
            outputs, _ = policy.forward_step(obs, policy.initial_state(len(obs), "cpu"))
        else:
            outputs = policy(obs)
    if not isinstance(outputs, tuple) or len(outputs) not in (2, 3):
        raise ValueError("forward must return (logits, value), (mean, std, value) or (mean, value)")
    if not all(isinstance(output, torch.Tensor) for output in outputs):
        # the guide's RecurrentPolicy returns (logits, value, state) from forward
        raise ValueError(
            f"forward returned {_kinds(outputs)}, not tensors; a recurrent policy keeps its state "
            f"out of forward: {_RECURRENT_CONTRACT}"
        )
    if not isinstance(action_space, gym.spaces.Box) and len(outputs) != 2:
        # a third output would be read as the value, in silence
        raise ValueError(
            f"forward must return (logits, value) for these actions, got {_kinds(outputs)}"
        )
    if outputs[-1].numel() != 2:
        raise ValueError(f"value must have one entry per row, got shape {tuple(outputs[-1].shape)}")
    expected = action_head_size(action_space)
    logstd = getattr(policy, "actor_logstd", None)
    if (
        isinstance(action_space, gym.spaces.Box)
        and len(outputs) == 2
        and not isinstance(logstd, torch.Tensor)
    ):
        raise ValueError("(mean, value) outputs need an actor_logstd parameter")
    if tuple(outputs[0].shape) != (2, expected):
        raise ValueError(
            f"first output has shape {tuple(outputs[0].shape)}, expected (2, {expected})"
        )


_RECURRENT_CONTRACT = (
    "it implements initial_state, forward_step and forward_sequence, or wraps an "
    "encode_observations/decode_actions policy in policies.recurrent.LSTMWrapper "
    "(docs/recurrent.md); the guide's RecurrentPolicy and OptimizedLSTMPolicy are --policy "
    "recurrent and optimized_lstm"
)


def _kinds(outputs: tuple[Any, ...]) -> str:
    return "(" + ", ".join(type(output).__name__ for output in outputs) + ")"


def _try_build(
    cls: type[nn.Module],
    observation_space: gym.spaces.Space,
    action_space: gym.spaces.Space,
    kwargs: dict[str, Any],
    num_agents: int,
) -> nn.Module:
    if num_agents and "num_agents" in inspect.signature(cls).parameters:
        kwargs = {**kwargs, "num_agents": num_agents}
    policy = cls(observation_space, action_space, **kwargs)
    if type(policy).forward is nn.Module.forward and not is_recurrent(policy):
        # the guide's OptimizedLSTMPolicy has encode/decode methods taking a state, no forward
        raise ValueError(f"it has no forward method; a recurrent policy: {_RECURRENT_CONTRACT}")
    _check_outputs(policy, observation_space, action_space)
    return policy


def _check_kwargs(name: str, cls: type[nn.Module], kwargs: dict[str, Any]) -> None:
    parameters = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    takes = [key for key in parameters if key not in ("observation_space", "action_space")]
    unknown = sorted(set(kwargs) - set(takes))
    if unknown:
        raise UserError(
            f"--policy-kwargs: policy '{name}' takes no {', '.join(unknown)} "
            f"(it takes: {', '.join(takes) or 'nothing'})"
        )


def resolve_policy_name(name: str, observation_space: gym.spaces.Space, multi_agent: bool) -> str:
    """``auto`` made concrete; on a multi-agent env with vector or image observations ``auto``
    is ``shared`` and ``lstm`` is ``shared_lstm`` (the recurrent policy that takes agent ids);
    Dict/Tuple observations get ``multi_input`` either way."""
    if multi_agent and not is_structured(observation_space):
        return {"auto": "shared", "lstm": "shared_lstm"}.get(name, name)
    if name != "auto":
        return name
    space = observation_space
    if isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) > 3:
        # an mlp on raw pixels of colour frame stacks (Atari with grayscale false) trains on
        # numbers up to 255 and learns nothing
        raise UserError(
            f"no library policy takes uint8 frames of shape {space.shape} (cnn takes images of "
            "3 dims, channels first or last); for Atari keep grayscale frames, or give your own "
            "--policy package.module:Class"
        )
    return auto_policy_name(space)


def build_policy(
    name: str,
    observation_space: gym.spaces.Space,
    action_space: gym.spaces.Space,
    normalize_obs: bool = False,
    policy_kwargs: str = "",
    agent_names: Sequence[str] = (),
    log_std_init: float | None = None,
) -> nn.Module:
    """Construct policy ``name`` for the spaces (inside observation normalisation when
    ``normalize_obs``) with the JSON ``policy_kwargs``, or raise ``UserError`` saying which
    policies can take them. On a multi-agent env (``agent_names``), a policy whose constructor
    takes ``num_agents`` is given the number of agents, and one that takes ``log_std_init`` is
    given ``log_std_init`` unless ``policy_kwargs`` sets it."""
    # on one thread: orthogonal init's QR differs in its last bits with the thread count, so a
    # seed gave other parameters (and another run) in a process that had other threads at start
    with torch_threads(1):
        return _build_policy(
            name,
            observation_space,
            action_space,
            normalize_obs,
            policy_kwargs,
            agent_names,
            log_std_init,
        )


def _build_policy(
    name: str,
    observation_space: gym.spaces.Space,
    action_space: gym.spaces.Space,
    normalize_obs: bool,
    policy_kwargs: str,
    agent_names: Sequence[str],
    log_std_init: float | None,
) -> nn.Module:
    name = resolve_policy_name(name, observation_space, bool(agent_names))
    cls = policy_class(name)
    kwargs = parse_kwargs(policy_kwargs, "--policy-kwargs")
    _check_kwargs(name, cls, kwargs)
    if log_std_init is not None and "log_std_init" in inspect.signature(cls).parameters:
        kwargs.setdefault("log_std_init", log_std_init)
    num_agents = len(agent_names)
    try:
        policy = _try_build(cls, observation_space, action_space, kwargs, num_agents)
    except Exception as error:  # any failure to build or run means the spaces don't fit
        able = []
        for other, entry in POLICIES.items():
            if not num_agents and "num_agents" in inspect.signature(entry.cls).parameters:
                continue  # a multi-agent policy, not one to suggest for a single-agent env
            try:
                _try_build(entry.cls, observation_space, action_space, {}, num_agents)
                able.append(other)
            except Exception:
                continue
        hint = f"; policies that can: {', '.join(able)}" if able else ""
        raise UserError(
            f"policy '{name}' cannot take observation space {describe_space(observation_space)} "
            f"with action space {describe_space(action_space)}: {error}{hint}"
        ) from None
    if not normalize_obs:
        return policy
    try:
        return normalize_observations(policy, observation_space, action_space)
    except ValueError as error:
        text = describe_space(observation_space)
        raise UserError(f"--normalize-obs: {error}, not {text}") from None
