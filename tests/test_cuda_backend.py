"""The CUDA backend without a GPU, and on one when there is.

1. Every bundled model's kernel — float32 and float64, Euler, Heun, RK4 and stochastic Heun —
   compiles with ``nvcc`` for sm_80 (PTX) and sm_90 (cubin, through ptxas) (marked ``nvcc``;
   skipped with a reason where nvcc is absent).
2. The same printed source, compiled as host C++ after ``cuda_shim.h`` and run through
   ``ctypes`` (:func:`neuralmass.backends.cuda.emulate`), matches the Numba backend (skipped
   while it does not exist) and JAX in float64 over 1,000 steps with delays, with P not a
   multiple of the block size: float64 to 1e-9 and float32 to 1e-4 of each variable's largest
   magnitude; stochastic runs match Numba's (same Philox noise).
3. Launch geometry: P = 1, 31, 1,024, 5,000 and 100,003 each simulate every set exactly once;
   batches and chunks change nothing.
4. Noise: the kernel's Philox4x32-10 against the published known-answer vectors (its normals
   against :func:`neuralmass.random.standard_normal`, per dtype, are in ``test_noise.py``).
5. ``gpu``: the real CuPy path against the emulation (skipped without CuPy and a GPU).
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
import shutil
import subprocess
import tempfile
import types

import numpy as np
import pytest
import sympy
from helpers import (
    available_backends,
    max_relative_error_per_variable,
    on_one_worker,
    stable_state,
)

import neuralmass as nm
from neuralmass.backends import cuda
from neuralmass.backends.cuda import _kernel, _printer
from neuralmass.errors import BackendUnavailableError, ModelError, ParameterError
from neuralmass.plan import make_plan

MODELS = ("epileptor", "generic2d", "kuramoto", "montbrio", "rwongwang",  # with REGIMES
          "linear", "hopfield", "sup_hopf", "coombes_byrne2d", "larter_breakspear",
          "epileptor2d", "epileptor_resting_state")
CONNECTIVITY = nm.Connectivity.default()
N_STEPS = 1000
BLOCK = 4  # emulated threads per block: P = 5 sets leave a partial block
N_SETS = 5

#: Per model: swept parameters (5 sets), dt and fixed parameters of a coupled, non-chaotic
#: regime (TVB's epilepsy demo for the Epileptor; the Reduced Wong-Wang with I_o = 0.45,
#: W_i = 0.5 keeps x_e and x_i away from 0, where H(x) = x / (1 - exp(-d x)) is 0/0; the
#: Larter-Breakspear with d_V < 0.55, fixed-point columns: TVB's d_V = 0.65 is chaotic).
REGIMES = {
    "epileptor": dict(params={"Ks": -0.2, "Kf": 0.1, "x0": np.linspace(-1.6, -2.0, N_SETS)},
                      dt=0.05),
    "generic2d": dict(params={"a": np.linspace(-2.0, -1.0, N_SETS),
                              "global_coupling": 0.05}),
    "kuramoto": dict(params={"global_coupling": np.linspace(0.0, 0.5, N_SETS)}),
    "montbrio": dict(params={"eta": np.linspace(-5.0, -4.0, N_SETS),
                             "cv": np.linspace(0.0, 0.1, N_SETS)}),
    "rwongwang": dict(params={"G": np.linspace(0.5, 2.0, N_SETS), "I_o": 0.45, "W_i": 0.5}),
    "linear": dict(params={"global_coupling": np.linspace(0.0, 0.5, N_SETS)}),
    "hopfield": dict(params={"global_coupling": np.linspace(0.0, 0.08, N_SETS)}),
    "sup_hopf": dict(params={"a": np.linspace(-0.5, 0.5, N_SETS), "global_coupling": 0.1}),
    "coombes_byrne2d": dict(params={"eta": np.linspace(1.5, 2.5, N_SETS),
                                    "global_coupling": 0.1}, dt=0.01),
    "larter_breakspear": dict(params={"d_V": np.linspace(0.45, 0.5, N_SETS),
                                      "global_coupling": 0.1}, dt=0.1),
    "epileptor2d": dict(params={"Ks": -0.2, "Kvf": 0.1, "x0": np.linspace(-1.6, -2.0, N_SETS)},
                        dt=0.05),
    "epileptor_resting_state": dict(params={"Ks": -0.2, "Kf": 0.1,
                                            "x0": np.linspace(-1.6, -2.0, N_SETS)}, dt=0.05),
}
NUMBA = "numba" in available_backends()


def regime_plan(model: str, *, dtype="float64", integrator="heun", n_steps=N_STEPS, **options):
    """A plan for ``model`` in its :data:`REGIMES` regime, from a stable initial state."""
    regime = dict(REGIMES[model])
    params = regime.pop("params")
    regime.update(options)
    regime.setdefault("initial_state", stable_state(model, CONNECTIVITY.n_regions,
                                                    np.random.default_rng(7)))
    return make_plan(nm.load_model(model), CONNECTIVITY, params, n_steps=n_steps,
                     integrator=integrator, dtype=dtype, **regime)


@functools.cache
def _reference(backend: str, model: str, integrator: str, options: tuple):
    plan = regime_plan(model, integrator=integrator, **dict(options))
    if backend == "numba":
        from neuralmass.backends import numba as numba_backend

        return numba_backend.run(plan)
    from neuralmass.backends import jax as jax_backend

    return jax_backend.run(plan)


def reference(model, integrator="heun", *, backend="jax", **options):
    """The float64 run of a regime plan by ``backend``: JAX (checked against tvb-library to
    ~1e-14) everywhere, and Numba in the tests named for it."""
    return _reference(backend, model, integrator, tuple(sorted(options.items(), key=str)))


def assert_close(actual, expected, rtol):
    __tracebackhide__ = True
    for got, want in zip(actual, expected, strict=True):
        assert got.shape == want.shape
        assert np.isfinite(got).all()
        if want.size:
            error = max_relative_error_per_variable(got, want)
            assert error <= rtol, f"max relative error {error:.3g} > {rtol:g}"


# =========================================================================== printing


def test_printer_speaks_cuda():
    x = _kernel._real("x")
    y = _kernel._real("y")
    single = _printer.CUDACodePrinter("float32")
    double = _printer.CUDACodePrinter("float64")
    expression = sympy.exp(x) * sympy.pi + x**3 + sympy.Float(0.1)
    assert single.doprint(expression) == "x*x*x + 3.14159265F*expf(x) + 0.1F"
    assert double.doprint(expression) == "x*x*x + 3.1415926535897932*exp(x) + 0.10000000000000001"
    assert "M_PI" not in single.doprint(sympy.pi * x)
    # NaN-propagating clamp, not fmaxf (which would hide a diverging state)
    assert "fmax" not in cuda.kernel_source("montbrio")
    # model names that are C++ keywords or math functions are renamed, not shadowed
    assert single.doprint(_kernel._real("int") + _kernel._real("expf") + y) == "expf_ + int_ + y"


def test_source_uses_only_what_nvrtc_nvcc_and_the_shim_accept():
    source = cuda.kernel_source("epileptor", integrator="rk4", noise=None, dtype="float32")
    assert 'extern "C" __global__ void nm_simulate(' in source
    assert "__restrict__" in source and " restrict " not in source
    for banned in ("int32_t", "int64_t", "M_PI", "#include", "double"):
        assert banned not in source
    assert "blockDim.x*blockIdx.x + threadIdx.x" in source


def test_dead_coupling_is_not_computed():
    """Montbrió with cv = 0 couples through r only: V is neither read nor stored."""
    plan = make_plan(nm.load_model("montbrio"), CONNECTIVITY, dtype="float32", n_steps=10)
    spec = cuda.build_kernel(plan)
    assert spec.history_variables == (0,)
    assert "V_j" not in spec.source and "r_j" in spec.source
    swept = make_plan(nm.load_model("montbrio"), CONNECTIVITY, {"cv": [0.0, 1.0]},
                      dtype="float32", n_steps=10)
    assert cuda.build_kernel(swept).history_variables == (0, 1)


def test_input_errors_are_neuralmass_errors():
    """Wrong options and expressions the kernel cannot print raise neuralmass.errors types
    (ValueError subclasses) that say what was expected."""
    plan = make_plan(nm.load_model("montbrio"), CONNECTIVITY, dtype="float32", n_steps=10)
    with pytest.raises(ParameterError, match="edges must be 'auto', 'constant' or 'global', "
                                             "but got 'shared'"):
        cuda.build_kernel(plan, edges="shared")
    speeds = make_plan(nm.load_model("montbrio"), CONNECTIVITY, {"global_speed": [2.0, 3.0]},
                       dtype="float32", n_steps=10)
    with pytest.raises(ParameterError, match="does not fit in __constant__ memory"):
        cuda.build_kernel(speeds, edges="constant")
    x = _kernel._real("x")
    with pytest.raises(ModelError, match="needs an otherwise branch"):
        _printer.CUDACodePrinter("float32").doprint(sympy.Piecewise((x, x > 0)))


def test_exposures_that_are_states_are_not_stored_twice():
    epileptor = cuda.build_kernel(regime_plan("epileptor", n_steps=10))
    assert epileptor.exposure_map == (("kernel", 0), ("state", 2))  # lfp = x2 - x1; z
    assert epileptor.n_exposure == 1
    montbrio = cuda.build_kernel(regime_plan("montbrio", n_steps=10))
    assert montbrio.n_exposure == 0 and "nm_out_exposure" not in montbrio.source


def test_generated_source_is_what_the_cli_prints():
    from typer.testing import CliRunner

    from neuralmass.cli import app

    result = CliRunner().invoke(app, ["codegen", "kuramoto", "--target", "cuda"])
    assert result.exit_code == 0, result.output
    assert "__global__ void nm_simulate(" in result.output
    assert "sinf(" in result.output


def test_without_cupy_the_error_says_what_to_install():
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            pytest.skip("CuPy and a GPU are present")
    except Exception:
        pass
    with pytest.raises(BackendUnavailableError,
                       match=r"backend='cuda' needs CuPy and an NVIDIA GPU; install "
                             r"neuralmass\[cuda\]"):
        nm.simulate("kuramoto", backend="cuda", n_steps=10)


# =========================================================================== nvcc

SCHEMES = {"euler": ("euler", None), "heun": ("heun", None), "rk4": ("rk4", None),
           "stochastic-heun": ("heun", 1e-5)}


def _nvcc_sources():
    sources = {}
    for model in MODELS:
        for dtype in ("float32", "float64"):
            for scheme, (integrator, noise) in SCHEMES.items():
                plan = regime_plan(model, dtype=dtype, integrator=integrator, noise=noise,
                                   n_steps=10)
                sources[model, dtype, scheme] = cuda.generated_source(plan)
    return sources


def _nvcc(source: str, folder: str, name: str) -> str:
    path = os.path.join(folder, f"{name}.cu")
    with open(path, "w") as handle:
        handle.write(source)
    errors = []
    for flags in (["-ptx", "-arch=sm_80"], ["-cubin", "-arch=sm_90", "-Xptxas", "-v"]):
        result = subprocess.run(["nvcc", *flags, "-std=c++17", path, "-o",
                                 os.path.join(folder, f"{name}.{flags[0][1:]}")],
                                capture_output=True, text=True)
        if result.returncode:
            errors.append(f"nvcc {' '.join(flags)}:\n{result.stderr}")
        elif "warning" in result.stderr:
            errors.append(f"nvcc {' '.join(flags)} warns:\n{result.stderr}")
    return "\n".join(errors)


@pytest.fixture(scope="session")  # not "module": a worker may run other modules in between
def nvcc_results():
    """Every kernel compiled once per session, four nvcc processes at a time."""
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not on the PATH (install the CUDA toolkit to check the kernels)")
    sources = _nvcc_sources()
    with tempfile.TemporaryDirectory() as folder, \
            concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = {key: pool.submit(_nvcc, source, folder, "_".join(key))
                   for key, source in sources.items()}
        return {key: future.result() for key, future in futures.items()}


@pytest.mark.nvcc
@pytest.mark.xdist_group("cuda-nvcc")  # one worker compiles every kernel (nvcc_results), once
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("model", MODELS)
def test_kernel_compiles_with_nvcc(nvcc_results, model, dtype, scheme):
    errors = nvcc_results[model, dtype, scheme]
    assert not errors, errors


# =========================================================================== emulation


needs_numba = pytest.mark.skipif(
    not NUMBA, reason="the Numba backend (neuralmass.backends.numba.run) does not exist yet")


@pytest.mark.parametrize("backend", ["jax", pytest.param("numba", marks=needs_numba)])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("model", [on_one_worker(f"cuda-emulated-{model}", model)
                                   for model in MODELS])  # each reference run once
def test_emulated_kernel_matches_the_reference(model, dtype, backend):
    """Heun, 1,000 steps with delays on the 76-region connectome, 5 sets in blocks of 4."""
    plan = regime_plan(model, dtype=dtype)
    got = cuda.emulate(plan, block=BLOCK)
    assert_close(got, reference(model, backend=backend), 1e-9 if dtype == "float64" else 1e-4)


@pytest.mark.parametrize("integrator", ["euler", "rk4"])
@pytest.mark.parametrize("model", ["epileptor", "montbrio"])
def test_emulated_integrators(model, integrator):
    plan = regime_plan(model, integrator=integrator)
    assert_close(cuda.emulate(plan, block=BLOCK), reference(model, integrator), 1e-9)
    single = regime_plan(model, integrator=integrator, dtype="float32")
    assert_close(cuda.emulate(single, block=BLOCK), reference(model, integrator), 1e-4)


@pytest.mark.parametrize("monitor", ["temporal_average:1.0", "subsample:0.5"])
def test_emulated_monitors(monitor):
    plan = regime_plan("montbrio", monitors=monitor)
    # several chunks, the last one short, and two batches
    got = cuda.emulate(plan, block=BLOCK, chunk_samples=7, batch_sets=3)
    assert got[0].shape[0] == plan.monitor.n_samples
    assert_close(got, reference("montbrio", monitors=monitor), 1e-9)


def test_emulated_per_set_speeds_and_global_edges():
    """Each set reads the delay row of its own speed (edges in global memory)."""
    options = dict(params={"global_speed": [1.5, 3.0, 7.0, 3.0, 1.5],
                           "global_coupling": 0.4})
    plan = make_plan(nm.load_model("kuramoto"), CONNECTIVITY, n_steps=N_STEPS,
                     initial_state=stable_state("kuramoto", 76, np.random.default_rng(1)),
                     **options)
    spec = cuda.build_kernel(plan)
    assert spec.n_speeds == 3 and not spec.constants and "nm_speed_index" in spec.source
    from neuralmass.backends import jax as jax_backend

    assert_close(cuda.emulate(plan, block=BLOCK), jax_backend.run(plan), 1e-9)


def test_emulated_initial_history_and_edges_in_either_memory():
    rng = np.random.default_rng(5)
    n_rows = CONNECTIVITY.max_delay_steps(0.1) + 1
    history = rng.uniform(-1.5, -0.5, (n_rows, 1, 76, N_SETS))
    plan = regime_plan("generic2d", initial_history=history)
    constant = cuda.emulate(plan, block=BLOCK, edges="constant")
    global_ = cuda.emulate(plan, block=BLOCK, edges="global")
    for a, b in zip(constant, global_, strict=True):
        np.testing.assert_array_equal(a, b)
    from neuralmass.backends import jax as jax_backend

    assert_close(constant, jax_backend.run(plan), 1e-9)


def test_batches_and_chunks_change_nothing():
    plan = regime_plan("epileptor", n_steps=200)
    whole = cuda.emulate(plan, block=32)
    split = cuda.emulate(plan, block=2, batch_sets=2, chunk_samples=3)
    tiny = cuda.emulate(plan, block=1, free_bytes=3 * 1024**2)  # batches from the memory plan
    for a, b, c in zip(whole, split, tiny, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


COUNTER_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Lems description="each set counts its own steps">
    <ComponentType name="derivatives">
        <Parameter name="global_coupling" dimension="0.0, 1.0" default="0.0"/>
        <Parameter name="global_speed" dimension="1.0, 10.0"/>
        <Constant name="rate" value="1.0"/>
        <Dynamics>
            <StateVariable name="x" dimension="0.0, 0.0"/>
            <TimeDerivative variable="dx" value="rate"/>
        </Dynamics>
    </ComponentType>
</Lems>
"""


