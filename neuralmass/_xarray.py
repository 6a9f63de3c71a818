"""The labelled layout of a :class:`~neuralmass.result.Result` as an ``xarray.Dataset``.

One layout for every file neuralmass writes (NetCDF, Zarr, ``.npz`` and sweep stores):

- data variables, dims (time, region, set): each state variable under its own name, each
  exposure that is not simply a state variable under its name (``exposure_<name>`` if a state
  variable already has that name); ``diverged`` (bool) and ``first_nonfinite_step`` (int,
  -1 where finite) along ``set`` when they were checked;
- coordinates: ``time`` (ms), ``region`` (the connectome's labels), ``set`` (the global index
  of each parameter set) and every model parameter along ``set``, so that
  ``ds.set_index(set=["global_coupling", "global_speed"]).unstack("set")`` gives a grid back;
- attributes: the run's metadata (model, model_hash, dt, n_steps, integrator, monitor, noise,
  seed, backend, dtype, neuralmass_version) and the axis names needed to rebuild the Result.
"""

from __future__ import annotations

import numpy as np

DIMS = ("time", "region", "set")
DIVERGENCE = ("diverged", "first_nonfinite_step")


def exposure_key(name: str, state_names) -> str:
    """The data-variable name of exposure ``name``."""
    return f"exposure_{name}" if name in state_names else name


def layout_attrs(result) -> dict:
    """The Dataset attributes of ``result``: its metadata plus the names that rebuild it."""
    attrs = {key: value for key, value in result.metadata}
    attrs.update(
        monitor=result.monitor,
        state_names=",".join(result.state_names),
        exposure_names=",".join(result.exposure_names),
        plain_exposures=",".join(f"{e}={s}" for e, s in result.plain_exposures),
    )
    return attrs


def to_dataset(result):
    """``result`` as an ``xarray.Dataset`` in the layout above (arrays copied to NumPy)."""
    import xarray as xr

    plain = dict(result.plain_exposures)
    variables = {name: (DIMS, np.asarray(result.data[:, i]))
                 for i, name in enumerate(result.state_names)}
    for i, name in enumerate(result.exposure_names):
        if name not in plain:
            variables[exposure_key(name, result.state_names)] = (
                DIMS, np.asarray(result.exposures[:, i]))
    for name in DIVERGENCE:
        value = getattr(result, name)
        if value is not None:
            variables[name] = (("set",), np.asarray(value))
    offset = dict(result.metadata).get("set_offset", 0)
    coords = {"time": ("time", np.asarray(result.time), {"units": "ms"}),
              "region": list(result.region_labels),
              "set": np.arange(result.n_sets) + offset}
    for name, value in result.params.items():
        coords[name] = ("set", np.broadcast_to(np.asarray(value), (result.n_sets,)))
    return xr.Dataset(variables, coords=coords, attrs=layout_attrs(result))


def _names(attrs, key) -> tuple[str, ...]:
    text = str(attrs.get(key, ""))
    return tuple(text.split(",")) if text else ()


def from_dataset(ds):
    """The :class:`~neuralmass.result.Result` stored in ``ds`` (the inverse of
    :func:`to_dataset`)."""
    from .result import Result

    attrs = dict(ds.attrs)
    state_names = _names(attrs, "state_names")
    exposure_names = _names(attrs, "exposure_names")
    plain = tuple(tuple(pair.split("=")) for pair in _names(attrs, "plain_exposures"))
    alias = dict(plain)

    def series(name):
        return np.asarray(ds[name].transpose(*DIMS).values)

    data = np.stack([series(n) for n in state_names], axis=1)
    exposures = [series(alias[n]) if n in alias else series(exposure_key(n, state_names))
                 for n in exposure_names]
    exposures = (np.stack(exposures, axis=1) if exposures
                 else np.empty(data.shape[:1] + (0,) + data.shape[2:], data.dtype))
    params = {name: np.asarray(c.values) for name, c in ds.coords.items()
              if c.dims == ("set",) and name != "set"}
    known = {"monitor", "state_names", "exposure_names", "plain_exposures"}
    metadata = tuple((k, _plain(v)) for k, v in attrs.items() if k not in known)
    return Result(
        time=np.asarray(ds["time"].values), data=data, exposures=exposures, params=params,
        state_names=state_names, exposure_names=exposure_names,
        region_labels=tuple(str(r) for r in ds["region"].values),
        monitor=str(attrs.get("monitor", "raw")),
        diverged=np.asarray(ds["diverged"].values) if "diverged" in ds else None,
        first_nonfinite_step=(np.asarray(ds["first_nonfinite_step"].values)
                              if "first_nonfinite_step" in ds else None),
        plain_exposures=plain, metadata=metadata,
    )


def _plain(value):
    """An attribute as a hashable Python scalar (NumPy scalars from files become Python's)."""
    return value.item() if isinstance(value, np.generic) else value
