"""``NEURALMASS_REQUIRE``: what a test run must have, so that CI cannot pass by skipping.

A pytest plugin (loaded by ``conftest.py``). ``.ci/run`` exports
``NEURALMASS_REQUIRE="tvb,peers,xarray,numba,jax,nvcc"``, a comma-separated list of names from
:data:`REQUIREMENTS`. With it set (a *strict run*):

1. every named requirement is checked when pytest starts; any that is missing (an extra that
   failed to install, a backend whose import raises, no ``nvcc``) stops the run before the first
   test with a usage error (exit status 4) that names each one, why, and how to install it;
2. a test that skips fails instead, unless it carries the marker of a requirement that is *not*
   named (on CI: ``gpu``); a module that skips as a whole while being imported fails too, as its
   markers cannot be read.

Unset or empty (a developer's machine), nothing is enforced: a test marked ``tvb``, ``peers``,
``nvcc`` or ``gpu`` skips, with the reason, where that requirement is missing.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import shutil

import pytest
from helpers import backend_import_error

ENV = "NEURALMASS_REQUIRE"


def _modules(*names: str):
    def check() -> str | None:
        for name in names:
            try:
                importlib.import_module(name)
            except ImportError as error:
                return f"cannot import {name}: {error!r}"
        return None
    return check


def _findable(*names: str):
    """Installed, without importing (importing vbjax sets XLA_FLAGS for the whole session)."""
    def check() -> str | None:
        missing = [name for name in names if importlib.util.find_spec(name) is None]
        return f"cannot find {', '.join(missing)}" if missing else None
    return check


def _program(name: str):
    return lambda: None if shutil.which(name) else f"{name} is not on the PATH"


def _gpu() -> str | None:
    from neuralmass.backends.cuda._cupy import require_cupy
    from neuralmass.errors import BackendUnavailableError

    try:
        require_cupy()
    except BackendUnavailableError as error:
        return str(error)
    return None


#: name -> (check returning None when usable, else why not; how to get it).
REQUIREMENTS = {
    "jax": (lambda: backend_import_error("jax"), "a core dependency: reinstall neuralmass"),
    "numba": (lambda: backend_import_error("numba"), "a core dependency: reinstall neuralmass"),
    "tvb": (_modules("tvb.simulator", "tvb.datatypes.connectivity", "tvb_data"),
            "install the 'tvb' extra: uv run --extra tvb ..."),
    "peers": (_findable("vbjax", "tqdm"),
              "install the 'peers' extra (what bench --peers times): uv run --extra peers ..."),
    "xarray": (_modules("xarray"), "xarray is a dependency of neuralmass: reinstall it (uv sync)"),
    "nvcc": (_program("nvcc"), "install the CUDA toolkit"),
    "gpu": (_gpu, "install the 'cuda' extra on a machine with an NVIDIA GPU"),
}
#: The requirements that are also test markers (pyproject.toml).
MARKERS = ("tvb", "peers", "nvcc", "gpu")


@functools.cache
def missing(name: str) -> str | None:
    """Why requirement ``name`` is not usable here, or None when it is (checked once)."""
    return REQUIREMENTS[name][0]()


_REQUIRED = pytest.StashKey[frozenset]()


def required(config: pytest.Config) -> frozenset[str]:
    """The requirements named by ``NEURALMASS_REQUIRE`` (empty: not a strict run)."""
    return config.stash[_REQUIRED]


def pytest_configure(config: pytest.Config) -> None:
    names = [n.strip() for n in os.environ.get(ENV, "").split(",") if n.strip()]
    unknown = [n for n in names if n not in REQUIREMENTS]
    if unknown:
        raise pytest.UsageError(
            f"{ENV}={os.environ[ENV]!r}: unknown requirement(s) {', '.join(map(repr, unknown))}; "
            f"expected a comma-separated list of {', '.join(REQUIREMENTS)}")
    absent = [f"  {n}: {missing(n)} ({REQUIREMENTS[n][1]})" for n in names if missing(n)]
    if absent:
        raise pytest.UsageError(
            f"{ENV}={os.environ[ENV]!r} requires what this environment lacks:\n"
            + "\n".join(absent))
    config.stash[_REQUIRED] = frozenset(names)


def pytest_report_header(config: pytest.Config) -> str:
    names = required(config)
    if not names:
        return f"{ENV} unset: tests whose requirement is missing skip"
    return (f"{ENV}={','.join(sorted(names))}: a skip fails unless the test is marked "
            f"{' or '.join(_optional_markers(config)) or '(nothing)'}")


def _optional_markers(config: pytest.Config) -> list[str]:
    """Markers whose tests may skip: requirements not named by NEURALMASS_REQUIRE."""
    return [n for n in MARKERS if n not in required(config)]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test marked ``tvb``, ``peers``, ``nvcc`` or ``gpu`` skips, with the reason, where that
    is missing (a failure in a strict run that requires it, which has stopped before this point)."""
    for item in items:
        for name in MARKERS:
            if item.get_closest_marker(name) is not None and missing(name):
                reason = f"needs {name}: {missing(name)} ({REQUIREMENTS[name][1]})"
                item.add_marker(pytest.mark.skip(reason=reason))


def _reason(longrepr) -> str:
    """The reason of a skip report's ``(path, line, "Skipped: reason")``."""
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    report = yield
    names = required(item.config)
    if (names and report.skipped and not hasattr(report, "wasxfail")
            and not any(item.get_closest_marker(m) for m in _optional_markers(item.config))):
        report.outcome = "failed"
        report.longrepr = (
            f"skipped ({_reason(report.longrepr)}), but {ENV}={','.join(sorted(names))} "
            f"lets only tests marked {' or '.join(_optional_markers(item.config))} skip")
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    report = yield
    names = required(collector.config)
    if names and report.skipped:
        report.outcome = "failed"
        report.longrepr = (
            f"{collector.nodeid} skipped as a whole ({_reason(report.longrepr)}), but "
            f"{ENV}={','.join(sorted(names))} forbids module-level skips (mark the tests "
            "instead)")
    return report
