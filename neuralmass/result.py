"""The result of a simulation."""

from __future__ import annotations

import os

import equinox as eqx
import numpy as np

__all__ = ["Result"]


class Result(eqx.Module):
    """Recorded trajectories of a simulation (a pytree, so it can leave ``jax.jit``).

    Attributes:
        time: (T,) sample times in ms.
        data: (T, n_state, N, P) every state variable, in the model's order; N regions,
            P parameter sets.
        exposures: (T, n_exposure, N, P) the model's Exposure expressions.
        params: name → (P,) value of every model parameter in each set.
        state_names, exposure_names, region_labels: the labels of the axes.
        monitor: ``"raw"``, ``"subsample"`` or ``"temporal_average"``.
        diverged: (P,) bool, True for each set that held NaN or inf (its data are NaN from
            its first non-finite sample on); ``None`` when not checked (traced JAX values).
        first_nonfinite_step: (P,) int, the step n whose state (at t = n dt) was the first
            non-finite one, -1 where finite; ``None`` when not checked. See
            :mod:`neuralmass.divergence` for how each backend finds it.
        backend: the backend that ran (``"jax"``, ``"numba"`` or ``"cuda"``), set by
            :func:`~neuralmass.simulate`; ``None`` for a Result built otherwise.
    """

    time: np.ndarray
    data: object
    exposures: object
    params: dict
    state_names: tuple[str, ...] = eqx.field(static=True)
    exposure_names: tuple[str, ...] = eqx.field(static=True)
    region_labels: tuple[str, ...] = eqx.field(static=True)
    monitor: str = eqx.field(static=True)
    diverged: object = None
    first_nonfinite_step: object = None
    backend: str | None = eqx.field(static=True, default=None)

    @property
    def n_sets(self) -> int:
        return self.data.shape[-1]

    def state(self, name: str):
        """(T, N, P) trajectory of one state variable."""
        return self.data[:, self.state_names.index(name)]

    def exposure(self, name: str):
        """(T, N, P) trajectory of one exposure."""
        return self.exposures[:, self.exposure_names.index(name)]

    def to_xarray(self):
        """An ``xarray.Dataset`` with labelled dims (time, region, set) per variable; needs
        the optional ``xarray`` package."""
        try:
            import xarray
        except ImportError:  # pragma: no cover - depends on the environment
            raise ImportError("to_xarray() needs xarray: pip install 'neuralmass[xarray]'") \
                from None
        coords = {"time": np.asarray(self.time), "region": list(self.region_labels),
                  "set": np.arange(self.n_sets)}
        variables = {name: (("time", "region", "set"), np.asarray(self.data[:, i]))
                     for i, name in enumerate(self.state_names)}
        for i, name in enumerate(self.exposure_names):
            key = name if name not in variables else f"exposure_{name}"
            variables[key] = (("time", "region", "set"), np.asarray(self.exposures[:, i]))
        for name, value in self.params.items():
            coords[name] = ("set", np.broadcast_to(np.asarray(value), (self.n_sets,)))
        coords.update(self._divergence())
        return xarray.Dataset(variables, coords=coords, attrs={"monitor": self.monitor})

    def save(self, path: str | os.PathLike) -> None:
        """Write an ``.npz`` file: time, data, exposures, the names, ``param_<name>`` and, when
        checked, ``diverged`` and ``first_nonfinite_step``."""
        np.savez_compressed(
            path,
            time=np.asarray(self.time),
            data=np.asarray(self.data),
            exposures=np.asarray(self.exposures),
            state_names=np.array(self.state_names),
            exposure_names=np.array(self.exposure_names),
            region_labels=np.array(self.region_labels),
            monitor=np.array(self.monitor),
            **{f"param_{k}": np.broadcast_to(np.asarray(v), (self.n_sets,))
               for k, v in self.params.items()},
            **{k: v for k, (_, v) in self._divergence().items()},
        )

    def _divergence(self) -> dict:
        """``{name: ("set", (P,) array)}`` of the divergence fields that were checked."""
        return {name: ("set", np.asarray(getattr(self, name)))
                for name in ("diverged", "first_nonfinite_step")
                if getattr(self, name) is not None}
