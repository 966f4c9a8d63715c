"""torch.compile hints that leave ``torch._dynamo`` unimported until something compiles.

``torch.compiler.assume_constant_result`` and ``torch.compiler.disable`` import
``torch._dynamo`` (over a second) when they decorate, so as module-level decorators they
would charge every process that imports the policies (each CLI start, env worker,
``puffertrain eval``) for a compiler only ``--compile`` runs use. These have the same effect
under torch.compile without that import.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

import torch

P = ParamSpec("P")
R = TypeVar("R")


def constant_when_compiled(fn: Callable[P, R]) -> Callable[P, R]:
    """``torch.compiler.assume_constant_result(fn)`` without importing ``torch._dynamo``.

    When dynamo traces a call of ``fn`` it runs ``fn`` eagerly and bakes the result into the
    graph (guarded on the arguments' identity). The public decorator only sets the attribute
    below on ``fn``, which dynamo reads at trace time; it cannot be applied lazily, since
    dynamo refuses to trace the decorator itself. tests/test_compile_hints.py checks that the
    attribute is still the one torch sets.
    """
    fn._dynamo_marked_constant = True  # type: ignore[attr-defined]
    return fn


def eager_when_compiled(fn: Callable[P, R]) -> Callable[P, R]:
    """``torch.compiler.disable(fn)``, applied at ``fn``'s first call (which imports
    ``torch._dynamo``).

    ``torch._disable_dynamo`` is torch's own lazy form: internal to torch, but what its
    optimizers use, so a process that trains has loaded ``torch._dynamo`` before any update
    and pays nothing more. Under torch.compile it gives the public decorator's graphs and
    graph breaks; a Python wrapper that chose per call would itself be traced by dynamo and
    add graph breaks of its own.
    """
    return torch._disable_dynamo(fn)
