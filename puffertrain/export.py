"""``puffertrain export``: a checkpoint's policy as an ONNX or TorchScript graph for deployment.

The graph takes the raw observation as the env gives it (uint8 frames for Atari, the flat byte
row of a Dict, Tuple or bare Discrete/MultiDiscrete/MultiBinary space) and holds everything the
policy does to it (/255, observation normalisation with the checkpoint's statistics,
unflattening). Inputs and outputs, batch dimension first and dynamic:

- ``obs``; ``agent_ids`` (int64) for a multi-agent policy that takes them; ``action_mask``
  (bool, the env's mask layout) for an env with action masks; ``state_h`` and ``state_c`` for
  a recurrent policy;
- ``logits`` (discrete: the dimensions' blocks side by side for MultiDiscrete; a masked env's
  forbidden actions at the dtype's most negative value, as in training), or ``mean`` and
  ``std`` (Box); then ``value``; then ``new_state_h`` and ``new_state_c`` for a recurrent one.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn

from policies.flatten import flatten_observation, travels_as_bytes
from puffertrain.errors import UserError
from puffertrain.ppo import PolicyAdapter
from puffertrain.ppo.adapter import mask_logits
from puffertrain.trainer.checkpoint import load_checkpoint
from puffertrain.trainer.restore import restore

logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # not its notes on torchvision ops


@dataclass
class ExportConfig:
    """Write a checkpoint's policy as an ONNX or TorchScript graph."""

    checkpoint: Path
    """A run directory (its newest checkpoint) or a checkpoint file (e.g. checkpoints/best.pt)."""
    output: Path
    """The file to write (its directory must exist)."""
    format: Literal["onnx", "torchscript"] = "onnx"
    """onnx (needs the export extra: pip install "puffertrain[export]") or torchscript."""


class ExportedPolicy(nn.Module):
    """The policy with the trainer's reading of its outputs, as one graph (see the module's
    docstring for its inputs and outputs)."""

    def __init__(self, adapter: PolicyAdapter, takes_agent_ids: bool, masked: bool = False) -> None:
        super().__init__()
        self.adapter = adapter
        self.takes_agent_ids = takes_agent_ids
        self.masked = masked

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        policy, kwargs = self.adapter.policy, {}
        obs, extra = inputs[0], inputs[1:]
        if self.takes_agent_ids:
            kwargs["agent_ids"], extra = extra[0], extra[1:]
        action_mask = None
        if self.masked:
            action_mask, extra = extra[0], extra[1:]
        if self.adapter.recurrent:
            outputs, state = policy.forward_step(obs, tuple(extra), **kwargs)
        else:
            outputs, state = policy(obs, **kwargs), ()
        parameters, value = self.adapter.distribution_parameters(outputs)
        if action_mask is not None:
            parameters = (mask_logits(parameters[0], action_mask),)
        return (*parameters, value, *state)


def graph_names(
    adapter: PolicyAdapter, takes_agent_ids: bool, masked: bool = False
) -> tuple[list[str], list[str]]:
    """The input and output names of the exported graph."""
    inputs = ["obs", *(["agent_ids"] if takes_agent_ids else [])]
    inputs += ["action_mask"] if masked else []
    outputs = ["mean", "std"] if adapter.continuous else ["logits"]
    outputs.append("value")
    if adapter.recurrent:
        inputs += ["state_h", "state_c"]
        outputs += ["new_state_h", "new_state_c"]
    return inputs, outputs


def example_inputs(
    adapter: PolicyAdapter,
    space: gym.spaces.Space,
    takes_agent_ids: bool,
    batch: int = 2,
    mask_size: int = 0,
) -> tuple[torch.Tensor, ...]:
    """Inputs of ``batch`` rows for tracing: observations sampled from the policy's ``space``
    (flattened to byte rows wherever the engine carries them so), agent 0, masks of
    ``mask_size`` entries that allow every action (none: 0), zero state."""
    rows = [space.sample() for _ in range(batch)]
    if travels_as_bytes(space):
        rows = [flatten_observation(row, space) for row in rows]
    obs = torch.from_numpy(np.stack(rows))
    inputs = [obs.float() if obs.dtype == torch.float64 else obs]
    if takes_agent_ids:
        inputs.append(torch.zeros(batch, dtype=torch.long))
    if mask_size:
        inputs.append(torch.ones(batch, mask_size, dtype=torch.bool))
    if adapter.recurrent:
        inputs += list(adapter.initial_state(batch, torch.device("cpu")))
    return tuple(inputs)


