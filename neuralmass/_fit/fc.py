"""The fit's FC of a batched NumPy signal, compiled with Numba: :func:`neuralmass.metrics.fc`
(Pearson's r over time, the same numbers to rounding) at a quarter of its CPU time.

Why: one generation of the seed's experiment (1,024 sets, 360 samples, 76 regions) spent
2.4 s of CPU in ``metrics.fc``'s ``einsum`` (NumPy's einsum over a trailing set axis does not
use BLAS; a BLAS ``matmul`` per set was slower still in wall time on the shared 2-core machine,
its threads waiting on each other), i.e. > 5 % of the generation outside ``simulate``
(issue 10). This kernel takes 0.6 s: sets in blocks of 8 (one SIMD vector), the lower
triangle only, the blocks in parallel. JAX arrays (the gradient path) go to ``metrics.fc``.
"""

from __future__ import annotations

import numpy as np

from .. import metrics

__all__ = ["fc"]

_BLOCK = 8  # sets per block: acc is N*N*8 float64 (370 kB at N = 76), in L2
_kernel = None


def _compile():
    import numba

    @numba.njit(parallel=True, cache=True)
    def fc_blocks(x, out):
        """x (T, N, P) → out (N, N, P) Pearson r over T, centred per block of sets."""
        T, N, P = x.shape
        for blk in numba.prange((P + _BLOCK - 1) // _BLOCK):
            p0 = blk * _BLOCK
            w = min(P, p0 + _BLOCK) - p0
            mean = np.zeros((N, w))
            for t in range(T):
                for i in range(N):
                    for q in range(w):
                        mean[i, q] += x[t, i, p0 + q]
            mean /= T
            xc = np.empty((N, w))
            acc = np.zeros((N, N, w))
            for t in range(T):
                for i in range(N):
                    for q in range(w):
                        xc[i, q] = x[t, i, p0 + q] - mean[i, q]
                for i in range(N):
                    for j in range(i + 1):
                        for q in range(w):
                            acc[i, j, q] += xc[i, q] * xc[j, q]
            for i in range(N):
                for j in range(i + 1):
                    for q in range(w):
                        r = acc[i, j, q] / np.sqrt(acc[i, i, q] * acc[j, j, q])
                        out[i, j, p0 + q] = r
                        out[j, i, p0 + q] = r

    return fc_blocks


def fc(signal):
    """(T, N, P) signal → (N, N, P) FC; NaN where a series is constant or not finite, as
    :func:`neuralmass.metrics.fc`. Non-NumPy (JAX) arrays are passed to ``metrics.fc``."""
    global _kernel
    if not isinstance(signal, np.ndarray) or signal.ndim != 3 or signal.shape[0] < 2:
        return metrics.fc(signal)
    if _kernel is None:
        _kernel = _compile()
    x = signal if signal.dtype == np.float64 else signal.astype(np.float64)
    out = np.empty((x.shape[1], x.shape[1], x.shape[2]))
    _kernel(x, out)
    return out
