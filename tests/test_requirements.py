"""NEURALMASS_REQUIRE (tests/requirements.py): a strict run fails where a plain one skips.

Each test runs pytest in a subprocess on a tiny test folder, with the plugin loaded
(``-p requirements``) and stand-in packages first on ``sys.path``: a ``tvb`` that imports, or a
``tvb`` / ``numba`` whose import raises ImportError as a broken install would. The real
packages are never touched, so this runs the same wherever it runs. Each strict session runs
in one process and split over two pytest-xdist workers (``-n 2``, as CI's ``-n auto`` on two
cores): the plugin must enforce the same in both.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# the sessions below start processes: with the other tests that do, on one xdist worker
pytestmark = pytest.mark.xdist_group("subprocesses")

TESTS = Path(__file__).resolve().parent
#: pytest's options for a session in one process, and for one on two xdist workers
SESSIONS = {"one-process": [], "two-workers": ["-n", "2"]}

BROKEN = "raise ImportError('simulated broken install')\n"
TVB_MODULES = ("tvb/__init__.py", "tvb/simulator.py", "tvb/datatypes/__init__.py",
               "tvb/datatypes/connectivity.py", "tvb_data.py")

SUITE = {
    "test_plain.py": """
import pytest

def test_passes():
    pass

def test_skips():
    pytest.skip("a reason that would hide a missing extra")

@pytest.mark.gpu
def test_skips_on_gpu():
    pytest.skip("no GPU here")

@pytest.mark.tvb
def test_needs_tvb():
    import tvb.simulator
""",
    "test_whole_module.py": """
import pytest
pytest.importorskip("no_such_module_anywhere")

def test_never_collected():
    pass
""",
}


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def _pytest(tmp_path: Path, require: str | None, stubs: dict[str, str],
            session: str = "one-process"):
    suite, stub_dir = tmp_path / "suite", tmp_path / "stubs"
    _write(suite, SUITE)
    _write(suite, {"pytest.ini": "[pytest]\nmarkers =\n    gpu: x\n    tvb: x\n    nvcc: x\n"})
    stub_dir.mkdir()
    _write(stub_dir, stubs)
    env = {k: v for k, v in os.environ.items() if k != "NEURALMASS_REQUIRE"}
    env["PYTHONPATH"] = os.pathsep.join([str(stub_dir), str(TESTS)])
    if require is not None:
        env["NEURALMASS_REQUIRE"] = require
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "requirements", "-p", "no:cacheprovider",
         "-rA", "--continue-on-collection-errors", *SESSIONS[session], str(suite)],
        cwd=suite, env=env, capture_output=True, text=True, timeout=120)


def _summary(out: str) -> dict[str, int]:
    last = out.strip().splitlines()[-1]
    return {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", last)}


def test_plain_run_skips_with_reasons(tmp_path):
    run = _pytest(tmp_path, None, {name: BROKEN for name in TVB_MODULES})
    assert run.returncode == 0, run.stdout + run.stderr
    assert _summary(run.stdout) == {"passed": 1, "skipped": 4}
    # the tvb marker skips its test and says why
    assert re.search(r"SKIPPED \[1\] test_plain.py:\d+: needs tvb: cannot import tvb.simulator: "
                     r"ImportError\('simulated broken install'\)", run.stdout), run.stdout


@pytest.mark.parametrize("session", SESSIONS)
def test_strict_run_turns_skips_into_failures(tmp_path, session):
    run = _pytest(tmp_path, "tvb", {name: "" for name in TVB_MODULES}, session)
    assert run.returncode == 1, run.stdout + run.stderr
    if session == "two-workers":  # the tests did run on the workers
        assert "created: 2/2 workers" in run.stdout, run.stdout
    assert _summary(run.stdout) == {"failed": 1, "passed": 2, "skipped": 1, "error": 1}
    assert re.search(r"\nskipped \(a reason that would hide a missing "
                     r"extra\), but NEURALMASS_REQUIRE=tvb lets only tests marked "
                     r"peers or nvcc or gpu skip", run.stdout), run.stdout
    # gpu is not required: its test may skip (by its marker, or by itself on a GPU machine)
    assert re.search(r"SKIPPED \[1\] test_plain.py:\d+: (needs gpu|no GPU here)", run.stdout)
    assert re.search(r"\ntest_whole_module.py skipped as a whole \(could not import "
                     r"'no_such_module_anywhere'.*\), but NEURALMASS_REQUIRE=tvb forbids "
                     r"module-level skips", run.stdout), run.stdout


@pytest.mark.parametrize("session", SESSIONS)
@pytest.mark.parametrize("require, stubs, expected", [
    ("tvb,nvcc", {name: BROKEN for name in TVB_MODULES},
     r"tvb: cannot import tvb.simulator: ImportError\('simulated broken install'\) "
     r"\(install the 'tvb' extra"),
    ("numba", {"numba/__init__.py": BROKEN},
     r"numba: importing neuralmass.backends.numba failed: ImportError\('simulated broken"),
    ("tvb,cuda", {}, r"unknown requirement\(s\) 'cuda'; expected a comma-separated list of "
                     r"jax, numba, tvb"),
])
def test_strict_run_stops_before_testing_when_a_requirement_is_missing(
        tmp_path, require, stubs, expected, session):
    run = _pytest(tmp_path, require, stubs, session)
    assert run.returncode == pytest.ExitCode.USAGE_ERROR, run.stdout + run.stderr
    assert re.search(expected, run.stderr), run.stderr
    assert "passed" not in run.stdout


def test_helpers_leave_out_a_backend_that_fails_to_import(tmp_path):
    """Outside a strict run, available_backends() still just leaves numba out (backward
    compatible for the modules that import it)."""
    (tmp_path / "numba").mkdir()
    (tmp_path / "numba" / "__init__.py").write_text(BROKEN)
    code = "from helpers import available_backends, backend_import_error as e; " \
           "print(available_backends()); print(e('numba'))"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(TESTS)]))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True, timeout=120).stdout.splitlines()
    assert out == ["['jax']", "importing neuralmass.backends.numba failed: "
                              "ImportError('simulated broken install')"]
