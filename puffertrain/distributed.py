"""Data-parallel training over the processes ``torchrun`` launches (ranks).

Every rank owns its envs and its rollout; ``DistributedDataParallel`` averages the gradients,
so all ranks hold the same parameters after every update. Rank 0 alone writes TensorBoard events
and checkpoints (which hold every rank's env and RNG state). Started without torchrun there is
one rank, and every collective below returns its own input.
"""

from __future__ import annotations

import importlib
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from puffertrain.errors import UserError
from puffertrain.threads import cpu_budget

T = TypeVar("T")

# How long a collective waits for the other ranks. A rank that dies closes its connections, so
# the others fail at once; this bounds only a rank that hangs (a checkpoint write or a slow
# iteration on one rank takes far less).
COLLECTIVE_TIMEOUT = timedelta(minutes=10)


@dataclass(frozen=True)
class Ranks:
    """This process's place among the ranks (one rank, rank 0, without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @classmethod
    def from_env(cls) -> Ranks:
        """Read the variables torchrun sets for each process it starts."""
        return cls(
            rank=int(os.environ.get("RANK", 0)),
            world_size=int(os.environ.get("WORLD_SIZE", 1)),
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
            local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", 1)),
        )

    @property
    def main(self) -> bool:
        """Whether this rank writes the run directory."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def device(self, name: str) -> torch.device:
        """``--device`` for this rank: ``cuda`` means the GPU of its local rank."""
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        if name == "cuda" and not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is available")
        if name == "cuda" and self.distributed:  # one GPU per rank, or the one it was given
            return torch.device("cuda", self.local_rank % torch.cuda.device_count())
        return torch.device(name)


ONE_RANK = Ranks()


def process_cores() -> int:
    """The CPUs this process may use (:func:`~puffertrain.threads.cpu_budget`), shared evenly by
    the ranks on this node."""
    return cpu_budget(Ranks.from_env().local_world_size).cpus


@contextmanager
def process_group(ranks: Ranks, device: torch.device) -> Iterator[None]:
    """Join the other ranks (gloo on CPU, nccl on CUDA) for the duration; no-op for one rank."""
    if not ranks.distributed:
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    # torch._dynamo, imported later (by torch.optim's first param group, by DDP), would keep
    # references to the process group that destroy_process_group cannot drop (torch 2.13): the
    # group then outlives it, and a gloo worker thread still releasing a collective's tensors
    # as the interpreter shuts down needs the GIL and aborts the finished rank (SIGABRT,
    # "terminate called without an active exception"). Imported first, it holds none.
    importlib.import_module("torch._dynamo")

    dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT, device_id=_device_id(device))
    try:
        yield
    finally:
        dist.destroy_process_group()


def _device_id(device: torch.device) -> torch.device | None:
    return device if device.type == "cuda" else None


# How gloo reports a rank that went away mid-collective when it raises a plain RuntimeError
# (inside DDP's backward); NCCL and the other collectives raise DistError.
_LOST_RANK_SIGNS = ("Connection reset by peer", "Connection closed by peer", "Broken pipe")


def lost_a_rank(error: BaseException) -> bool:
    """Whether ``error`` means another rank died or stopped answering."""
    if isinstance(error, dist.DistError):
        return True
    return isinstance(error, RuntimeError) and any(sign in str(error) for sign in _LOST_RANK_SIGNS)


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _tensor_device() -> torch.device:
    """Where collectives take their tensors: NCCL reduces GPU tensors only."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def any_rank(*flags: bool) -> tuple[bool, ...]:
    """Each flag, true if it is true on any rank (every rank then takes the same branch)."""
    if not _active():
        return flags
    values = torch.tensor([float(flag) for flag in flags], device=_tensor_device())
    dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return tuple(bool(value) for value in values)


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """The mean of each value over the ranks."""
    if not _active():
        return values
    keys = sorted(values)
    tensor = torch.tensor(
        [values[key] for key in keys], dtype=torch.float64, device=_tensor_device()
    )
    dist.all_reduce(tensor)
    return {
        key: float(total) / dist.get_world_size() for key, total in zip(keys, tensor, strict=True)
    }


def _packed(value: Any) -> bytes:
    # torch.save, not the collectives' plain pickle: tensors inside objects do not survive
    # gather_object's unpickling in torch 2.13
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def _unpacked(data: bytes) -> Any:
    # written by this job's own ranks; on the CPU, not on the GPU of the rank that sent it
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)


def gather_to_main(value: T) -> list[T] | None:
    """Every rank's ``value`` in rank order on rank 0 (None on the others)."""
    if not _active():
        return [value]
    gathered: list[Any] | None = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(_packed(value), gathered, dst=0)
    return None if gathered is None else [_unpacked(data) for data in gathered]


def all_gather(value: T) -> list[T]:
    """Every rank's ``value`` in rank order, on every rank."""
    if not _active():
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, _packed(value))
    return [_unpacked(data) for data in gathered]


def from_main(value: T) -> T:
    """Rank 0's ``value`` on every rank."""
    if not _active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
