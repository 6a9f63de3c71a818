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
        plain_exposures: (exposure, state variable) pairs of exposures that are just a
            state variable (stored once in files).
        metadata: (key, value) pairs describing the run: model, model_hash, dt (ms),
            n_steps, integrator, noise, seed, backend, dtype, neuralmass_version.
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
    plain_exposures: tuple[tuple[str, str], ...] = eqx.field(static=True, default=())
    metadata: tuple[tuple[str, object], ...] = eqx.field(static=True, default=())

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
        """An ``xarray.Dataset``: every state variable and (non-trivial) exposure as a data
        variable with dims (time, region, set), swept parameters as coordinates along
        ``set``, ``diverged``/``first_nonfinite_step`` along ``set`` and the run's metadata
        as attributes; layout in :mod:`neuralmass._xarray`."""
        from ._xarray import to_dataset

        return to_dataset(self)

    def to_netcdf(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_xarray` as NetCDF-4 (h5netcdf); read it back with
        :func:`neuralmass.load_result` or ``xarray.open_dataset``."""
        self.to_xarray().to_netcdf(path, engine="h5netcdf")

    def to_zarr(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_xarray` as a Zarr store (overwriting one at ``path``)."""
        self.to_xarray().to_zarr(path, mode="w")

    def save(self, path: str | os.PathLike) -> None:
        """Write ``path`` in the format its suffix names: ``.nc``, ``.zarr`` or ``.npz``
        (:func:`neuralmass.io.check_output_path` says which suffixes are valid)."""
        from .io import save_result

        save_result(self, path)

    def _divergence(self) -> dict:
        """``{name: ("set", (P,) array)}`` of the divergence fields that were checked."""
        return {name: ("set", np.asarray(getattr(self, name)))
                for name in ("diverged", "first_nonfinite_step")
                if getattr(self, name) is not None}
