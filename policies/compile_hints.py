"""torch.compile hints that leave ``torch._dynamo`` unimported until something compiles.

``torch.compiler.assume_constant_result`` and ``torch.compiler.disable`` import
``torch._dynamo`` (over a second) when they decorate, so as module-level decorators they
would charge every process that imports the policies (each CLI start, sweep trial, worker)
for a compiler only ``--compile`` runs use. Dynamo reads its hints when it traces a call, so
both must already be in place the first time a compiled function reaches the decorated one.
"""

from __future__ import annotations

import functools
import sys
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
    """``torch.compiler.disable(fn)``, applied per call once ``torch._dynamo`` is loaded.

    A process that never imported ``torch._dynamo`` has no compiled region to leave, so
    ``fn`` runs as it is. Otherwise the call goes through ``torch.compiler.disable``, also
    when it runs eagerly inside a compiled function (after a graph break), where dynamo
    would otherwise trace ``fn``'s own frame. Wrapping per call costs a few microseconds.
    """

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        # is_compiling() first: while tracing it is the constant True, so dynamo never looks
        # at sys.modules (which it would guard on).
        if torch.compiler.is_compiling() or "torch._dynamo" in sys.modules:
            return torch.compiler.disable(fn)(*args, **kwargs)
        return fn(*args, **kwargs)

    return call
