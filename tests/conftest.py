"""Fixtures shared by the simulation tests: the backend matrix and JAX's 64-bit mode."""

from __future__ import annotations

import pytest
from helpers import available_backends

BACKENDS = available_backends()


def pytest_report_header(config):
    return f"neuralmass backends under test: {', '.join(BACKENDS)}"


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    """Every backend usable here (see ``helpers.available_backends``)."""
    return request.param


@pytest.fixture
def jax_x64():
    """JAX's 64-bit mode on for one test, restored afterwards (neuralmass never flips it)."""
    jax = pytest.importorskip("jax")
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", before)
