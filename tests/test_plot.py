"""``neuralmass plot``: the heatmap's data against summaries computed here independently
(NumPy on one ``simulate``), and the PNG for a result file, a time-series sweep store and a
``reduce=`` sweep store."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

import neuralmass as nm
from neuralmass.cli import app
from neuralmass.errors import ParameterError
from neuralmass.plot import grid_summary, set_summary

# on one xdist worker, which computes the module's fixtures (sweeps, a reference run) once
pytestmark = pytest.mark.xdist_group("plot")

runner = CliRunner()
KW = dict(backend="numba", n_steps=60, noise=0.01, seed=3, monitors="raw")
COUPLINGS = np.array([0.0, 0.5, 1.0])
SPEEDS = np.array([4.0, 2.0])  # descending: the store reorders the sets by speed
PARAMS = nm.grid(global_coupling=COUPLINGS, global_speed=SPEEDS)
# a sweep store holds the sets in this order (stable by speed); each set's noise comes from
# its position there, so the reference is one simulate over the sets in that order
ORDER = np.argsort(PARAMS["global_speed"], kind="stable")
STORE_PARAMS = {name: values[ORDER] for name, values in PARAMS.items()}
PNG = b"\x89PNG\r\n\x1a\n"


def _conn():
    rng = np.random.default_rng(0)
    weights = rng.uniform(0, 1, (5, 5)) * (1 - np.eye(5))
    return nm.Connectivity(weights, np.full((5, 5), 10.0))


@pytest.fixture(scope="module")
def reference():
    return nm.simulate("kuramoto", _conn(), STORE_PARAMS, **KW)


def _order(theta):
    """R(t) = |mean_j exp(i theta_j)|, written here with complex numbers: (T, N, P) -> (T, P)."""
    return np.abs(np.exp(1j * theta).mean(axis=1))


def _on_grid(per_set):
    """(P,) values in the store's order -> values[j, i] at (sorted) speed j, coupling i."""
    out = np.empty((SPEEDS.size, COUPLINGS.size))
    for p, (c, s) in enumerate(zip(STORE_PARAMS["global_coupling"],
                                   STORE_PARAMS["global_speed"], strict=True)):
        out[np.searchsorted(np.sort(SPEEDS), s), np.searchsorted(COUPLINGS, c)] = per_set[p]
    return out


def _fc_corr(theta, target):
    """Pearson r of the lower triangles of FC(sin theta) and ``target``, per set (NumPy)."""
    lower = np.tril_indices(target.shape[0], -1)
    out = []
    for p in range(theta.shape[-1]):
        fc = np.corrcoef(np.sin(theta[:, :, p]).T)
        out.append(np.corrcoef(fc[lower], target[lower])[0, 1])
    return np.array(out)


def _target():
    return np.corrcoef(np.random.default_rng(1).normal(size=(5, 40)))


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stores")
    series = nm.sweep("kuramoto", _conn(), PARAMS, store=folder / "series.zarr", shard_size=4,
                      progress=False, **KW)
    reduced = nm.sweep("kuramoto", _conn(), PARAMS, store=folder / "reduced.zarr",
                       shard_size=4, reduce=["mean", "std", "fc_corr"], target=_target(),
                       progress=False, **KW)
    return folder, series, reduced


def test_heatmap_of_a_series_store_equals_the_order_parameter_computed_here(stores,
                                                                            reference):
    _, series, _ = stores
    theta = reference.state("theta")
    for summary, expected in (("mean", _order(theta).mean(axis=0)),
                              ("std", _order(theta).std(axis=0))):
        grid = grid_summary(series, summary)
        assert (grid.x_name, grid.y_name) == ("global_coupling", "global_speed")
        np.testing.assert_array_equal(grid.x, COUPLINGS)
        np.testing.assert_array_equal(grid.y, np.sort(SPEEDS))
        # cos/sin sums against a complex mean: rounding only
        np.testing.assert_allclose(grid.values, _on_grid(expected), rtol=1e-12, atol=1e-14)
        assert grid.label == f"{summary} R(theta)"
    grid = grid_summary(series, "fc_corr", target=_target())
    np.testing.assert_allclose(grid.values, _on_grid(_fc_corr(theta, _target())), rtol=1e-10)