def counter_run(n_sets: int, runner):
    """Three Euler steps of dx/dt = rate with rate = set index and dt = 1/8 ms (exact): a
    set simulated twice would show 6 steps, one never simulated NaN (outputs are poisoned)."""
    model = nm.lems.loads(COUNTER_XML, filename="counter.xml")
    connectivity = nm.Connectivity(np.ones((2, 2)) - np.eye(2), np.ones((2, 2)), speed=8.0)
    plan = make_plan(model, connectivity, {"rate": np.arange(n_sets, dtype=float)},
                     dt=0.125, n_steps=3, integrator="euler", initial_state=np.zeros((1, 2)))
    states, _ = runner(plan)
    expected = np.arange(1, 4)[:, None, None, None] * 0.125 * np.arange(n_sets)
    np.testing.assert_array_equal(states, np.broadcast_to(expected, states.shape))


@pytest.mark.parametrize("n_sets", [1, 31, 1024, 5000, 100_003])
def test_every_set_is_simulated_exactly_once(n_sets):
    counter_run(n_sets, functools.partial(cuda.emulate, block=128))


# =========================================================================== noise

# Random123's known-answer vectors for Philox4x32-10: (counter, key) → output
PHILOX_KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def philox_kernel_source() -> str:
    """A kernel that applies the generator's Philox statements to one counter per thread."""
    from sympy.codegen import ast
    from sympy.codegen.cnodes import restrict

    p, n = _kernel._int("nm_p"), _kernel._int("nm_n")

    def word(array, index):
        return _kernel._load(array, index)

    statements, words = _kernel.philox_statements(
        [word("nm_counter", 4 * p + m) for m in range(4)],
        [word("nm_key", 2 * p + m) for m in range(2)], "kat")
    body = [*_kernel.philox_constants(),
            _kernel._declare(_kernel._int("nm_round"), None, _printer.INT, const=False),
            *statements,
            *[ast.Assignment(word("nm_words", 4 * p + m), w) for m, w in enumerate(words)]]
    index = _kernel._int("blockIdx.x") * _kernel._int("blockDim.x") + _kernel._int("threadIdx.x")
    parameters = [ast.Pointer(name, type=_printer.UINT, attrs={restrict})
                  for name in ("nm_counter", "nm_key", "nm_words")]
    parameters.append(ast.Variable(n, type=_printer.INT))
    kernel = ast.FunctionDefinition(
        ast.Type("void"), "nm_philox", parameters,
        [_kernel._declare(p, index, _printer.INT),
         _printer.If(sympy.StrictLessThan(p, n), body)],
        attrs=[ast.Attribute('extern "C"'), ast.Attribute("__global__")])
    return _printer.CUDACodePrinter("float32").doprint(kernel) + "\n"


