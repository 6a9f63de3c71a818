"""Labelled results: Result.to_xarray(), NetCDF/Zarr/npz round trips, the grid unstacked."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import neuralmass as nm
from neuralmass.errors import ParameterError


def _conn():
    return nm.Connectivity(np.ones((4, 4)) - np.eye(4), np.full((4, 4), 10.0))


def _result():
    params = nm.grid(global_coupling=np.linspace(0, 1, 3), global_speed=np.array([2.0, 4.0]))
    return nm.simulate("kuramoto", _conn(), params, backend="numba", n_steps=40, noise=0.01)


def test_dataset_layout_and_unstacked_grid():
    res = _result()
    ds = res.to_xarray()
    assert ds["theta"].dims == ("time", "region", "set")
    # exact: the same values copied; kuramoto's exposure theta is the state, stored once
    np.testing.assert_array_equal(ds["theta"].values, res.state("theta"))
    assert list(ds.data_vars) == ["theta", "diverged", "first_nonfinite_step"]
    assert ds.attrs["model"] == "kuramoto" and ds.attrs["backend"] == "numba"
    assert ds.attrs["dt"] == 0.1 and ds.attrs["dtype"] == "float64"
    grid = ds.set_index(set=["global_coupling", "global_speed"]).unstack("set")
    np.testing.assert_array_equal(grid["global_coupling"], np.linspace(0, 1, 3))
    np.testing.assert_array_equal(grid["global_speed"], [2.0, 4.0])
    # nm.grid's product order: set (i, j) is coupling i, speed j
    np.testing.assert_array_equal(grid["theta"].values[:, :, 2, 1], res.state("theta")[:, :, 5])


@pytest.mark.parametrize("suffix", [".nc", ".zarr", ".npz"])
def test_round_trip(tmp_path, suffix):
    res = _result()
    path = tmp_path / f"run{suffix}"
    res.save(path)
    back = nm.load_result(path)
    # exact: float64 written and read without conversion
    np.testing.assert_array_equal(back.data, res.data)
    np.testing.assert_array_equal(back.exposures, res.exposures)
    np.testing.assert_array_equal(back.diverged, res.diverged)
    assert back.metadata == res.metadata and back.plain_exposures == res.plain_exposures
    for name, value in res.params.items():
        np.testing.assert_array_equal(back.params[name], value)
    if suffix == ".nc":
        with xr.open_dataset(path) as ds:
            np.testing.assert_array_equal(ds["theta"].values, res.state("theta"))


def test_bad_output_path(tmp_path):
    with pytest.raises(ParameterError, match="must end in one of .nc, .zarr, .npz"):
        _result().save(tmp_path / "run")
    with pytest.raises(ParameterError, match="does not exist"):
        _result().save(tmp_path / "missing" / "run.nc")
