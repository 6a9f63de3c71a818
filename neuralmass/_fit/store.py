"""The fit's store: the history as netCDF (``path``) and the optimiser state pickled beside
it (``path + ".state.pkl"``), both rewritten atomically after every generation."""

from __future__ import annotations

import os
import pickle

import numpy as np
import xarray

from ..errors import ParameterError

__all__ = ["history_dataset", "load", "save"]


def history_dataset(rows: list[dict], names: tuple[str, ...], attrs: dict) -> xarray.Dataset:
    """Every individual of every generation, dim ``individual``: one variable per free
    parameter, ``objective`` (maximised), ``diverged`` (bool) and ``generation`` (int)."""
    def column(key, dtype):
        parts = [np.asarray(r[key], dtype=dtype) for r in rows]
        return np.concatenate(parts) if parts else np.zeros(0, dtype)

    data = {name: ("individual", column(name, float)) for name in names}
    data["objective"] = ("individual", column("objective", float))
    data["diverged"] = ("individual", column("diverged", bool))
    data["generation"] = ("individual", column("generation", np.int64))
    return xarray.Dataset(data, attrs=attrs)


def _replace(path: str, write) -> None:
    tmp = f"{path}.tmp"
    write(tmp)
    os.replace(tmp, path)


def save(path, history: xarray.Dataset, state) -> None:
    path = os.fspath(path)
    _replace(path, lambda tmp: history.to_netcdf(tmp, engine="scipy"))
    with open(f"{path}.state.pkl.tmp", "wb") as f:
        pickle.dump(state, f)
    os.replace(f"{path}.state.pkl.tmp", f"{path}.state.pkl")


def load(path, names: tuple[str, ...], attrs: dict):
    """(rows per generation, optimiser state) from a store, or None when there is none;
    the store must come from the same fit (method, free parameters, bounds, objective)."""
    path = os.fspath(path)
    if not (os.path.exists(path) and os.path.exists(f"{path}.state.pkl")):
        return None
    with xarray.open_dataset(path, engine="scipy") as ds:
        ds = ds.load()
    for key, value in attrs.items():
        if str(ds.attrs.get(key)) != str(value):
            raise ParameterError(f"store {path!r} holds a fit with {key}={ds.attrs.get(key)!r},"
                                 f" not {value!r}; remove it or pass another store path")
    with open(f"{path}.state.pkl", "rb") as f:
        state = pickle.load(f)
    rows = []
    for g in np.unique(ds["generation"].values):
        sel = ds.where(ds["generation"] == g, drop=True)
        row = {name: sel[name].values for name in names}
        row.update(objective=sel["objective"].values,
                   diverged=sel["diverged"].values.astype(bool), generation=sel["generation"]
                   .values.astype(np.int64))
        rows.append(row)
    return rows, state
