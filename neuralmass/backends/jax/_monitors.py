"""The monitors of the JAX backend as carries of the time loop, written once for any trailing
shape: a record is (n_record, ...) — the state variables then the exposures of one step, with
trailing axes (N,) for one parameter set or (N, P) for several — and every function here
broadcasts over those trailing axes.

The loop runs in *blocks* of :func:`block_steps` steps (the greatest common divisor of the
monitors' periods). Per monitor:

- :func:`init`: its carry before the first step;
- :func:`update`: the carry after step ``k`` (0-based; the record is the state at
  ``t = (k + 1) dt``);
- :func:`emit`: at the end of a block whose last step is ``k``, the block's output and the
  carry for the next block; :func:`collect` keeps the outputs of the blocks where a sample is
  due, ``every / block`` apart.

Raw and subsample monitors emit the record; the temporal average its running total divided by
the window (reset when a window ends); BOLD (tvb-library's ``monitors.Bold``) sums each 4-ms
bin, writes its mean into a ring of the last 5000 bins (bin K in slot K mod 5000, zeros
before the start) and, when a sample is due, weighs the ring with the kernel's lag weights
(:func:`neuralmass.hemodynamics.hrf_lag_weights`) and scales it as TVB; Balloon steps
:func:`neuralmass.hemodynamics.balloon_heun_step` with each step's record and emits
:func:`neuralmass.hemodynamics.balloon_bold`. Conditions depend on the step counter only, not
on the data, so ``lax.cond`` stays a branch under ``jax.vmap`` and the BOLD weighing (5000
multiply-adds per value) runs only when a sample is due; everything is differentiable.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from ... import hemodynamics as hd
from ...monitors import MonitorPlan

__all__ = ["JaxMonitor", "block_steps", "init", "update", "emit", "collect", "sizes"]


@dataclasses.dataclass(frozen=True)
class JaxMonitor:
    """What the loop needs of a :class:`~neuralmass.monitors.MonitorPlan`, hashable by value
    (a static field of the simulator: equal monitors reuse the compiled program)."""

    name: str
    every: int
    n_samples: int
    average: bool
    variables: tuple[int, ...] | None
    per_bin: int = 0
    weights: tuple[float, ...] = ()
    offset: float = 0.0
    scale: float = 1.0
    constants: hd.BalloonConstants | None = None
    dt_s: float = 0.0

    @classmethod
    def from_plan(cls, m: MonitorPlan) -> JaxMonitor:
        weights = () if m.weights is None else tuple(float(w) for w in m.weights)
        return cls(m.name, m.every, m.n_samples, m.average, m.variables, m.per_bin, weights,
                   m.offset, m.scale, m.constants, m.dt_s)


def block_steps(monitors: tuple[JaxMonitor, ...]) -> int:
    """Steps per block: the greatest common divisor of the monitors' periods."""
    return math.gcd(*(m.every for m in monitors))


def _selected(m: JaxMonitor, record):
    return record if m.variables is None else record[jnp.array(m.variables)]


def init(m: JaxMonitor, record):
    """The carry of ``m`` before the first step; ``record`` (n_record, ...) gives shape and
    dtype (its values are not used)."""
    if m.name == "temporal_average":
        return jnp.zeros_like(record)
    if m.name == "bold":
        signal = _selected(m, record)
        return (jnp.zeros_like(signal),
                jnp.zeros((len(m.weights),) + signal.shape, signal.dtype))
    if m.name == "balloon":
        signal = _selected(m, record)
        return hd.balloon_rest(signal.shape, jnp, signal.dtype)
    return ()


def update(m: JaxMonitor, carry, record, k):
    """The carry of ``m`` after step ``k`` whose new record is ``record``."""
    if m.name == "temporal_average":
        return carry + record
    if m.name == "bold":
        interim, ring = carry
        interim = interim + _selected(m, record)
        newest = (k + 1) // m.per_bin

        def push(interim_ring):
            interim, ring = interim_ring
            return jnp.zeros_like(interim), ring.at[newest % ring.shape[0]].set(
                interim / m.per_bin)

        return jax.lax.cond((k + 1) % m.per_bin == 0, push, lambda c: c, (interim, ring))
    if m.name == "balloon":
        return hd.balloon_heun_step(carry, _selected(m, record), m.dt_s, m.constants)
    return carry


def emit(m: JaxMonitor, carry, record, k):
    """``(carry, output)`` at the end of a block whose last step is ``k``: the output is the
    sample when one is due at ``k`` (:func:`collect` keeps only those)."""
    due = (k + 1) % m.every == 0
    if m.name == "temporal_average":
        return jnp.where(due, jnp.zeros_like(carry), carry), carry / m.every
    if m.name == "bold":
        _, ring = carry
        n_bins = ring.shape[0]
        newest = (k + 1) // m.per_bin
        weights = jnp.asarray(m.weights, ring.dtype)

        def weigh(ring):
            lagged = ring[(newest - jnp.arange(n_bins)) % n_bins]
            return (jnp.tensordot(weights, lagged, axes=1) - m.offset) * m.scale

        bold = jax.lax.cond(due, weigh, lambda ring: jnp.zeros_like(ring[0]), ring)
        return carry, bold
    if m.name == "balloon":
        return carry, hd.balloon_bold(carry, m.constants)
    return carry, record


def collect(m: JaxMonitor, outputs, block: int):
    """The samples of ``m`` from its per-block ``outputs`` (n_blocks, ...)."""
    ratio = m.every // block
    return outputs[ratio - 1::ratio][: m.n_samples]


def sizes(m: JaxMonitor, n_record: int) -> tuple[int, int]:
    """(rows of its per-block output, rows of its carry) of ``m``, each row one value per
    node and set, for a record of ``n_record`` rows (the memory estimate)."""
    rows = n_record if m.variables is None else len(m.variables)
    kept = {"temporal_average": rows, "bold": rows * (1 + len(m.weights)),
            "balloon": 4 * rows}.get(m.name, 0)
    return rows, kept
