"""``neuralmass bench`` (issue #13) on tiny sizes: the table, the JSON schema, the PNG, the
arithmetic between the figures, skipped backends, scans stopped by the memory estimate and
peers. No timing is asserted (the machine is shared); only that the figures agree."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import neuralmass as nm
from neuralmass import bench
from neuralmass.cli import app
from neuralmass.errors import ParameterError

runner = CliRunner()

RESULT_TYPES = {"backend": str, "model": str, "dtype": str, "sets": int, "steps": int,
                "panel": str, "compile_s": dict, "run_s": dict, "repeat": int,
                "set_steps_per_s": float, "channels": int, "nnz": int,
                "effective_gb_s": float, "copy_bandwidth_gb_s": float,
                "fraction_of_copy": float, "peak_rss_gib": float, "finite": bool}


def test_cli_prints_the_table_and_writes_consistent_json_and_a_png(tmp_path):
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    result = runner.invoke(app, ["bench", "--backend", "numba,cuda", "--model", "kuramoto",
                                 "--sets", "8", "--steps", "50", "--repeat", "2",
                                 "--dtype", "float64", "--copy-mib", "8",
                                 "--json", str(out_json), "--plot", str(out_png)])
    assert result.exit_code == 0, result.output
    for column in ("compile s", "set-steps/s", "effective", "copy GB/s", "peak RSS"):
        assert column in result.output
    report = json.loads(out_json.read_text())
    assert report["schema"] == bench.SCHEMA
    assert {"cpu", "cores", "gpu", "versions"} <= set(report["machine"])
    assert isinstance(report["copy_bandwidth_gb_s"]["host"], float)
    (row,) = [r for r in report["results"] if r["backend"] == "numba"]
    for field, kind in RESULT_TYPES.items():
        assert isinstance(row[field], kind), field
    assert set(row["compile_s"]) == {"cold", "cached"}
    assert isinstance(row["compile_s"]["cached"], float)  # the second process really ran
    assert set(row["run_s"]) == {"min", "median", "max"}
    assert row["run_s"]["min"] <= row["run_s"]["median"] <= row["run_s"]["max"]
    assert (row["sets"], row["steps"], row["repeat"], row["panel"]) == (8, 50, 2, "B")
    # the figures are computed from one another: equal up to float rounding (1e-12)
    seconds = row["run_s"]["median"]
    assert row["set_steps_per_s"] * seconds == pytest.approx(8 * 50, rel=1e-12)
    # Kuramoto reads sin θ and cos θ per edge (sin(θj − θi) expanded): C = 2, analytic
    nnz = np.count_nonzero(nm.Connectivity.default().weights)
    assert (row["channels"], row["nnz"]) == (2, nnz)
    moved = 8 * 50 * nnz * 2 * 8
    assert row["effective_gb_s"] == pytest.approx(moved / seconds / 1e9, rel=1e-12)
    assert row["fraction_of_copy"] == pytest.approx(
        row["effective_gb_s"] / report["copy_bandwidth_gb_s"]["host"], rel=1e-12)
    assert row["finite"]
    if bench.unavailable("cuda"):
        assert [s["backend"] for s in report["skipped"]] == ["cuda"]
        assert f"skipped cuda: {report['skipped'][0]['reason']}" in result.output
    else:
        assert any(r["backend"] == "cuda" for r in report["results"])
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_scans_are_the_poster_panels():
    assert bench.sizes("sets", 1024, 4000) == [("C", 2**k, 4000) for k in range(6, 16)]
    steps = bench.sizes("steps", 1024, 4000)
    assert steps[0] == ("D", 1024, 4000) and steps[-1] == ("D", 1024, 100_000)
    assert bench.sizes(None, 16, 50) == [("B", 16, 50)]
    with pytest.raises(ParameterError, match="scan must be 'sets' or 'steps'"):
        bench.sizes("set", 16, 50)


def test_sweep_params_are_sweep_py_grid_at_1024_sets():
    params = bench.sweep_params("montbrio", 1024)
    assert len(np.unique(params["global_speed"])) == 32
    assert len(np.unique(params["global_coupling"])) == 32
    np.testing.assert_allclose(np.unique(params["global_speed"]), np.linspace(1, 10, 32))
    assert bench.sweep_params("epileptor", 100)["global_speed"].shape == (100,)


def test_scan_stops_where_the_memory_estimate_says_no(monkeypatch):
    import neuralmass.backends._memory as memory

    monkeypatch.setattr(memory, "available_bytes", lambda: 1024)
    lines = []
    report = bench.run_bench(["numba"], ["kuramoto"], ["float32"], [("C", 8, 50), ("C", 16, 50)],
                             repeat=1, copy_bytes=1 << 20, log=lines.append)
    assert report["results"] == []
    (stopped,) = report["stopped"]
    assert (stopped["backend"], stopped["sets"]) == ("numba", 8)
    assert "GiB" in stopped["reason"] and "stopped before 8 sets" in lines[-1]


def test_scan_stops_before_a_run_longer_than_max_run_s():
    """The first size runs; the next is predicted from its rate (8 → 1,024 sets: 128× the
    time) and refused against a limit just above the first run's own time; every finished
    measurement reaches ``checkpoint``."""
    partial = []
    report = bench.run_bench(["numba"], ["kuramoto"], ["float32"],
                             [("C", 8, 50), ("C", 1024, 50)], repeat=1, copy_bytes=1 << 20,
                             log=lambda line: None, checkpoint=partial.append,
                             max_run_s=1e-9)
    (row,) = report["results"]
    (stopped,) = report["stopped"]
    assert (row["sets"], stopped["sets"]) == (8, 1024)
    predicted = 1024 * 50 / row["set_steps_per_s"]
    assert f"~{predicted:.0f} s" in stopped["reason"] and "--max-run-s" in stopped["reason"]
    assert [len(p["results"]) for p in partial] == [1]
    assert partial[0]["schema"] == bench.SCHEMA and partial[0]["peers"] == []


def test_a_peer_that_is_not_installed_is_reported_not_raised(monkeypatch):
    monkeypatch.setattr(bench, "PEERS", {"nopeer": ("neuralmass_no_such_module", None, ())})
    assert bench.measure_peers([], nm.Connectivity.default()) == [
        {"peer": "nopeer", "status": "not installed"}]


def test_the_epileptor_workload_is_coupled():
    """TVB's Epileptor defaults (Ks = Kf = 0) would leave its coupling pruned and C = 0."""
    from neuralmass.backends.numba import prepare

    plan = bench.workload("epileptor", nm.Connectivity.default(), 4, 20, "float64")
    assert prepare(plan).lowering.n_channels > 0


