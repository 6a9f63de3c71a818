"""The command line: models, show, run (grids from the model's declared ranges), codegen."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import neuralmass as nm
from neuralmass.cli import app, parse_grid

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def test_models_lists_every_bundled_model():
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    for name in nm.models.available():
        assert name in result.output


def test_show_prints_the_equations():
    result = runner.invoke(app, ["show", "montbrio"])
    assert result.exit_code == 0, result.output
    assert "dr/dt = " in result.output and "dV/dt = " in result.output
    assert "c_pop0 = global_coupling" in result.output


def test_unknown_model_is_a_clear_error_not_a_traceback():
    result = runner.invoke(app, ["show", "kuramotto"])
    assert result.exit_code == 2
    assert "unknown model 'kuramotto'" in result.output
    assert "Traceback" not in result.output


def test_grid_from_declared_ranges_first_axis_slowest():
    model = nm.load_model("montbrio")
    params = parse_grid(model, ["global_coupling=3", "eta=-5:-4:2"], None)
    np.testing.assert_allclose(params["global_coupling"], [0, 0, 0.25, 0.25, 0.5, 0.5])
    np.testing.assert_allclose(params["eta"], [-5, -4, -5, -4, -5, -4])


def test_grid_all_sweeps_every_declared_parameter():
    model = nm.load_model("kuramoto")
    params = parse_grid(model, [], 4)
    assert set(params) == {"global_coupling", "global_speed"}
    assert params["global_coupling"].shape == (16,)
    np.testing.assert_allclose(np.unique(params["global_speed"]), np.linspace(1, 10, 4))


def test_run_writes_a_result_file_and_a_summary(tmp_path):
    out = tmp_path / "sweep.npz"
    result = runner.invoke(app, [
        "run", "kuramoto", "--grid", "global_coupling=0:0.5:3", "--steps", "200",
        "--monitor", "temporal_average:1.0", "--backend", "jax", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "3 parameter sets × 200 steps" in result.output
    saved = nm.load_result(out)
    assert saved.data.shape == (20, 1, 76, 3)
    np.testing.assert_allclose(saved.params["global_coupling"], [0, 0.25, 0.5])


def test_monitor_paths_name_each_monitor_by_its_kind():
    from neuralmass.cli import monitor_paths

    assert monitor_paths("out.nc", ["bold:720"]) == ["out.nc"]  # one monitor: as given
    assert monitor_paths("d/out.v2.zarr", ["tavg:1", "bold:720"]) == [
        "d/out.v2.temporal_average.zarr", "d/out.v2.bold.zarr"]
    assert monitor_paths("out.nc", ["bold:720", "raw", nm.monitors.Bold(2000.0)]) == [
        "out.bold-0.nc", "out.raw.nc", "out.bold-1.nc"]


def test_run_with_repeated_monitors_writes_one_file_each_equal_to_each_alone(tmp_path):
    """One run of three monitors (a kind twice) writes out.<label>.nc per monitor, says which
    file holds which, and each file holds what a run of that monitor alone writes (1e-12
    relative: the kernels of other monitor sets are compiled separately and may round
    differently, as in test_monitors_inloop)."""
    base = ["run", "kuramoto", "--grid", "global_coupling=0:0.5:2", "--steps", "400",
            "--noise", "0.001"]
    monitors = ["temporal_average:1", "bold:20", "temporal_average:2"]
    result = runner.invoke(app, base + [a for m in monitors for a in ("--monitor", m)]
                           + ["-o", str(tmp_path / "out.nc")])
    assert result.exit_code == 0, result.output
    labels = ["temporal_average-0", "bold", "temporal_average-1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"out.{x}.nc" for x in labels)
    text = " ".join(result.output.split())
    assert text.count("2 parameter sets × 400 steps") == 1  # one simulation
    for label, monitor in zip(labels, monitors, strict=True):
        path = tmp_path / f"out.{label}.nc"
        assert f"wrote {path} (" in text and f"monitor {monitor}, " in text
        alone = tmp_path / "alone" / f"{label}.nc"
        alone.parent.mkdir(exist_ok=True)
        single = runner.invoke(app, base + ["--monitor", monitor, "-o", str(alone)])
        assert single.exit_code == 0, single.output
        assert "monitor " + monitor not in " ".join(single.output.split())
        got, want = nm.load_result(path), nm.load_result(alone)
        assert got.monitor == want.monitor and got.state_names == want.state_names
        np.testing.assert_array_equal(got.time, want.time)
        np.testing.assert_allclose(got.data, want.data, rtol=1e-12, atol=0)
        np.testing.assert_allclose(got.exposures, want.exposures, rtol=1e-12, atol=0)
    assert sorted(p.name for p in (tmp_path / "alone").iterdir()) == sorted(
        f"{x}.nc" for x in labels)  # one monitor: the path as given


def test_run_reports_bad_arguments_without_a_traceback():
    result = runner.invoke(app, ["run", "kuramoto", "--grid", "omgea=0:1:2", "--steps", "10",
                                 "--backend", "jax"])
    assert result.exit_code == 2
    assert "--grid 'omgea=0:1:2'" in result.output
    result = runner.invoke(app, ["run", "kuramoto", "--dt", "-1", "--steps", "10",
                                 "--backend", "jax"])
    assert result.exit_code == 2
    assert "dt must be a positive number" in result.output


def test_codegen_jax_prints_the_generated_functions():
    result = runner.invoke(app, ["codegen", "kuramoto", "--target", "jax", "--dtype", "float64"])
    assert result.exit_code == 0, result.output
    assert "def step(theta, c_pop0" in result.output
    assert "jax.numpy.sin" in result.output


def _readme_test_command() -> str:
    text = (ROOT / "README.md").read_text()
    commands = re.findall(r"^(?:pip install uv && )?(uv run [^\n]*pytest[^\n]*)$", text, re.M)
    assert commands, "README.md shows no 'uv run ... pytest' command"
    return commands[0]


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert _readme_test_command() in ci.splitlines()


@pytest.mark.parametrize("name", ["LICENSE", "uv.lock", "pyproject.toml"])
def test_project_files_exist(name):
    assert (ROOT / name).is_file()


# (issue 8, section 7) Conflicting options are usage errors, not silent choices: before,
# `--grid eta=-5:-4:2 --param eta=3` ran eta = 3 in every set.
@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--grid", "eta=-5:-4:2", "--param", "eta=3"],
         "--grid 'eta=-5:-4:2' and --param 'eta=3' both set 'eta'; give each name once"),
        (["--grid", "eta=-5:-4:2", "--grid", "eta=4"],
         "--grid 'eta=-5:-4:2' and --grid 'eta=4' both set 'eta'"),
        (["--param", "eta=3", "--param", " eta=4"],
         "--param 'eta=3' and --param ' eta=4' both set 'eta'"),
        (["--grid-all", "2", "--grid", "global_coupling=0:1:3"],
         "--grid-all 2 and --grid 'global_coupling=0:1:3' both set 'global_coupling'"),
        (["--grid-all", "2", "--param", "global_coupling=0.1"],
         "--grid-all 2 and --param 'global_coupling=0.1' both set 'global_coupling'"),
        (["--speed", "3", "--param", "global_speed=2"],
         "--param 'global_speed=2' and --speed 3 both set 'global_speed'"),
        (["--speed", "3", "--grid", "global_speed=1:10:2"],
         "--grid 'global_speed=1:10:2' and --speed 3 both set 'global_speed'"),
    ],
)
def test_a_name_set_by_two_options_is_a_usage_error(options, message):
    result = runner.invoke(app, ["run", "montbrio", *options, "--steps", "10",
                                 "--backend", "jax"])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())  # rich may wrap the line
    assert "Traceback" not in result.output and "parameter sets" not in result.output


def test_options_that_do_not_conflict_run_each_as_given(tmp_path):
    out = tmp_path / "run.npz"
    result = runner.invoke(app, ["run", "montbrio", "--grid", "eta=-5:-4:2", "--param",
                                 "global_coupling=0.1", "--steps", "10", "--backend", "jax",
                                 "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "2 parameter sets × 10 steps" in result.output
    saved = nm.load_result(out).params
    np.testing.assert_array_equal(saved["eta"], [-5, -4])  # exact: linspace's ends
    np.testing.assert_array_equal(saved["global_coupling"], [0.1, 0.1])


def test_user_mistakes_are_errors_before_the_run(tmp_path):
    """--speed 0, an output without a known suffix or in a missing folder: exit 2 with a
    message, no traceback, nothing simulated."""
    for extra, message in ((["--speed", "0"], "speed must be"),
                           (["-o", str(tmp_path / "out_noext")], "must end in one of"),
                           (["-o", str(tmp_path / "no" / "x.npz")], "does not exist")):
        result = runner.invoke(app, ["run", "kuramoto", "--steps", "5", *extra])
        assert result.exit_code == 2, result.output
        text = " ".join(result.output.split())  # rich wraps long lines
        assert message in text and "Traceback" not in text and "parameter sets" not in text


def test_error_text_keeps_brackets():
    """rich markup is escaped: 'neuralmass[cuda]' survives in an error message."""
    import contextlib
    import io

    from neuralmass.cli import _fail
    stream = io.StringIO()
    with contextlib.redirect_stderr(stream):  # Console(stderr=True) writes to sys.stderr
        _fail("install neuralmass[cuda]")
    assert "neuralmass[cuda]" in stream.getvalue()


# ------------------------------------------------- issue 11, §5: the CLI as users meet it
HEAVY = ("sympy", "jax", "jaxlib", "numba", "dask", "distributed", "xarray", "zarr",
         "matplotlib", "numpy", "scipy", "equinox")


def test_help_imports_no_heavy_module():
    """`neuralmass --help` and every subcommand's --help parse without importing SymPy, JAX,
    Numba, Dask, xarray, matplotlib (nor NumPy): they are imported inside the commands."""
    import subprocess
    import sys

    commands = [[], ["run"], ["sweep"], ["fit"], ["plot"], ["bench"], ["analyze"],
                ["codegen"], ["models"], ["show"]]
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from neuralmass.cli import app\n"
        f"for args in {commands!r}:\n"
        "    result = CliRunner().invoke(app, [*args, '--help'])\n"
        "    assert result.exit_code == 0 and 'Usage' in result.output, (args, result.output)\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    loaded = set(out.stdout.split())
    assert "typer" in loaded and "neuralmass" in loaded
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_lazy_package_keeps_every_public_name():
    """`import neuralmass` is lazy (PEP 562) but nm.X, `from neuralmass import X` and dir(nm)
    behave as eager imports did; importing the submodule neuralmass.sweep (or .fit) first
    does not hide the function of that name."""
    import subprocess
    import sys

    code = (
        "import sys, types\n"
        "import neuralmass.sweep, neuralmass.fit\n"
        "import neuralmass as nm\n"
        "assert callable(nm.sweep) and nm.sweep.__module__ == 'neuralmass.sweep', nm.sweep\n"
        "assert callable(nm.fit) and nm.fit.__module__ == 'neuralmass.fit', nm.fit\n"
        "from neuralmass import simulate, grid, Connectivity, Result, load_result\n"
        "assert isinstance(nm.metrics, types.ModuleType) and nm.load_model\n"
        "for name in nm.__all__:\n"
        "    assert name in dir(nm) and getattr(nm, name) is not None, name\n"
        "from neuralmass.sweep import METRICS\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert {"simulate", "grid", "sweep", "fit", "load_result", "Result"} <= set(nm.__all__)
    with pytest.raises(AttributeError, match="has no attribute 'simulat'"):
        nm.simulat  # noqa: B018


def test_cuda_install_hint_keeps_its_brackets_through_the_command(monkeypatch):
    """Without CuPy (made unimportable here, whatever this machine has), `run --backend cuda`
    names the extra `neuralmass[cuda]` (rich markup would eat `[cuda]`): exit 2, no
    traceback."""
    import sys

    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` raises ImportError
    result = runner.invoke(app, ["run", "kuramoto", "--backend", "cuda", "--steps", "20"])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "install neuralmass[cuda]" in text and "Traceback" not in text


@pytest.mark.parametrize("suffix", [".nc", ".zarr", ".npz"])
def test_saved_file_has_the_metadata_and_no_duplicated_arrays(tmp_path, suffix):
    """Every format: the run's metadata as attributes, Kuramoto's exposure theta (the state
    variable itself) stored once, and nm.load_result reads it back."""
    import xarray as xr

    out = tmp_path / f"run{suffix}"
    result = runner.invoke(app, ["run", "kuramoto", "--grid", "global_coupling=0:1:2",
                                 "--steps", "20", "--noise", "0.001", "--seed", "7",
                                 "--monitor", "subsample:0.5", "-o", str(out)])
    assert result.exit_code == 0, result.output
    from neuralmass.io import _read_npz

    ds = (_read_npz(out) if suffix == ".npz" else
          xr.open_zarr(out) if suffix == ".zarr" else xr.open_dataset(out, engine="h5netcdf"))
    assert sorted(ds.data_vars) == ["diverged", "first_nonfinite_step", "theta"]
    attrs = ds.attrs
    assert attrs["model"] == "kuramoto" and attrs["dt"] == 0.1 and attrs["n_steps"] == 20
    assert attrs["integrator"] == "heun" and attrs["monitor"] == "subsample"
    assert attrs["noise"] == "0.001" and attrs["seed"] == 7 and attrs["backend"] == "numba"
    assert attrs["dtype"] == "float64" and attrs["time_units"] == "ms"
    assert attrs["periodic"] == "theta"
    assert ds["time"].attrs.get("units") == "ms" or suffix == ".npz"
    back = nm.load_result(out)
    assert back.data.shape == (4, 1, 76, 2) and back.exposure_names == ("theta",)
    np.testing.assert_array_equal(back.exposure("theta"), back.state("theta"))


def test_run_summary_counts_diverged_sets_and_summarises_a_phase_by_its_order(tmp_path):
    model = tmp_path / "blowup.xml"
    model.write_text(BLOWUP_XML)
    result = runner.invoke(app, ["run", str(model), "--grid", "b=-1:2:2", "--steps", "20",
                                 "--backend", "jax", "--monitor", "raw"])
    assert result.exit_code == 0, result.output
    assert "1 of 2 sets diverged" in " ".join(result.output.split())
    result = runner.invoke(app, ["run", "kuramoto", "--grid", "global_coupling=0:1:3",
                                 "--steps", "50"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "0 of 3 sets diverged" in text
    assert "mean R(theta)" in text and "std R(theta)" in text and "mean theta" not in text


def test_sweep_summary_counts_diverged_sets_with_reduce(tmp_path):
    model = tmp_path / "blowup.xml"
    model.write_text(BLOWUP_XML)
    result = runner.invoke(app, ["sweep", str(model), "--store", str(tmp_path / "s.zarr"),
                                 "--grid", "b=-1:2:4", "--steps", "20", "--backend", "jax",
                                 "--monitor", "raw", "--reduce", "mean"])
    assert result.exit_code == 0, result.output
    # b = -1 and 0 stay finite; b = 1: sqrt(x - 1) is NaN as soon as x < 1, as is b = 2
    assert "4 sets, 1/1 shards done, 2 diverged" in " ".join(result.output.split())


BLOWUP_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Lems description="x turns NaN at the first step for b > x: sqrt of a negative number">
    <ComponentType name="derivatives">
        <Parameter name="global_coupling" dimension="0.0, 1.0" default="0.0"/>
        <Constant name="b" value="-1.0"/>
        <Exposure name="x" dimension="x"/>
        <Dynamics>
            <StateVariable name="x" dimension="0.0, 1.0"/>
            <TimeDerivative variable="dx" value="sqrt(x - b) + c_pop0"/>
        </Dynamics>
    </ComponentType>
    <ComponentType name="coupling_x">
        <Parameter name="x_j" dimension="0"/>
        <DerivedParameter name="c_pop0" value="global_coupling"/>
        <Dynamics>
            <DerivedVariable name="pre" value="x_j"/>
        </Dynamics>
    </ComponentType>
</Lems>
"""
