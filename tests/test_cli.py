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
