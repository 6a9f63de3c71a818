"""Array-namespace helpers: one implementation of a numerical function for NumPy and JAX.

:func:`namespace` picks ``jax.numpy`` when any argument is a JAX array (or a tracer inside
``jax.jit`` / ``jax.grad``) and ``numpy`` otherwise, so ``neuralmass.metrics`` and
``neuralmass.hemodynamics`` are written once and stay jit-able and differentiable on JAX
inputs. :func:`scan` is the one loop primitive they need: ``jax.lax.scan`` under JAX, a Python
loop under NumPy.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["namespace", "scan"]


def namespace(*arrays):
    """``jax.numpy`` if any of ``arrays`` is a JAX array or tracer, else ``numpy``."""
    return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def scan(step: Callable, carry, xs, xp):
    """``carry, ys = scan(step, carry, xs, xp)`` with ``step(carry, x) -> (carry, y)``.

    ``xs`` is an array whose leading axis is iterated; ``ys`` stacks the ``y`` along a new
    leading axis (``None`` when ``step`` returns ``None`` for ``y``). Under JAX
    (``xp is jax.numpy``) this is ``jax.lax.scan``; under NumPy a Python loop with the same
    semantics.
    """
    if xp is jnp:
        return jax.lax.scan(step, carry, xs)
    ys = []
    for x in xs:
        carry, y = step(carry, x)
        ys.append(y)
    return carry, (None if ys[0] is None else np.stack(ys))
