"""Check tests/tvb_reference.run_tvb against a plain-NumPy re-implementation of tvb-library's
algorithm (/work/shared/tvb-conventions.md), independently of neuralmass.

The re-implementation computes everything in float64; run_tvb patches tvb-library's float32
history to float64, which is what makes 1e-10 agreement possible.
"""

import numpy as np
import pytest

pytest.importorskip(
    "tvb.simulator", reason="tvb-library is not installed (install the 'tvb' extra)"
)

from tvb_reference import _float64_history, connectivity_76, run_tvb, tvb_horizon  # noqa: E402

pytestmark = pytest.mark.tvb

DT, SPEED, N_STEPS = 0.1, 3.0, 300


def _mpr(x, c, p):
    r, v = x
    tau = p["tau"]
    dr = (p["Delta"] / (np.pi * tau) + 2 * v * r) / tau
    dv = (v**2 - np.pi**2 * tau**2 * r**2 + p["eta"] + p["J"] * tau * r + p["I"]
          + p["cr"] * c[0] + p["cv"] * c[1]) / tau
    return np.array([dr, dv])


# name -> (dfun, cvar, pre(x_i, x_j), post(summed, a), lower bounds per state variable)
_REF = {
    "montbrio": (_mpr, [0, 1], lambda xi, xj: xj, lambda s, a: a * s, [0.0, -np.inf]),
    "kuramoto": (lambda x, c, p: p["omega"] + c, [0],
                 lambda xi, xj: np.sin(xj - xi), lambda s, a: a / s.shape[0] * s, [-np.inf]),
}
_DEFAULTS = {
    "montbrio": dict(tau=1.0, Delta=1.0, eta=-5.0, J=15.0, I=0.0, cr=1.0, cv=0.0),
    "kuramoto": dict(omega=1.0),
}


def numpy_tvb(model, weights, lengths, hist, params, integrator, n_steps=N_STEPS, dt=DT):
    """TVB's algorithm: coupling once per step from the past (row H-1 of hist is t = 0),
    Heun with that coupling in both stages, clipping to the bounds after each stage."""
    dfun, cvar, pre, post, lo = _REF[model]
    p = {**_DEFAULTS[model], **params}
    lo = np.array(lo)[:, None]
    delays = np.rint(lengths / SPEED / dt).astype(int)
    n_hist, n_node = hist.shape[0], weights.shape[0]
    xs = np.empty((n_hist + n_steps,) + hist.shape[1:])  # xs[n_hist - 1 + k] is time k * dt
    xs[:n_hist] = np.maximum(hist, lo)
    cols = np.arange(n_node)[None, :]
    for k in range(n_hist - 1, n_hist - 1 + n_steps):
        x = xs[k]
        x_j = xs[k - delays, :, cols][..., cvar].transpose(2, 0, 1)  # (n_cvar, i, j)
        x_i = x[cvar][:, :, None]
        c = post((weights * pre(x_i, x_j)).sum(axis=2), p["global_coupling"])
        f1 = dfun(x, c, p)
        if integrator == "euler":
            xs[k + 1] = np.maximum(x + dt * f1, lo)
        else:
            x_pred = np.maximum(x + dt * f1, lo)
            xs[k + 1] = np.maximum(x + dt * (f1 + dfun(x_pred, c, p)) / 2, lo)
    return xs[n_hist:]


def _connectome(n=5, seed=1):
    rng = np.random.default_rng(seed)
    weights = rng.uniform(0.1, 1.0, (n, n)) * (rng.uniform(size=(n, n)) < 0.7)
    weights[0, 0] = 0.5  # self-connection with zero length: delay 0 reads the current state
    lengths = rng.uniform(1.0, 25.0, (n, n)) * (rng.uniform(size=(n, n)) < 0.6)
    np.fill_diagonal(lengths, 0.0)
    return weights, lengths, rng


def _history(model, n_hist, n_node, rng):
    if model == "kuramoto":
        return rng.uniform(0, 2 * np.pi, (n_hist, 1, n_node))
    r, v = rng.uniform(0, 2, (n_hist, n_node)), rng.uniform(-2, 1.5, (n_hist, n_node))
    hist = np.stack([r, v], axis=1)
    hist[:, 0, 1] = -0.3  # below the bound r >= 0: tvb clips every history row
    hist[-1, :, 2] = [0.8, -11.0]  # so fast a fall that the first steps clip r at 0
    return hist


