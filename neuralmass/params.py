"""Parameter sets: :func:`grid` and the resolution of a ``params`` mapping for a model.

A parameter set is one simulation. ``params`` maps names to scalars (the same in every set) or
to 1-D arrays of equal length P (one value per set). Names are the model's parameters and
constants, ``global_coupling`` and ``global_speed`` (mm/ms; default: the connectivity's speed).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

import numpy as np

from .errors import ParameterError
from .model import Model

__all__ = ["grid", "resolve_parameters"]


def grid(**axes) -> dict[str, np.ndarray]:
    """The Cartesian product of parameter axes, first axis slowest (RateML's order).

    ``grid(global_coupling=np.linspace(0, 1, 32), global_speed=np.linspace(1, 10, 32))``
    gives two arrays of length 1024 where ``global_coupling`` changes every 32 sets.
    """
    if not axes:
        raise ParameterError("grid() needs at least one axis, e.g. grid(global_coupling=[0, 1])")
    arrays = []
    for name, values in axes.items():
        array = np.asarray(values, dtype=np.float64)
        if array.ndim != 1 or array.size == 0:
            raise ParameterError(
                f"grid axis {name!r} must be a non-empty 1-D sequence, but got shape "
                f"{array.shape}"
            )
        arrays.append(array)
    mesh = np.meshgrid(*arrays, indexing="ij")
    return {name: m.ravel() for name, m in zip(axes, mesh, strict=True)}


def _is_array_like(value) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype")


def _unknown(name: str, valid: list[str]) -> ParameterError:
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ParameterError(
        f"unknown parameter {name!r}{hint} Valid parameters: {', '.join(valid)}"
    )


def resolve_parameters(
    model: Model, params: Mapping[str, object] | None, *, default_speed: float
) -> tuple[dict[str, object], int]:
    """Every parameter of ``model`` with its value(s), and the number of sets P.

    Returns ``(values, P)`` where each value is a Python float (the same in every set) or a
    1-D array of length P (NumPy, or a JAX array/tracer, which is kept as is so that
    ``jax.grad`` can flow through it).
    """
    params = dict(params or {})
    valid = list(model.parameter_names)
    for name in params:
        if name not in valid:
            raise _unknown(name, valid)

    lengths: dict[str, int] = {}
    values: dict[str, object] = {}
    for name in valid:
        if name not in params:
            default = model.parameter(name).default
            values[name] = float(default_speed if default is None else default)
            continue
        value = params[name]
        if _is_array_like(value) and not isinstance(value, np.ndarray):
            # a JAX array or tracer: check the shape only, never convert it.
            if value.ndim > 1:
                raise ParameterError(
                    f"parameter {name!r} must be a scalar or a 1-D array (one value per "
                    f"parameter set), but got shape {tuple(value.shape)}"
                )
            if value.ndim == 1:
                lengths[name] = value.shape[0]
            values[name] = value
            continue
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise ParameterError(
                f"parameter {name!r} must be a number or a 1-D array of numbers, but got "
                f"{value!r}"
            ) from None
        if array.ndim > 1:
            raise ParameterError(
                f"parameter {name!r} must be a scalar or a 1-D array (one value per parameter "
                f"set), but got shape {array.shape}"
            )
        if array.ndim == 1 and array.size == 0:
            raise ParameterError(f"parameter {name!r} is an empty array")
        if not np.all(np.isfinite(array)):
            bad = np.flatnonzero(~np.isfinite(np.atleast_1d(array)))[0]
            raise ParameterError(
                f"parameter {name!r} must be finite, but set {bad} has "
                f"{np.atleast_1d(array)[bad]}"
            )
        if array.ndim == 0:
            values[name] = float(array)
        else:
            lengths[name] = array.shape[0]
            values[name] = array
    distinct = set(lengths.values())
    if len(distinct) > 1:
        described = ", ".join(f"{n}: {length}" for n, length in lengths.items())
        raise ParameterError(
            "parameter arrays must all have the same length (one value per parameter set), "
            f"but got {described}; use neuralmass.grid(...) for a Cartesian product"
        )
    n_sets = distinct.pop() if distinct else 1
    speed = values["global_speed"]
    if not _is_array_like(speed) or isinstance(speed, np.ndarray):
        if np.any(np.asarray(speed) <= 0):
            raise ParameterError(f"global_speed must be > 0 mm/ms, but got {speed!r}")
    return values, n_sets
