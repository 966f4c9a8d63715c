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
    """``torch.compiler.disable(fn)``, applied (``torch._dynamo`` imported) at the first call.

    This is torch's own lazy form, which its optimizers use too: a process that builds one
    has loaded ``torch._dynamo`` by then anyway. Under torch.compile it gives the very graphs
    and graph breaks of the public decorator, where a Python wrapper that chose per call would
    itself be traced by dynamo and add graph breaks of its own.
    """
    return torch._disable_dynamo(fn)
