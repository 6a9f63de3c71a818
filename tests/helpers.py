"""Shared test helpers: comparisons, tiny XML models, stable initial states, backends.

Imported by the test modules as ``from helpers import ...`` (pytest puts ``tests/`` on
``sys.path``; ``tests/`` is not a package).
"""

from __future__ import annotations

import importlib
import importlib.util

import numpy as np
import pytest

import neuralmass as nm

# --------------------------------------------------------------------------- comparisons


def max_relative_error(a, b) -> float:
    """``max|a - b| / max|b|``: the largest deviation of ``a`` from the reference ``b``,
    relative to the reference's largest magnitude (0.0 when both are all zero)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs reference {b.shape}")
    scale = np.abs(b).max() if b.size else 0.0
    deviation = np.abs(a - b).max() if a.size else 0.0
    if scale == 0.0:
        return float(deviation)
    return float(deviation / scale)


def max_relative_error_per_variable(a, b, axis: int = 1) -> float:
    """The largest :func:`max_relative_error` over the entries of ``axis`` (the state-variable
    axis of a (T, n_state, N[, P]) array), so that a small variable (Epileptor's ``g``) is
    judged on its own scale rather than on the largest variable's (``y1``)."""
    a, b = np.asarray(a), np.asarray(b)
    return max(max_relative_error(np.take(a, k, axis=axis), np.take(b, k, axis=axis))
               for k in range(a.shape[axis]))


# --------------------------------------------------------------------------- parallel runs


def on_one_worker(group: str, *values) -> pytest.ParameterSet:
    """A parametrize case that pytest-xdist (``--dist loadgroup``, pyproject.toml) runs on the
    same worker as every other case of ``group``: the cases that share a cached reference (a
    tvb-library run, a compiled kernel) compute it once, not once per worker. The test id is
    that of the bare ``values``."""
    return pytest.param(*values, marks=pytest.mark.xdist_group(group))


# --------------------------------------------------------------------------- tiny models

#: ``dx/dt = -a x + c_pop0`` with linear coupling ``c_pop0 = global_coupling Σ_j w_ij x_j``.
#: With ``a = 0`` a node integrates its input: the model for exact delay propagation.
LINEAR_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Lems description="linear relaxation with linear coupling">
    <ComponentType name="derivatives">
        <Parameter name="global_coupling" dimension="0.0, 1.0" default="1.0"/>
        <Parameter name="global_speed" dimension="1.0, 10.0"/>
        <Constant name="a" value="1.0"/>
        <Exposure name="x" dimension="x"/>
        <Exposure name="twice_x_plus_a" dimension="2 * x + a"/>
        <Dynamics>
            <StateVariable name="x" dimension="-1.0, 1.0"/>
            <TimeDerivative variable="dx" value="-a * x + c_pop0"/>
        </Dynamics>
    </ComponentType>
    <ComponentType name="coupling_x">
        <Parameter name="x_j" dimension="0"/>
        <DerivedParameter name="c_pop0" value="global_coupling"/>
        <Dynamics>
            <DerivedVariable name="pre" value="x_j"/>
        </Dynamics>
    </ComponentType>
</Lems>
"""

#: An uncoupled harmonic oscillator ``dx = omega y``, ``dy = -omega x``:
#: ``x(t) = x0 cos(omega t) + y0 sin(omega t)``, ``y(t) = y0 cos(omega t) - x0 sin(omega t)``.
OSCILLATOR_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Lems description="uncoupled linear oscillator">
    <ComponentType name="derivatives">
        <Parameter name="global_coupling" dimension="0.0, 1.0" default="0.0"/>
        <Parameter name="global_speed" dimension="1.0, 10.0"/>
        <Constant name="omega" value="1.0"/>
        <Dynamics>
            <StateVariable name="x" dimension="-1.0, 1.0"/>
            <StateVariable name="y" dimension="-1.0, 1.0"/>
            <TimeDerivative variable="dx" value="omega * y"/>
            <TimeDerivative variable="dy" value="-omega * x"/>
        </Dynamics>
    </ComponentType>
</Lems>
"""

#: Ornstein–Uhlenbeck drift ``dx = -theta (x - mu)``; with ``noise=D`` the SDE
#: ``dx = -theta (x - mu) dt + sqrt(2 D) dW`` has stationary variance ``D / theta``.
OU_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Lems description="Ornstein-Uhlenbeck process">
    <ComponentType name="derivatives">
        <Parameter name="global_coupling" dimension="0.0, 1.0" default="0.0"/>
        <Parameter name="global_speed" dimension="1.0, 10.0"/>
        <Constant name="theta" value="1.0"/>
        <Constant name="mu" value="0.0"/>
        <Dynamics>
            <StateVariable name="x" dimension="-1.0, 1.0"/>
            <TimeDerivative variable="dx" value="-theta * (x - mu)"/>
        </Dynamics>
    </ComponentType>
</Lems>
"""

#: Five state variables with zero drift: a step adds exactly its noise sample.
NOISE_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Lems description="five state variables that only integrate their noise">
    <ComponentType name="derivatives">
        <Parameter name="global_coupling" dimension="0.0, 1.0" default="0.0"/>
        <Parameter name="global_speed" dimension="1.0, 10.0"/>
        <Constant name="zero" value="0.0"/>
        <Dynamics>
""" + "".join(f"""            <StateVariable name="x{v}" dimension="0.0, 0.0"/>
            <TimeDerivative variable="dx{v}" value="zero"/>
""" for v in range(5)) + """        </Dynamics>
    </ComponentType>
</Lems>
"""


def linear_model() -> nm.Model:
    return nm.lems.loads(LINEAR_XML, filename="linear.xml")


def oscillator_model() -> nm.Model:
    return nm.lems.loads(OSCILLATOR_XML, filename="oscillator.xml")


def ou_model() -> nm.Model:
    return nm.lems.loads(OU_XML, filename="ou.xml")


def noise_only_model() -> nm.Model:
    return nm.lems.loads(NOISE_XML, filename="noise.xml")


def chain_connectivity(lengths_mm: dict[tuple[int, int], float], n_regions: int,
                       *, weight: float = 1.0, speed: float = 1.0) -> nm.Connectivity:
    """``n_regions`` nodes with weight ``weight`` on each edge ``(i, j)`` (to i from j) of
    ``lengths_mm`` and that tract length; every other weight is 0."""
    weights = np.zeros((n_regions, n_regions))
    lengths = np.zeros((n_regions, n_regions))
    for (i, j), length in lengths_mm.items():
        weights[i, j] = weight
        lengths[i, j] = length
    return nm.Connectivity(weights, lengths, speed=speed)


def uncoupled_connectivity(n_regions: int) -> nm.Connectivity:
    """``n_regions`` nodes and no edges at all."""
    return nm.Connectivity(np.zeros((n_regions, n_regions)), np.zeros((n_regions, n_regions)))


# --------------------------------------------------------------------------- initial states

#: A point on or near each bundled model's attractor, per state variable, in the model's
#: state order. Uniform random states in the models' own ranges are not all safe: MPR with
#: r ~ U(0, 2), V ~ U(-2, 1.5) blows up within ~20 Euler steps of 0.1 ms.
STABLE_STATES = {
    "kuramoto": (np.pi,),
    "montbrio": (0.1, -2.0),
    "epileptor": (-1.5, -10.0, 3.2, -0.9, 0.0, -0.1),
    "rwongwang": (0.2, 0.1),
    "generic2d": (-1.0, -3.0),
    "linear": (0.0,),
    "hopfield": (0.5, 0.5),
    "sup_hopf": (0.0, 0.0),
    "coombes_byrne2d": (0.5, -0.5),
    "larter_breakspear": (-0.2, 0.2, 0.0),
    "epileptor2d": (-1.5, 3.2),
    "epileptor_resting_state": (-1.5, -10.0, 3.2, -0.9, 0.0, -0.1, 1.0, 0.0),
}
#: Half-width of the uniform perturbation around :data:`STABLE_STATES` per state variable.
STABLE_SPREAD = {
    "kuramoto": (np.pi,),
    "montbrio": (0.05, 0.1),
    "epileptor": (0.1, 0.5, 0.05, 0.1, 0.05, 0.02),
    "rwongwang": (0.1, 0.05),
    "generic2d": (0.5, 1.0),
    "linear": (1.0,),
    "hopfield": (0.5, 0.5),
    "sup_hopf": (1.0, 1.0),
    "coombes_byrne2d": (0.2, 0.3),
    "larter_breakspear": (0.3, 0.2, 0.2),
    "epileptor2d": (0.1, 0.05),
    "epileptor_resting_state": (0.1, 0.5, 0.05, 0.1, 0.05, 0.02, 0.5, 0.5),
}


def stable_state(model: str, n_regions: int, rng: np.random.Generator) -> np.ndarray:
    """(n_state, N) random state near :data:`STABLE_STATES` for a bundled model."""
    centre = np.asarray(STABLE_STATES[model])[:, None]
    spread = np.asarray(STABLE_SPREAD[model])[:, None]
    return centre + spread * rng.uniform(-1.0, 1.0, (len(centre), n_regions))


def stable_history(model: str, n_rows: int, n_regions: int,
                   rng: np.random.Generator) -> np.ndarray:
    """(n_rows, n_state, N) history of all state variables, each row independently near
    :data:`STABLE_STATES` (a past that varies in time, so the delays matter)."""
    return np.stack([stable_state(model, n_regions, rng) for _ in range(n_rows)])


# --------------------------------------------------------------------------- backends


def backend_import_error(name: str) -> str | None:
    """Why ``neuralmass.backends.<name>`` cannot run here (it does not exist, its import raises
    ImportError, e.g. for a missing numba, or it has no ``run``), or None when it can."""
    module_name = f"neuralmass.backends.{name}"
    try:
        if importlib.util.find_spec(module_name) is None:
            return f"{module_name} does not exist"
        module = importlib.import_module(module_name)
    except ImportError as error:
        return f"importing {module_name} failed: {error!r}"
    if not callable(getattr(module, "run", None)):
        return f"{module_name} exposes no run()"
    return None


def _backend_runs(name: str) -> bool:
    """True when ``neuralmass.backends.<name>`` exists, imports and exposes ``run``."""
    return backend_import_error(name) is None


def available_backends() -> list[str]:
    """Backends the tests run on here: ``"jax"`` always, ``"numba"`` once its package
    exposes ``run``; never ``"cuda"`` (no GPU on CI; its kernels have their own tests).
    A strict run (``NEURALMASS_REQUIRE``, tests/requirements.py) fails instead of leaving out a
    required backend."""
    backends = ["jax"]
    if _backend_runs("numba"):
        backends.append("numba")
    return backends
