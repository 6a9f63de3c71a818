"""Offline BOLD (``neuralmass.metrics.bold_hrf`` / ``bold_balloon``) against its sources.

- ``bold_hrf`` against tvb-library's ``monitors.Bold`` fed the same trajectory step by step
  (``/work/shared/fitting.md`` §1c recipe 1), for each kernel: 1e-10 relative in float64 (the
  two differ only in summation order: TVB's 5000-term dot product, an FFT convolution here;
  measured ~1e-15).
- ``bold_balloon(preset="tvb")`` against tvb-library's ``BalloonModel`` analyzer (recipe 3):
  1e-10 relative (same Heun scheme, rounding only).
- every preset against an independent ``scipy.integrate.solve_ivp`` (DOP853, rtol 1e-12) of the
  same ODE with the same piecewise-constant input: Heun's O(dt^2) error is < 1e-6 of the BOLD
  range at dt = 0.5 ms and falls 4x when dt halves.
- NumPy and JAX (float64) give the same BOLD, and jax.grad of it is finite-difference exact.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import max_relative_error
from scipy.integrate import solve_ivp

import neuralmass as nm
from neuralmass import hemodynamics as hd
from neuralmass.errors import ParameterError

TVB_KERNELS = {
    "first_order_volterra": "FirstOrderVolterra",
    "gamma": "Gamma",
    "double_exponential": "DoubleExponential",
    "mixture_of_gammas": "MixtureOfGammas",
}


def _neural_signal(n_samples: int, n_nodes: int, dt: float, seed: int = 0) -> np.ndarray:
    """A smooth positive signal with slow (BOLD-band) and fast parts, (T, N)."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, n_samples + 1)[:, None] * dt * 1e-3  # s
    f_slow, f_fast = rng.uniform(0.02, 0.1, n_nodes), rng.uniform(5.0, 20.0, n_nodes)
    phase = rng.uniform(0, 2 * np.pi, (2, n_nodes))
    return (1.0 + 0.5 * np.sin(2 * np.pi * f_slow * t + phase[0])
            + 0.2 * np.sin(2 * np.pi * f_fast * t + phase[1])
            + 0.05 * rng.standard_normal((n_samples, n_nodes)))


def _tvb_bold_monitor(x: np.ndarray, dt: float, period: float, kernel: str):
    """tvb-library's Bold monitor fed ``x[i]`` at step ``i + 1``: (times, (T_bold, N))."""
    monitors = pytest.importorskip("tvb.simulator.monitors")
    equations = pytest.importorskip("tvb.datatypes.equations")

    class Stub:  # the attributes Bold.config_for_sim reads from a Simulator
        class integrator:
            pass

        class model:
            number_of_modes = 1
            variables_of_interest = ("x",)

    Stub.integrator.dt = dt
    Stub.number_of_nodes = x.shape[1]
    monitor = monitors.Bold(period=period, hrf_kernel=getattr(equations, TVB_KERNELS[kernel])())
    monitor.config_for_sim(Stub)
    times, samples = [], []
    for step in range(1, x.shape[0] + 1):
        out = monitor.sample(step, x[step - 1][None, :, None])
        if out is not None:
            times.append(out[0])
            samples.append(out[1][0, :, 0])
    return np.array(times), np.array(samples)


@pytest.mark.tvb
@pytest.mark.parametrize("kernel", list(TVB_KERNELS))
@pytest.mark.parametrize("dt, period", [(0.5, 2000.0), (1.0, 720.0)])
def test_bold_hrf_matches_tvb_monitor(kernel, dt, period):
    x = _neural_signal(int(30_000 / dt), 3, dt)  # 30 s: past the 20-s warm-up
    time, bold = nm.metrics.bold_hrf(x, dt, period, kernel=kernel)
    tvb_time, tvb_bold = _tvb_bold_monitor(x, dt, period, kernel)
    np.testing.assert_allclose(time, tvb_time, rtol=1e-12)
    assert max_relative_error(bold, tvb_bold) < 1e-10


def test_bold_hrf_batched_is_per_set():
    """A (T, N, P) signal gives per set what (T, N) gives (float64 rounding, 1e-13)."""
    x = np.stack([_neural_signal(8000, 2, 0.5, seed) for seed in range(3)], axis=-1)
    _, bold = nm.metrics.bold_hrf(x, 0.5, 500.0)
    assert bold.shape == (8, 2, 3)
    for p in range(3):
        assert max_relative_error(bold[..., p], nm.metrics.bold_hrf(x[..., p], 0.5, 500.0)[1]) \
            < 1e-13


def test_bold_hrf_constant_input_is_kernel_sum():
    """After the 20-s warm-up a constant input c gives (c Σ G - 1) k1 V0 (Volterra, no Δt
    factor, as TVB): analytic, 1e-12 relative."""
    _, bold = nm.metrics.bold_hrf(np.full((25_000, 1), 2.0), 1.0, 1000.0)
    g = hd.FirstOrderVolterra()
    expected = (2.0 * g.evaluate(hd.kernel_time()).sum() - 1.0) * g.k_1 * g.V_0
    assert abs(bold[-1, 0] - expected) < 1e-12 * abs(expected)