@pytest.mark.tvb
@pytest.mark.parametrize("model", ["kuramoto", "epileptor"])
def test_tvb_peer_rate_and_ratio(model):
    pytest.importorskip("tvb.simulator")
    row = {"backend": "numba", "model": model, "sets": 2, "steps": 20, "dtype": "float32",
           "set_steps_per_s": 1e6}
    peers = bench.measure_peers([row, dict(row, dtype="float64", set_steps_per_s=5e5)],
                                nm.Connectivity.default())
    (tvb,) = [p for p in peers if p["peer"] == "tvb-library"]
    assert tvb["status"] == "ok" and tvb["measured_sets"] == 2 and not tvb["extrapolated"]
    # the ratio is the neuralmass rate over the peer's (exact arithmetic, float rounding)
    # tvb-library runs once (float64) against both dtypes; ratio = neuralmass rate / peer's
    assert tvb["dtype"] == "float64"
    assert tvb["ratio"]["numba float32"] == pytest.approx(1e6 / tvb["set_steps_per_s"], rel=1e-12)
    assert tvb["ratio"]["numba float64"] == pytest.approx(5e5 / tvb["set_steps_per_s"], rel=1e-12)


@pytest.mark.peers
def test_vbjax_peer_runs_and_reports_its_rate():
    row = {"backend": "numba", "model": "montbrio", "sets": 3, "steps": 20, "dtype": "float32",
           "set_steps_per_s": 1e6}
    (vbjax,) = [p for p in bench.measure_peers([row], nm.Connectivity.default())
                if p["peer"] == "vbjax"]
    assert vbjax["status"] == "ok" and vbjax["measured_sets"] == 3 and not vbjax["extrapolated"]
    assert vbjax["ratio"]["numba float32"] == pytest.approx(1e6 / vbjax["set_steps_per_s"])


def _results_tables():
    path = Path(__file__).parent.parent / "benchmarks" / "results_tables.py"
    spec = importlib.util.spec_from_file_location("results_tables", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_results_tables_render_the_report_figures():
    """benchmarks/results_tables.py (RESULTS.md's tables) prints each measured rate and the
    scan's stop, from the report alone."""
    report = bench.run_bench(["numba"], ["kuramoto"], ["float32"],
                             [("C", 8, 50), ("C", 1024, 50)], repeat=1, copy_bytes=1 << 20,
                             log=lambda line: None, max_run_s=1e-9)
    text = _results_tables().tables(dict(report, argv=["neuralmass", "bench", "--scan", "sets"]))
    (row,) = report["results"]
    assert "`neuralmass bench --scan sets`" in text
    rate = f"{row['set_steps_per_s']:.3g}"
    assert f"| 8 |\n|---|---|---|---:|\n| numba | kuramoto | float32 | {rate} |\n" in text
    assert "- stopped numba kuramoto float32 at 1,024 sets × 50 steps: one run" in text


def test_jax_compile_time_is_measured_not_subtracted(tmp_path, monkeypatch):
    """The JAX row's cold compile comes from JAX's own compile events: positive and shorter
    than the call that contains it (the subtraction it replaces, first run minus median run,
    read 0 s when a timed run happened to be slower than the first)."""
    import time

    monkeypatch.setenv("NEURALMASS_CACHE_DIR", str(tmp_path))  # nothing compiled yet
    plan = bench.workload("kuramoto", nm.Connectivity.default(), 4, 20, "float32")
    started = time.perf_counter()
    measurement = bench.MEASURE["jax"](plan, 1)
    elapsed = time.perf_counter() - started
    assert 0 < measurement["cold"] < elapsed - measurement["runs"][0]
    with bench._jax_compile_seconds() as spent:  # a block that compiles nothing
        pass
    assert spent == [0.0]