def export_policy(
    adapter: PolicyAdapter,
    space: gym.spaces.Space,
    takes_agent_ids: bool,
    output: Path,
    kind: str,
    mask_size: int = 0,
) -> torch.Tensor:
    """Write ``adapter``'s policy, built for ``space`` (and action masks of ``mask_size``
    entries, if any), to ``output``; return the observations it was traced with (the dtype
    and row shape the graph takes)."""
    module = ExportedPolicy(adapter, takes_agent_ids, bool(mask_size)).eval()
    inputs = example_inputs(adapter, space, takes_agent_ids, mask_size=mask_size)
    input_names, output_names = graph_names(adapter, takes_agent_ids, bool(mask_size))
    name = type(adapter.policy).__name__
    written = output.with_name(f".{output.name}.tmp")  # renamed once whole: an existing file
    try:  # is the old one or the new, never half of either
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if kind == "torchscript":
                torch.jit.trace(module, inputs).save(str(written))
            else:
                batch = torch.export.Dim("batch")
                torch.onnx.export(
                    module,
                    inputs,
                    str(written),
                    input_names=input_names,
                    output_names=output_names,
                    dynamic_shapes=(tuple({0: batch} for _ in inputs),),  # forward(*inputs)
                    dynamo=True,
                    external_data=False,  # one file to deploy, not a .onnx beside a .onnx.data
                    verbose=False,
                )
        if kind == "onnx":
            _check_dynamic_batch(written, name)
        os.replace(written, output)
    except UserError:
        raise
    except ImportError as error:
        raise UserError(
            f'--format onnx needs {error.name}: pip install "puffertrain[export]"'
        ) from None
    except Exception as error:
        raise UserError(f"policy {name} cannot be exported to {kind}: {_reason(error)}") from None
    finally:
        written.unlink(missing_ok=True)
    return inputs[0]


def _check_dynamic_batch(path: Path, name: str) -> None:
    """Refuse a graph whose batch size the exporter fixed (the policy's code made it a
    constant), rather than write one that fails on any other batch."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    fixed = [i.name for i in graph.input if not i.type.tensor_type.shape.dim[0].dim_param]
    if fixed:
        raise UserError(
            f"policy {name} cannot be exported to onnx with a dynamic batch: its code fixes "
            f"the batch size of {', '.join(fixed)}"
        )


_MISSING_OP = r"No ONNX function found for <OpOverload\(op='([^']+)', overload='(\w+)'"


def _reason(error: Exception) -> str:
    """The op the exporter could not translate, if it says, else its first line."""
    text = str(error)
    missing = re.search(_MISSING_OP, text)
    if missing:
        return f"ONNX has no translation of {missing[1]}.{missing[2]}"
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # the exporter colours its messages
    return (text.strip().splitlines() or [type(error).__name__])[0][:300]


def export(config: ExportConfig) -> Path:
    """Export the checkpoint's policy; print what was written and its inputs and outputs."""
    if not config.output.parent.is_dir():
        raise UserError(f"--output: directory '{config.output.parent}' does not exist")
    if config.output.is_dir():
        raise UserError(f"--output '{config.output}' is a directory; name the file to write")
    restored = restore(config.checkpoint, "--checkpoint")
    if config.output.is_file() and _is_checkpoint(config.output):
        raise UserError(f"--output '{config.output}' is a checkpoint; export elsewhere")
    restored.engine.close()
    engine = restored.engine
    adapter = PolicyAdapter(restored.policy, engine.single_action_space).eval()
    takes_agent_ids = adapter.takes_agent_ids and bool(engine.agent_names)
    mask_size = engine.action_masks.shape[1]
    traced = export_policy(
        adapter,
        engine.policy_observation_space,
        takes_agent_ids,
        config.output,
        config.format,
        mask_size,
    )
    dtype = str(traced.dtype).removeprefix("torch.")
    inputs, outputs = graph_names(adapter, takes_agent_ids, bool(mask_size))
    print(
        f"{config.format} graph of {type(restored.policy).__name__} (step "
        f"{restored.checkpoint.global_step:,} of {restored.path}) written to {config.output}\n"
        f"inputs: {', '.join(inputs)} (obs: {dtype} rows of shape {tuple(traced.shape[1:])}"
        f"{f'; action_mask: bool rows of {mask_size}' if mask_size else ''}); "
        f"outputs: {', '.join(outputs)}"
    )
    return config.output


def _is_checkpoint(path: Path) -> bool:
    """Whether ``path`` holds a puffertrain checkpoint (an export over it destroyed the run's
    newest one)."""
    try:
        load_checkpoint(path)
    except UserError:
        return False
    return True