def test_philox_known_answers():
    from neuralmass.backends.cuda._emulate import EmulatedDevice

    device = EmulatedDevice()
    device.load(types.SimpleNamespace(source=philox_kernel_source(), name="nm_philox"))
    counters = np.array([c for c, _, _ in PHILOX_KNOWN_ANSWERS], dtype=np.uint32)
    keys = np.array([k for _, k, _ in PHILOX_KNOWN_ANSWERS], dtype=np.uint32)
    words = np.zeros_like(counters)
    device.launch((1, 1), 4, [[counters, keys, words, np.int32(len(counters))]])
    expected = np.array([w for _, _, w in PHILOX_KNOWN_ANSWERS], dtype=np.uint32)
    np.testing.assert_array_equal(words, expected)




#: float32 against float64 with noise: the Epileptor's second population switches branch
#: (f2 at x2 = -0.25) at slightly different steps in single precision, so x2 and y2 move apart
#: by ~3e-3 of their range — Numba's own float32 run differs from its float64 one as much.
STOCHASTIC_FLOAT32_RTOL = {"montbrio": 1e-4, "epileptor": 1e-2}


@needs_numba
@pytest.mark.parametrize("integrator", ["euler", "heun"])
@pytest.mark.parametrize("model", ["epileptor", "montbrio"])
def test_emulated_stochastic_run_matches_numba(model, integrator):
    expected = reference(model, integrator, backend="numba", noise=1e-4, seed=3)
    plan = regime_plan(model, integrator=integrator, noise=1e-4, seed=3)
    assert_close(cuda.emulate(plan, block=BLOCK), expected, 1e-9)
    single = regime_plan(model, integrator=integrator, noise=1e-4, seed=3, dtype="float32")
    assert_close(cuda.emulate(single, block=BLOCK), expected, STOCHASTIC_FLOAT32_RTOL[model])


