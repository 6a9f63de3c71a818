"""Fixtures shared by the simulation tests: the backend matrix and JAX's 64-bit mode; the
``NEURALMASS_REQUIRE`` plugin (tests/requirements.py) that makes a CI run fail, not skip, when
something it requires is missing."""

from __future__ import annotations

import pytest
from helpers import available_backends

pytest_plugins = ["requirements"]

BACKENDS = available_backends()


def pytest_report_header(config):
    return f"neuralmass backends under test: {', '.join(BACKENDS)}"


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    """Every backend usable here (see ``helpers.available_backends``)."""
    return request.param


def _jax_64_bit_mode(enabled: bool):
    jax = pytest.importorskip("jax")
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", enabled)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", before)


@pytest.fixture
def jax_x64():
    """JAX's 64-bit mode on for one test, restored afterwards (neuralmass never flips it)."""
    yield from _jax_64_bit_mode(True)


@pytest.fixture
def jax_x32():
    """JAX's default 32-bit mode for one test, whatever ran before; restored afterwards."""
    yield from _jax_64_bit_mode(False)
