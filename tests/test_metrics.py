"""neuralmass.metrics against NumPy/SciPy references, batched over parameter sets, and on JAX.

Tolerances: float64 rounding (1e-12) where the reference computes the same quantity in a
different order (np.corrcoef, scipy.stats.pearsonr, scipy.signal.welch); exact equality for
the KS statistic to 1e-15 (both count the same CDF steps; only the last
bit of count_a / n - count_b / m differs); 1e-6 relative for jax.grad against a central
difference (step 1e-5, truncation ~1e-10).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal, stats

import neuralmass as nm
from neuralmass.errors import ParameterError

RNG = np.random.default_rng(0)
X = RNG.standard_normal((120, 6, 3)).cumsum(axis=0)  # (T, N, P): correlated random walks
ROWS, COLS = np.tril_indices(6, -1)


def test_fc_matches_corrcoef_per_set():
    fc = nm.metrics.fc(X)
    assert fc.shape == (6, 6, 3)
    for p in range(3):
        np.testing.assert_allclose(fc[..., p], np.corrcoef(X[..., p].T), atol=1e-12)
    np.testing.assert_allclose(nm.metrics.fc(X[..., 0]), fc[..., 0], atol=1e-14)


CHUNK = nm.metrics._FC_CHUNK_SETS


@pytest.mark.parametrize("n_sets", [1, CHUNK - 1, CHUNK, CHUNK + 1, 300])
def test_fc_in_chunks_of_sets_matches_corrcoef_per_set(n_sets):
    """Every set of every chunk (the last one partial or not) against np.corrcoef, and the
    unbatched (T, N) input; 1e-12: float64, the same sums in another order."""
    x = np.random.default_rng(n_sets).standard_normal((40, 5, n_sets)).cumsum(axis=0)
    fc = nm.metrics.fc(x)
    assert fc.shape == (5, 5, n_sets) and fc.dtype == np.float64
    for p in range(n_sets):
        np.testing.assert_allclose(fc[..., p], np.corrcoef(x[..., p].T), rtol=0, atol=1e-12)
    np.testing.assert_allclose(nm.metrics.fc(x[..., -1]), np.corrcoef(x[..., -1].T),
                               rtol=0, atol=1e-12)


def test_fc_of_a_constant_or_nan_series_is_nan_as_corrcoef():
    """A strided (T, N, P) view; an exactly constant series (centred norm 0) and one holding
    a NaN give NaN in their region's row and column, as np.corrcoef; a constant that is not
    exactly its mean in floating point (0.7 over 45 samples) leaves rounding residue / rounding
    residue, which np.corrcoef computes from the same residue (hence atol 1e-12, not NaN)."""
    x = np.random.default_rng(0).standard_normal((50, 2, 6, 11))[5:, 1]
    x[:, 2, 3] = 2.0
    x[:, 4, 5] = 0.7
    x[10, 0, 9] = np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        fc = nm.metrics.fc(x)
        for p in range(x.shape[2]):
            np.testing.assert_allclose(fc[..., p], np.corrcoef(x[:, :, p].T), rtol=1e-12,
                                       atol=1e-12, equal_nan=True)
    nan = np.zeros(fc.shape, bool)
    nan[2, :, 3] = nan[:, 2, 3] = True  # region 2 of set 3 is constant
    nan[0, :, 9] = nan[:, 0, 9] = True  # region 0 of set 9 holds the NaN
    np.testing.assert_array_equal(np.isnan(fc), nan)


def test_fc_corr_distance_diff_match_scipy():
    fc, emp = nm.metrics.fc(X), np.corrcoef(RNG.standard_normal((50, 6)).T)
    r, d, m = (nm.metrics.fc_corr(fc, emp), nm.metrics.fc_distance(fc, emp),
               nm.metrics.fc_diff(fc, emp))
    for p in range(3):
        a, b = fc[ROWS, COLS, p], emp[ROWS, COLS]
        assert abs(r[p] - stats.pearsonr(a, b).statistic) < 1e-12
        assert abs(d[p] - np.sqrt(np.mean((a - b) ** 2))) < 1e-12
        assert abs(m[p] - abs(a.mean() - b.mean())) < 1e-12
    assert abs(nm.metrics.fc_corr(emp, emp) - 1.0) < 1e-12


def test_fcd_matches_corrcoef_of_window_triangles():
    window, step = 30, 7
    fcd = nm.metrics.fcd(X, window, step)
    starts = range(0, 120 - window + 1, step)
    iu = np.triu_indices(6, 1)
    for p in range(3):
        tri = np.array([np.corrcoef(X[s:s + window, :, p].T)[iu] for s in starts])
        np.testing.assert_allclose(fcd[..., p], np.corrcoef(tri), atol=1e-12)


@pytest.mark.parametrize("batched", [False, True])
def test_fcd_ks_matches_ks_2samp(batched):
    fcd_sim = nm.metrics.fcd(X if batched else X[..., 0], 20, 5)
    fcd_emp = nm.metrics.fcd(RNG.standard_normal((90, 6)).cumsum(axis=0), 20, 5)
    ks = nm.metrics.fcd_ks(fcd_sim, fcd_emp)
    iu_s, iu_e = np.triu_indices(fcd_sim.shape[0], 1), np.triu_indices(fcd_emp.shape[0], 1)
    sims = fcd_sim[iu_s] if batched else fcd_sim[iu_s][:, None]
    expected = [stats.ks_2samp(sims[:, p], fcd_emp[iu_e]).statistic for p in range(sims.shape[1])]
    np.testing.assert_allclose(np.atleast_1d(ks), expected, rtol=0, atol=1e-15)
    # 1-D values with ties
    a, b = np.round(RNG.standard_normal(40), 1), np.round(RNG.standard_normal(55), 1)
    assert abs(nm.metrics.fcd_ks(a, b) - stats.ks_2samp(a, b).statistic) < 1e-15


def test_kuramoto_order_and_metastability():
    theta = RNG.uniform(0, 2 * np.pi, (50, 8, 2))
    r = nm.metrics.kuramoto_order(theta)
    expected = np.abs(np.exp(1j * theta).mean(axis=1))
    np.testing.assert_allclose(r, expected, atol=1e-14)
    np.testing.assert_allclose(nm.metrics.metastability(theta), expected.std(axis=0),
                               atol=1e-14)
    assert np.allclose(nm.metrics.kuramoto_order(np.ones((5, 4))), 1.0)  # in phase: R = 1


def test_psd_matches_welch_and_peak_frequency():
    dt = 2.0  # ms: fs = 500 Hz
    t = np.arange(2000) * dt * 1e-3
    x = np.sin(2 * np.pi * 40.0 * t)[:, None, None] + 0.1 * RNG.standard_normal((2000, 2, 2))
    freqs, power = nm.metrics.psd(x, dt, nperseg=250)
    ref_f, ref_p = signal.welch(x, fs=500.0, nperseg=250, axis=0)
    np.testing.assert_allclose(freqs, ref_f, rtol=1e-12)
    np.testing.assert_allclose(power, ref_p, rtol=1e-10, atol=1e-14 * ref_p.max())
    assert np.all(nm.metrics.peak_frequency(x, dt, nperseg=250) == 40.0)


def test_metrics_jit_and_grad_on_jax(jax_x64):
    import jax
    import jax.numpy as jnp

    emp = jnp.asarray(np.corrcoef(RNG.standard_normal((50, 6)).T))
    fn = jax.jit(lambda x: nm.metrics.fc_corr(nm.metrics.fc(x), emp))
    np.testing.assert_allclose(fn(jnp.asarray(X)), nm.metrics.fc_corr(nm.metrics.fc(X), emp),
                               atol=1e-12)
    loss = jax.jit(lambda x: jnp.sum(nm.metrics.fc_corr(nm.metrics.fc(x), emp)))
    grad = np.asarray(jax.grad(loss)(jnp.asarray(X)))
    h = 1e-5
    for idx in [(3, 1, 0), (60, 4, 2), (119, 0, 1)]:
        plus, minus = X.copy(), X.copy()
        plus[idx] += h
        minus[idx] -= h
        numeric = (float(loss(plus)) - float(loss(minus))) / (2 * h)
        assert abs(grad[idx] - numeric) < 1e-6 * max(abs(numeric), 1e-3)
    ks = jax.jit(nm.metrics.fcd_ks)(jnp.asarray(nm.metrics.fcd(X, 20, 5)),
                                    nm.metrics.fcd(X[..., 0], 20, 5))
    np.testing.assert_allclose(ks, nm.metrics.fcd_ks(nm.metrics.fcd(X, 20, 5),
                                                     nm.metrics.fcd(X[..., 0], 20, 5)),
                               rtol=0, atol=1e-15)  # XLA may divide by n as * (1 / n)


@pytest.mark.parametrize("call, match", [
    (lambda: nm.metrics.fc(np.ones(10)), r"\(T, N\) or \(T, N, P\)"),
    (lambda: nm.metrics.fc_corr(np.eye(4), np.eye(5)), r"fc_emp must be \(4, 4\)"),
    (lambda: nm.metrics.fcd(X, 500, 1), "window must be"),
    (lambda: nm.metrics.fcd(X, 10, 0), "step must be"),
    (lambda: nm.metrics.fcd_ks(np.ones((3, 4)), np.ones(5)), "fcd_sim must be"),
    (lambda: nm.metrics.psd(X, -1.0), "dt must be"),
])
def test_metric_errors(call, match):
    with pytest.raises(ParameterError, match=match):
        call()