# =========================================================================== on a GPU


@pytest.fixture(scope="module")
def gpu():
    try:
        from neuralmass.backends.cuda._cupy import require_cupy

        return require_cupy()
    except BackendUnavailableError as error:
        pytest.skip(str(error))


@pytest.mark.gpu
@pytest.mark.parametrize("model", ["montbrio", "epileptor"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gpu_matches_emulation(gpu, model, dtype):
    noise = 1e-4 if model == "epileptor" else None
    plan = regime_plan(model, dtype=dtype, noise=noise)
    got = cuda.run(plan, block=32)
    expected = cuda.emulate(plan, block=BLOCK)
    # the GPU contracts a*b + c into fma: rounding differs from the host build (and the noisy
    # Epileptor amplifies float32 rounding, see STOCHASTIC_FLOAT32_RTOL)
    single = STOCHASTIC_FLOAT32_RTOL[model] if noise else 1e-4
    assert_close(got, expected, 1e-9 if dtype == "float64" else single)
    if plan.noise_std is None:
        assert_close(got, reference(model), 1e-9 if dtype == "float64" else 1e-4)


@pytest.mark.gpu
def test_gpu_batches_chunks_and_speeds(gpu):
    plan = make_plan(nm.load_model("kuramoto"), CONNECTIVITY,
                     {"global_speed": np.linspace(1.5, 6.0, 37), "global_coupling": 0.4},
                     n_steps=300, monitors="temporal_average:1.0",
                     initial_state=stable_state("kuramoto", 76, np.random.default_rng(1)))
    whole = cuda.run(plan)
    split = cuda.run(plan, batch_sets=10, chunk_samples=4, block=64)
    for a, b in zip(whole, split, strict=True):
        np.testing.assert_array_equal(a, b)
    assert_close(whole, cuda.emulate(plan), 1e-9)


@pytest.mark.gpu
@pytest.mark.parametrize("n_sets", [1, 31, 1024, 5000, 100_003])
def test_gpu_simulates_every_set_exactly_once(gpu, n_sets):
    counter_run(n_sets, cuda.run)


@pytest.mark.gpu
def test_gpu_simulate_front_door(gpu):
    result = nm.simulate("montbrio", backend="cuda", params={"eta": [-5.0, -4.6]},
                         n_steps=100, dtype="float32",
                         initial_state=stable_state("montbrio", 76, np.random.default_rng(0)))
    assert result.data.shape == (100, 2, 76, 2) and result.data.dtype == np.float32