CASES = [
    ("montbrio", dict(global_coupling=0.4, cv=0.2, eta=-4.6)),
    ("kuramoto", dict(global_coupling=0.7, omega=1.3)),
]


@pytest.mark.parametrize("integrator", ["heun", "euler"])
@pytest.mark.parametrize("model,params", CASES, ids=[c[0] for c in CASES])
def test_run_tvb_matches_numpy_reimplementation(model, params, integrator):
    weights, lengths, rng = _connectome()
    n_hist = tvb_horizon(lengths, SPEED, DT)
    assert n_hist > 50 and 0 < np.count_nonzero(lengths[weights != 0]) < weights.size
    hist = _history(model, n_hist, weights.shape[0], rng)
    time, data = run_tvb(model, weights, lengths, speed=SPEED, dt=DT, n_steps=N_STEPS,
                         integrator=integrator, initial_history=hist, params=params)
    ref = numpy_tvb(model, weights, lengths, hist, params, integrator)
    assert time.shape == (N_STEPS,) and data.shape == ref.shape == (N_STEPS, len(hist[0]), 5)
    np.testing.assert_allclose(time, DT * np.arange(1, N_STEPS + 1), rtol=1e-12)
    assert np.isfinite(ref).all() and np.ptp(ref, axis=0).max() > 0.5  # a non-trivial run
    scale = np.abs(ref).max(axis=(0, 2), keepdims=True)
    np.testing.assert_allclose(data, ref, rtol=1e-10, atol=1e-10 * scale.max())
    assert (np.abs(data - ref) <= 1e-10 * scale).all()
    if model == "montbrio":  # the bound was exercised
        assert data[:, 0].min() == 0.0 and data[0, 0, 2] == 0.0


def test_float64_patch_is_restored():
    from tvb.simulator import history

    classes = (history.BaseHistory, history.DenseHistory, history.SparseHistory)

    def dtypes():
        return {(c.__name__, k): v.dtype for c in classes for k, v in vars(c).items()
                if isinstance(v, history.NDArray)}

    before = dtypes()
    assert before[("DenseHistory", "buffer")] == "f"  # stock tvb-library: float32 history
    weights, lengths, rng = _connectome()
    hist = _history("kuramoto", tvb_horizon(lengths, SPEED, DT), 5, rng)
    run_tvb("kuramoto", weights, lengths, speed=SPEED, dt=DT, n_steps=3, integrator="heun",
            initial_history=hist, params=dict(global_coupling=1.0))
    assert dtypes() == before
    with pytest.raises(RuntimeError), _float64_history():
        assert dtypes()[("DenseHistory", "buffer")] == "d"
        raise RuntimeError
    assert dtypes() == before


def test_run_tvb_rejects_wrong_history_length():
    weights, lengths, rng = _connectome()
    hist = _history("kuramoto", tvb_horizon(lengths, SPEED, DT) + 1, 5, rng)
    with pytest.raises(ValueError, match="exactly"):
        run_tvb("kuramoto", weights, lengths, speed=SPEED, dt=DT, n_steps=3, integrator="heun",
                initial_history=hist, params=dict(global_coupling=1.0))


def test_connectome_76_heun():
    pytest.importorskip("tvb_data", reason="tvb-data is not installed (install the 'tvb' extra)")
    weights, lengths = connectivity_76()
    rng = np.random.default_rng(2)
    n_hist = tvb_horizon(lengths, SPEED, DT)
    hist = _history("montbrio", n_hist, 76, rng)
    params = dict(global_coupling=0.02, cv=0.1)
    _, data = run_tvb("montbrio", weights, lengths, speed=SPEED, dt=DT, n_steps=N_STEPS,
                      integrator="heun", initial_history=hist, params=params)
    ref = numpy_tvb("montbrio", weights, lengths, hist, params, "heun")
    np.testing.assert_allclose(data, ref, rtol=1e-10, atol=1e-10 * np.abs(ref).max())