def test_heatmap_of_a_reduce_store_equals_the_same_summaries(stores, reference):
    _, _, reduced = stores
    assert "theta_mean" not in reduced  # a phase is not summarised by its mean angle
    assert reduced["theta_order_mean"].dims == ("set",)
    theta = reference.state("theta")
    np.testing.assert_allclose(grid_summary(reduced, "mean").values,
                               _on_grid(_order(theta).mean(axis=0)), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grid_summary(reduced, "std").values,
                               _on_grid(_order(theta).std(axis=0)), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grid_summary(reduced, "fc_corr").values,
                               _on_grid(_fc_corr(theta, _target())), rtol=1e-10)
    np.testing.assert_array_equal(reduced["diverged"].values, 0)  # stored with reduce too


def test_an_ordinary_variable_is_summarised_by_its_mean_and_std_over_time():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(7, 3, 4))
    ds = xr.Dataset({"x": (("time", "region", "set"), x)},
                    coords={"time": np.arange(7.0), "region": ["a", "b", "c"],
                            "set": np.arange(4), "g": ("set", [0.0, 0.0, 1.0, 1.0]),
                            "h": ("set", [1.0, 2.0, 1.0, 2.0])},
                    attrs={"state_names": "x", "periodic": ""})
    label, mean = set_summary(ds, "mean")
    assert label == "mean x"
    np.testing.assert_allclose(mean, x.mean(axis=(0, 1)), rtol=1e-14)
    grid = grid_summary(ds, "std")
    np.testing.assert_allclose(grid.values.ravel(order="F"), x.std(axis=0).mean(axis=0),
                               rtol=1e-14)
    with pytest.raises(ParameterError, match="needs a target FC"):
        set_summary(ds, "fc_corr")
    with pytest.raises(ParameterError, match="'y' is not a state variable"):
        set_summary(ds, "mean", "y")
    with pytest.raises(ParameterError, match="exactly two parameters, but this file varies 1"):
        grid_summary(ds.isel(set=[0, 2]), "mean")


def _png(result, path):
    assert result.exit_code == 0, result.output
    assert path.read_bytes()[:8] == PNG
    return " ".join(result.output.split())


def test_plot_command_draws_a_result_file_and_both_stores(tmp_path, stores, reference):
    folder, _, _ = stores
    result_file = tmp_path / "run.npz"
    reference.save(result_file)
    text = _png(runner.invoke(app, ["plot", str(result_file), "-o", str(tmp_path / "r.png"),
                                    "--regions", "0,4"]), tmp_path / "r.png")
    assert "time series, fc, heatmap" in text
    text = _png(runner.invoke(app, ["plot", str(folder / "series.zarr"), "-o",
                                    str(tmp_path / "s.png"), "--summary", "std"]),
                tmp_path / "s.png")
    assert "time series, fc, heatmap" in text
    text = _png(runner.invoke(app, ["plot", str(folder / "reduced.zarr"), "-o",
                                    str(tmp_path / "d.png"), "--summary", "fc_corr"]),
                tmp_path / "d.png")
    assert "wrote" in text and text.endswith(": heatmap")


@pytest.mark.parametrize(("extra", "message"), [
    (["--regions", "0,x"], "expected comma-separated integers"),
    (["--regions", "9"], "regions must be indices in 0..4, but got 9"),
    (["--summary", "median"], "summary must be one of mean, std, fc_corr"),
    (["-o", "picture.jpeg2"], "must end in one of .png, .pdf, .svg"),
])
def test_plot_command_reports_mistakes_without_a_traceback(stores, extra, message):
    folder, _, _ = stores
    result = runner.invoke(app, ["plot", str(folder / "series.zarr"), *extra])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert message in text and "Traceback" not in text


def test_plot_command_names_a_file_it_cannot_read(tmp_path):
    (tmp_path / "empty.zarr").mkdir()
    (tmp_path / "text.npz").write_text("not an archive")
    (tmp_path / "text.nc").write_text("not netcdf")
    for name, message in (("empty.zarr", "is not a Zarr store neuralmass wrote"),
                          ("text.npz", "is not a neuralmass result file"),
                          ("text.nc", "is not a neuralmass result file"),
                          ("missing.nc", "does not exist"),
                          ("run.txt", "must end in one of .nc, .zarr, .npz")):
        (tmp_path / "run.txt").write_text("")
        result = runner.invoke(app, ["plot", str(tmp_path / name)])
        assert result.exit_code == 2, result.output
        text = " ".join(result.output.split())
        assert message in text and "Traceback" not in text, text