def _tvb_balloon(x: np.ndarray, dt: float) -> np.ndarray:
    """tvb-library's BalloonModel analyzer on ``x`` (T, N) sampled every dt ms: (T, N)."""
    fmri_balloon = pytest.importorskip("tvb.analyzers.fmri_balloon")
    time_series = pytest.importorskip("tvb.datatypes.time_series")
    ts = time_series.TimeSeries(data=x[:, None, :, None], sample_period=dt,
                                sample_period_unit="ms", time=np.arange(x.shape[0]) * dt)
    return fmri_balloon.BalloonModel(time_series=ts).evaluate().data[:, 0, :, 0]


@pytest.mark.tvb
def test_bold_balloon_tvb_preset_matches_tvb_analyzer():
    """The analyzer keeps every sample and never uses x[0] (its state[0] is the rest state);
    fed [x0, x...] its samples 1.. are neuralmass's full-resolution BOLD (period = dt)."""
    dt = 1.0
    x = _neural_signal(20_000, 3, dt)
    reference = _tvb_balloon(np.concatenate([np.zeros((1, 3)), x]), dt)[1:]
    time, bold = nm.metrics.bold_balloon(x, dt, dt, preset="tvb")
    assert max_relative_error(bold, reference) < 1e-10
    _, every_tr = nm.metrics.bold_balloon(x, dt, 500.0, preset="tvb")
    assert max_relative_error(every_tr, reference[499::500]) < 1e-10


def _solve_ivp_bold(x: np.ndarray, dt: float, period: float, c: hd.BalloonConstants):
    """BOLD every ``period`` from DOP853 on each ``dt`` interval with its sample held."""
    n_nodes = x.shape[1]

    def rhs(_, y, u):
        s, f, v, q = y.reshape(4, n_nodes)
        return np.concatenate(hd.balloon_dfun((s, f, v, q), u, c))

    y = np.concatenate([np.zeros(n_nodes), np.ones(3 * n_nodes)])
    every, out = round(period / dt), []
    for i, u in enumerate(x):
        y = solve_ivp(rhs, (0.0, dt * 1e-3), y, args=(u,), method="DOP853", rtol=1e-12,
                      atol=1e-14).y[:, -1]
        if (i + 1) % every == 0:
            out.append(hd.balloon_bold(tuple(y.reshape(4, n_nodes)), c))
    return np.array(out)


@pytest.mark.parametrize("preset", sorted(hd.BALLOON_PRESETS))
def test_bold_balloon_matches_solve_ivp(preset):
    """Heun is second order: the error is ~2e-7 of the BOLD range at dt = 0.5 ms and a quarter
    of it at 0.25 ms (each sample repeated twice: the same held input, the same reference)."""
    dt, period = 0.5, 250.0
    x = _neural_signal(2000, 2, dt)  # 1 s: the BOLD response rises through most of its range
    reference = _solve_ivp_bold(x, dt, period, hd.BALLOON_PRESETS[preset])
    _, bold = nm.metrics.bold_balloon(x, dt, period, preset=preset)
    _, bold_half = nm.metrics.bold_balloon(np.repeat(x, 2, axis=0), dt / 2, period, preset)
    error, error_half = max_relative_error(bold, reference), max_relative_error(bold_half,
                                                                                reference)
    assert error < 1e-6
    assert 0.2 < error_half / error < 0.3


def test_bold_jax_matches_numpy_and_differentiates(jax_x64):
    """JAX (float64) = NumPy to 1e-12; d(sum BOLD)/d(signal scale) equals a central
    difference (step 1e-4 relative, truncation ~1e-8) to 1e-6 relative."""
    import jax
    import jax.numpy as jnp

    x = _neural_signal(3000, 2, 1.0)
    for fn in (lambda s: nm.metrics.bold_hrf(s, 1.0, 1000.0, kernel="gamma")[1],
               lambda s: nm.metrics.bold_balloon(s, 1.0, 1000.0)[1]):
        assert max_relative_error(jax.jit(fn)(jnp.asarray(x)), fn(x)) < 1e-12
        grad = jax.jit(jax.grad(lambda a, fn=fn: jnp.sum(fn(a * jnp.asarray(x)))))(1.0)
        h = 1e-4
        numeric = (np.sum(fn((1 + h) * x)) - np.sum(fn((1 - h) * x))) / (2 * h)
        assert abs(grad - numeric) < 1e-6 * abs(numeric)


@pytest.mark.parametrize("call, match", [
    (lambda: nm.metrics.bold_hrf(np.ones((100, 2)), 0.3), "4-ms BOLD bin"),
    (lambda: nm.metrics.bold_hrf(np.ones((100, 2)), 0.5, 2000.0), "fewer than one BOLD period"),
    (lambda: nm.metrics.bold_hrf(np.ones((8000, 2)), 0.5, kernel="boxcar"), "kernel must be"),
    (lambda: nm.metrics.bold_balloon(np.ones((100, 2)), 0.5, 0.75), "period must be"),
    (lambda: nm.metrics.bold_balloon(np.ones((100, 2)), 0.5, 1.0, preset="x"), "preset must"),
    (lambda: nm.metrics.bold_balloon(np.ones(100), 0.5, 1.0), r"\(T, N\)"),
])
def test_bold_errors(call, match):
    with pytest.raises(ParameterError, match=match):
        call()
