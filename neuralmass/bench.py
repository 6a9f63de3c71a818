"""Measure how fast the backends run here, against the machine's copy bandwidth and the peers.

The workload (RateML's poster, issue #13): a bundled model on a connectome, dt 0.1 ms, Heun,
a temporal average over 1 ms, P parameter sets (global couplings × up to 32 conduction speeds
from 1 to 10 mm/ms) × S steps. ``neuralmass bench`` and ``benchmarks/*.py`` call
:func:`run_bench`; panels: (A) effective bandwidth against the copy bandwidth, (B) set-steps/s
at one size, (C) set-steps/s against P at 4,000 steps, (D) against S at fixed P.

Timing rules: one process; per (backend, model, dtype, size) a first run (compilation and
warm-up), then ``repeat`` timed runs, of which min / median / max are reported. The Numba
backend times the stepping only (arrays allocated and initialised on memory the warm-up
touched); JAX and CUDA time a whole ``run`` (CUDA: host set-up, launches and copies back;
its kernel time by CUDA events is reported apart). Compile time, timed apart:

- ``cold``: Numba, the first ``prepare`` (lower, compile, allocate) with a fresh disk cache;
  JAX, the seconds its monitoring events report for tracing, lowering and compiling in the
  first run (a fresh persistent cache); CUDA, the first run minus the median run;
- ``cached``: Numba only, ``prepare`` in a second process that finds the disk cache filled
  (measured at the first size of each model and dtype; ``null`` elsewhere).

Effective GB/s of the delayed reads = P × S × nnz × C × bytes / median run time, C the
history channels the backend reads per edge (Numba: its lowering's channels; CUDA: the
kernel's history variables; JAX: the model's coupled variables), compared with the copy
bandwidth measured in the same run (host: ``np.copyto``; GPU: a device-to-device CuPy copy;
bytes read plus written, best of 5 / mean of 10).

Peers (``peers=True``): tvb-library (a Python loop of ``Simulator`` runs, float64; only a few
sets are timed and the rate is extrapolated linearly to P) and vbjax (one ``vmap`` batch of up
to 64 sets, in a subprocess, extrapolated linearly); a peer that is not installed is reported
as ``"not installed"``. tvb-library has a set-up for Montbrió, Kuramoto and the Epileptor
(``FIXED_PARAMS``' coupling), vbjax for Montbrió and Kuramoto.

JSON schema (``--json``; version ``neuralmass.bench/1``)::

    {"schema": "neuralmass.bench/1", "date": str (ISO 8601 UTC), "argv": [str],
     "machine": {"cpu": str, "cores": int, "ram_gib": float, "load": float, "python": str,
                 "platform": str, "gpu": {"name", "driver", "memory_gib"} | null,
                 "versions": {package: str | "not installed"}},
     "workload": {"connectivity": str, "n_regions": int, "nnz": int, "dt_ms": float,
                  "integrator": str, "monitor": str},
     "copy_bandwidth_gb_s": {"host": float, "device": float | null},
     "results": [{"backend": str, "model": str, "dtype": str, "sets": int, "steps": int,
                  "panel": "B" | "C" | "D", "compile_s": {"cold": float, "cached": float|null},
                  "run_s": {"min": float, "median": float, "max": float}, "repeat": int,
                  "set_steps_per_s": float (sets × steps / run_s.median),
                  "channels": int, "nnz": int, "effective_gb_s": float,
                  "copy_bandwidth_gb_s": float | null, "fraction_of_copy": float | null,
                  "kernel_s": float | null, "peak_rss_gib": float (process peak so far),
                  "device_memory_gib": float | null, "finite": bool}],
     "peers": [{"peer": str, "model": str, "sets": int, "steps": int,
                "status": "ok" | "not installed" | "failed: ..." | "no set-up for this model",
                "set_steps_per_s": float | null, "measured_sets": int | null,
                "extrapolated": bool, "ratio": {"backend dtype": float}}],
     "skipped": [{"backend": str, "reason": str}],
     "stopped": [{"backend": str, "model": str, "dtype": str, "sets": int, "steps": int,
                  "reason": str}]}
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence

import numpy as np

from .connectivity import Connectivity
from .errors import BackendUnavailableError, ParameterError
from .models import load_model
from .params import grid
from .plan import RunPlan, make_plan

__all__ = ["SCHEMA", "SCAN_SETS", "SCAN_STEPS", "run_bench", "host_copy_bandwidth",
           "device_copy_bandwidth", "machine", "print_report", "plot_report", "write_json"]

SCHEMA = "neuralmass.bench/1"
DT = 0.1
MONITOR = "temporal_average:1.0"
#: panel C: 2^6 … 2^15 sets; panel D: 4,000 … 100,000 steps
SCAN_SETS = tuple(2**k for k in range(6, 16))
SCAN_STEPS = (4000, 10_000, 20_000, 50_000, 100_000)
#: coupling ranges of benchmarks/sweep.py (other models: the range the model declares)
COUPLING_RANGE = {"montbrio": (0.0, 0.05), "kuramoto": (0.0, 1.0)}
#: parameters held fixed in a model's workload: the Epileptor's defaults (TVB's, Ks = Kf = 0)
#: leave the nodes uncoupled, so it runs with the coupling of TVB's epilepsy demos
FIXED_PARAMS = {"epileptor": {"Ks": -0.2, "Kf": 0.1}}
SPEED_RANGE = (1.0, 10.0)
MAX_SPEEDS = 32
#: tvb-library sets timed (extrapolated linearly); vbjax sets in its one timed batch
TVB_SETS = 4
VBJAX_BATCH = 64
_GIB = 2.0**30


# --------------------------------------------------------------------------- machine
def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _gpu() -> dict | None:
    """Name, driver and memory of GPU 0 through CuPy, or None without CuPy or a GPU."""
    try:
        from .backends.cuda._cupy import require_cupy

        cp = require_cupy()
        properties = cp.cuda.runtime.getDeviceProperties(0)
        name = properties["name"]
        driver = cp.cuda.runtime.driverGetVersion()
    except Exception:  # no CuPy, no driver, no device: all mean "no GPU here"
        return None
    return {"name": name.decode() if isinstance(name, bytes) else str(name),
            "driver": f"{driver // 1000}.{driver % 1000 // 10}",
            "memory_gib": round(properties["totalGlobalMem"] / _GIB, 1)}


def machine() -> dict:
    """CPU model, cores, RAM, load, GPU and library versions."""
    info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in lscpu.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model name":
                info["cpu"] = value.strip()
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as meminfo:
            info["ram_gib"] = round(int(meminfo.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        info["ram_gib"] = None
    info.update(load=os.getloadavg()[0], python=platform.python_version(),
                platform=platform.platform(), gpu=_gpu(),
                versions={p: _version(p) for p in ("neuralmass", "numpy", "numba", "jax",
                                                    "cupy-cuda12x", "cupy-cuda13x",
                                                    "tvb-library", "vbjax")})
    return info


def host_copy_bandwidth(nbytes: int = 1 << 30, repeats: int = 5) -> float:
    """Bytes per second of ``np.copyto`` between two touched arrays of ``nbytes``, counting
    the bytes read plus written (2 × size / time), best of ``repeats``."""
    source = np.ones(nbytes // 8)
    target = np.zeros_like(source)
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        np.copyto(target, source)
        best = max(best, 2 * source.nbytes / (time.perf_counter() - started))
    return best


def device_copy_bandwidth(cp, nbytes: int = 2 << 30, repeats: int = 10) -> float:
    """Bytes per second of a device-to-device copy (read plus written), mean of ``repeats``
    timed by CUDA events after one untimed copy."""
    source = cp.ones(nbytes // 4, dtype=cp.float32)
    target = cp.empty_like(source)
    target[...] = source
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    start.record()
    for _ in range(repeats):
        target[...] = source
    stop.record()
    stop.synchronize()
    seconds = cp.cuda.get_elapsed_time(start, stop) / 1e3 / repeats
    del source, target
    cp.get_default_memory_pool().free_all_blocks()
    return 2 * nbytes / seconds


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


# --------------------------------------------------------------------------- workload
def sweep_params(model: str, n_sets: int) -> dict[str, np.ndarray]:
    """``n_sets`` sets: global couplings (slowest) × up to 32 conduction speeds, (P,) arrays."""
    n_speeds = min(MAX_SPEEDS, 2 ** (int(math.log2(n_sets)) // 2))
    n_couplings = -(-n_sets // n_speeds)
    if model in COUPLING_RANGE:
        couplings = COUPLING_RANGE[model]
    else:
        couplings = load_model(model).parameter("global_coupling").range or (0.0, 1.0)
    axes = grid(global_coupling=np.linspace(*couplings, n_couplings),
                global_speed=np.linspace(*SPEED_RANGE, n_speeds))
    return {**{name: values[:n_sets] for name, values in axes.items()},
            **FIXED_PARAMS.get(model, {})}


def initial_state(model: str, n_nodes: int) -> np.ndarray | None:
    """The initial state of benchmarks/sweep.py (other models: the plan's default)."""
    if model == "montbrio":
        return np.stack([np.full(n_nodes, 0.1), np.full(n_nodes, -2.0)])
    if model == "kuramoto":
        return np.random.default_rng(0).uniform(0, 2 * np.pi, (1, n_nodes))
    return None


def workload(model: str, conn: Connectivity, n_sets: int, n_steps: int, dtype: str) -> RunPlan:
    return make_plan(load_model(model), conn, sweep_params(model, n_sets), dt=DT,
                     n_steps=n_steps, integrator="heun", monitors=MONITOR, dtype=dtype,
                     initial_state=initial_state(model, conn.n_regions))


# --------------------------------------------------------------------------- backends
class Measurement(dict):
    """cold (s), runs (list of s), channels, kernel (s or None), device_bytes, finite."""


def _numba(plan: RunPlan, repeat: int) -> Measurement:
    from .backends.numba import prepare

    n_steps = plan.monitor.n_steps_simulated
    started = time.perf_counter()
    prepared = prepare(plan)
    cold = time.perf_counter() - started
    prepared.execute(n_steps)  # warm-up: first-touch page faults
    runs = []
    for _ in range(repeat):
        del prepared
        prepared = prepare(plan)  # fresh arrays, on memory the warm-up touched
        started = time.perf_counter()
        prepared.execute(n_steps)
        runs.append(time.perf_counter() - started)
    return Measurement(cold=cold, runs=runs, channels=prepared.lowering.n_channels,
                       kernel=None, device_bytes=None,
                       finite=bool(np.isfinite(prepared.outputs()[0][0]).all()))


#: JAX's monitoring events that time tracing, lowering, compiling and cache loads
_JAX_COMPILE_EVENTS = frozenset({
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
    "/jax/compilation_cache/cache_retrieval_time_sec",
})


@contextlib.contextmanager
def _jax_compile_seconds():
    """A one-element list holding the seconds JAX spends tracing, lowering and compiling (or
    loading from its persistent cache) inside the block, from its monitoring events."""
    import jax.monitoring

    spent = [0.0]

    def listener(event: str, duration_secs: float, **_) -> None:
        if event in _JAX_COMPILE_EVENTS:
            spent[0] += duration_secs

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield spent
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def _jax(plan: RunPlan, repeat: int) -> Measurement:
    import jax

    from .backends import jax as jax_backend
    # the JAX backend estimates its memory itself: it runs in batches of sets, or refuses with
    # a ParameterError when not even one set fits (backends/jax/_memory.py)
    x64 = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", plan.dtype == np.float64)
    try:
        with _jax_compile_seconds() as compiled:
            states, _ = jax_backend.run(plan)
        runs = []
        for _ in range(repeat):
            started = time.perf_counter()
            states, _ = jax_backend.run(plan)
            runs.append(time.perf_counter() - started)
        device = None
        if jax.default_backend() == "gpu":
            device = (jax.devices()[0].memory_stats() or {}).get("peak_bytes_in_use")
    finally:
        jax.clear_caches()
        jax.config.update("jax_enable_x64", x64)
    return Measurement(cold=compiled[0], runs=runs,
                       channels=len(plan.model.coupled_variables), kernel=None,
                       device_bytes=device, finite=bool(np.isfinite(states).all()))


def _cuda(plan: RunPlan, repeat: int) -> Measurement:
    from .backends import cuda
    from .backends.cuda._cupy import CuPyDevice, require_cupy
    from .backends.cuda._driver import run_on

    cp = require_cupy()
    spec = cuda.build_kernel(plan)
    started = time.perf_counter()
    run_on(CuPyDevice(), plan, spec=spec)  # compiles (NVRTC, cached by source hash)
    first = time.perf_counter() - started
    runs, kernels = [], []
    for _ in range(repeat):
        device = CuPyDevice()
        started = time.perf_counter()
        states, _ = run_on(device, plan, spec=spec)
        runs.append(time.perf_counter() - started)
        kernels.append(device.kernel_seconds)
    pool = cp.get_default_memory_pool()
    device_bytes = pool.total_bytes()
    pool.free_all_blocks()
    return Measurement(cold=max(first - statistics.median(runs), 0.0), runs=runs,
                       channels=spec.n_history, kernel=statistics.median(kernels),
                       device_bytes=device_bytes, finite=bool(np.isfinite(states).all()))


MEASURE = {"numba": _numba, "jax": _jax, "cuda": _cuda}


def unavailable(backend: str) -> str | None:
    """Why ``backend`` cannot run here, or None when it can."""
    if backend == "cuda":
        try:
            from .backends.cuda._cupy import require_cupy

            require_cupy()
        except BackendUnavailableError as error:
            return str(error)
    return None


_CACHED_PREPARE = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    from neuralmass import bench
    from neuralmass.connectivity import Connectivity
    from neuralmass.backends.numba import prepare
    config = json.loads(sys.stdin.read())
    saved = np.load(config.pop("conn"))
    conn = Connectivity(saved["weights"], saved["tract_lengths"], float(saved["speed"]))
    plan = bench.workload(conn=conn, **config)
    started = time.perf_counter()
    prepare(plan)
    print(json.dumps(time.perf_counter() - started))
""")


def _numba_cached_prepare(conn: Connectivity, model: str, n_sets: int, n_steps: int,
                          dtype: str) -> float | None:
    """Seconds of ``prepare`` in a second process that finds this process's disk cache."""
    with tempfile.TemporaryDirectory(prefix="neuralmass-bench-") as folder:
        path = os.path.join(folder, "conn.npz")
        np.savez(path, weights=conn.weights, tract_lengths=conn.tract_lengths, speed=conn.speed)
        config = dict(conn=path, model=model, n_sets=n_sets, n_steps=n_steps, dtype=dtype)
        out = subprocess.run([sys.executable, "-c", _CACHED_PREPARE], input=json.dumps(config),
                             capture_output=True, text=True)
    if out.returncode != 0:
        return None
    return float(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- peers
def _tvb_simulator(model: str, conn: Connectivity, speed: float, coupling: float,
                   n_steps: int):
    import logging

    from tvb.datatypes.connectivity import Connectivity as TVBConnectivity
    from tvb.simulator import coupling as tvb_coupling
    from tvb.simulator import integrators, models, monitors, simulator

    for name in list(logging.root.manager.loggerDict):
        if name.startswith("tvb"):
            logging.getLogger(name).setLevel(logging.ERROR)
    n = conn.n_regions
    tvb_conn = TVBConnectivity(weights=np.array(conn.weights), tract_lengths=np.array(
        conn.tract_lengths), region_labels=np.array([f"r{i}" for i in range(n)]),
        centres=np.zeros((n, 3)), speed=np.array([float(speed)]))
    a = np.array([coupling])
    if model == "montbrio":
        tvb_model, cfun = models.MontbrioPazoRoxin(), tvb_coupling.Linear(a=a)
    elif model == "kuramoto":
        tvb_model, cfun = models.Kuramoto(), tvb_coupling.Kuramoto(a=a)
    else:
        fixed = {name: np.array([value]) for name, value in FIXED_PARAMS[model].items()}
        tvb_model, cfun = models.Epileptor(**fixed), tvb_coupling.Difference(a=a)
    horizon = int(np.rint(np.asarray(conn.tract_lengths) / speed / DT).max()) + 1
    state = workload(model, conn, 1, n_steps, "float64").initial_state
    history = np.broadcast_to(state[None, :, :, None], (horizon, len(state), n, 1)).copy()
    return simulator.Simulator(model=tvb_model, connectivity=tvb_conn, coupling=cfun,
                               integrator=integrators.HeunDeterministic(dt=DT),
                               monitors=[monitors.TemporalAverage(period=1.0)],
                               initial_conditions=history, simulation_length=n_steps * DT)


def _tvb(model: str, conn: Connectivity, n_sets: int, n_steps: int, dtype: str) -> dict:
    """A Python loop of tvb-library simulators (configure + run) over a few of the sets."""
    params = sweep_params(model, n_sets)
    picks = np.linspace(0, n_sets - 1, min(TVB_SETS, n_sets)).astype(int)
    started = time.perf_counter()
    for p in picks:
        sim = _tvb_simulator(model, conn, params["global_speed"][p],
                             params["global_coupling"][p], n_steps)
        sim.configure()
        sim.run()
    seconds = time.perf_counter() - started
    return {"set_steps_per_s": len(picks) * n_steps / seconds, "measured_sets": len(picks)}


_VBJAX_SCRIPT = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    config = json.loads(sys.stdin.read())
    import jax
    if config["dtype"] == "float64":
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import vbjax as vb
    weights = jnp.asarray(np.array(config["weights"]), dtype=config["dtype"])
    lengths = np.array(config["lengths"])
    dt, n_steps, model = config["dt"], config["n_steps"], config["model"]
    speeds = np.array(config["speeds"]); couplings = np.array(config["couplings"])
    n = weights.shape[0]
    # vbjax's delay helper (lags floor(L / v / dt)), one lag matrix per set
    base = vb.make_delay_helper(weights, jnp.asarray(lengths), dt=dt, v_c=float(speeds.min()))
    lags = np.floor(lengths[None] / speeds[:, None, None] / dt).astype("i")
    nh = int(lags.max()) + 1
    n_svar = 2 if model == "montbrio" else 1

    def dfun(buf, x, t, p):
        k, lag = p
        helper = base._replace(lags=lag)
        if model == "montbrio":
            return vb.mpr_dfun(x, k * vb.delay_apply(helper, t, buf), vb.mpr_default_theta)
        delayed = buf[t - lag, 0, helper.ix_lag_from]  # (n_to, n_from)
        c = k * (weights * jnp.sin(delayed - x[0][:, None])).sum(axis=1)
        return (1.0 + c)[None]

    _, loop = vb.make_sdde(dt, nh, dfun, 0.0)
    every = int(round(1.0 / dt))

    def run(k, lag):
        x0 = jnp.asarray(config["x0"], dtype=config["dtype"])
        buf = jnp.zeros((nh + n_steps + 1, n_svar, n), dtype=config["dtype"]) + x0
        buf, xs = loop(buf, (k, lag))
        return xs.reshape((n_steps // every, every, n_svar, n)).mean(axis=1)

    batched = jax.jit(jax.vmap(run))
    k = jnp.asarray(couplings, dtype=config["dtype"]); lag = jnp.asarray(lags)
    batched(k, lag).block_until_ready()  # compile
    started = time.perf_counter()
    batched(k, lag).block_until_ready()
    seconds = time.perf_counter() - started
    print(json.dumps({"rate": len(couplings) * n_steps / seconds}))
""")


def _vbjax(model: str, conn: Connectivity, n_sets: int, n_steps: int, dtype: str) -> dict:
    """vbjax (make_sdde, vmap over one batch of sets, jit) in a separate process (importing
    vbjax sets XLA_FLAGS): set-steps per second of the second call."""
    params = sweep_params(model, n_sets)
    picks = np.linspace(0, n_sets - 1, min(VBJAX_BATCH, n_sets)).astype(int)
    config = dict(model=model, dtype=dtype, dt=DT, n_steps=n_steps,
                  weights=np.asarray(conn.weights).tolist(),
                  lengths=np.asarray(conn.tract_lengths).tolist(),
                  speeds=params["global_speed"][picks].tolist(),
                  couplings=params["global_coupling"][picks].tolist(),
                  x0=initial_state(model, conn.n_regions).tolist())
    out = subprocess.run([sys.executable, "-c", _VBJAX_SCRIPT], input=json.dumps(config),
                         capture_output=True, text=True)  # the connectome is too long for argv
    if out.returncode != 0:
        raise RuntimeError((out.stderr.strip().splitlines() or ["no message"])[-1])
    rate = json.loads(out.stdout.strip().splitlines()[-1])["rate"]
    return {"set_steps_per_s": rate, "measured_sets": len(picks)}


#: peer → (module that must be importable, measuring function, models it has a set-up for)
PEERS = {"tvb-library": ("tvb.simulator", _tvb, ("montbrio", "kuramoto", "epileptor")),
         "vbjax": ("vbjax", _vbjax, ("montbrio", "kuramoto"))}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def measure_peers(results: list[dict], conn: Connectivity) -> list[dict]:
    """Each peer on each (model, sets, steps) of ``results``: tvb-library once, in float64
    (all it computes in), vbjax in each dtype. ``ratio`` maps "backend dtype" to the
    neuralmass rate over the peer's (tvb-library's against every dtype neuralmass ran)."""
    peers = []
    for peer, (module, measure, peer_models) in PEERS.items():
        if not _installed(module):
            peers.append({"peer": peer, "status": "not installed"})
            continue
        per_dtype = peer != "tvb-library"
        cases = sorted({(r["model"], r["sets"], r["steps"], r["dtype"] if per_dtype else
                         "float64") for r in results})
        for case in cases:
            model, n_sets, n_steps, dtype = case
            row = {"peer": peer, "model": model, "dtype": dtype, "sets": n_sets,
                   "steps": n_steps, "set_steps_per_s": None, "measured_sets": None,
                   "extrapolated": True, "ratio": {}}
            if model not in peer_models:
                peers.append(dict(row, status="no set-up for this model"))
                continue
            try:
                row.update(measure(model, conn, n_sets, n_steps, dtype), status="ok")
            except Exception as error:  # a peer's failure is reported, not raised
                peers.append(dict(row, status=f"failed: {type(error).__name__}: {error}"[:200]))
                continue
            row["extrapolated"] = row["measured_sets"] < n_sets
            for r in results:
                if (r["model"], r["sets"], r["steps"]) == case[:3] and (
                        not per_dtype or r["dtype"] == dtype):
                    row["ratio"][f"{r['backend']} {r['dtype']}"] = \
                        r["set_steps_per_s"] / row["set_steps_per_s"]
            peers.append(row)
    return peers


# --------------------------------------------------------------------------- the run
def sizes(scan: str | None, n_sets: int, n_steps: int) -> list[tuple[str, int, int]]:
    """(panel, sets, steps) of a fixed size (B), a scan of sets (C) or of steps (D)."""
    if scan is None:
        return [("B", n_sets, n_steps)]
    if scan == "sets":
        return [("C", p, n_steps) for p in SCAN_SETS]
    if scan == "steps":
        return [("D", n_sets, s) for s in SCAN_STEPS]
    raise ParameterError(f"scan must be 'sets' or 'steps', but got {scan!r}")


def _row(backend, model, dtype, panel, plan, m: Measurement, copy_bw, cached, nnz) -> dict:
    steps = plan.monitor.n_steps_simulated
    median = statistics.median(m["runs"])
    moved = plan.n_sets * steps * nnz * m["channels"] * np.dtype(plan.dtype).itemsize
    effective = moved / median / 1e9
    return {"backend": backend, "model": model, "dtype": dtype, "sets": plan.n_sets,
            "steps": steps, "panel": panel, "compile_s": {"cold": m["cold"], "cached": cached},
            "run_s": {"min": min(m["runs"]), "median": median, "max": max(m["runs"])},
            "repeat": len(m["runs"]), "set_steps_per_s": plan.n_sets * steps / median,
            "channels": m["channels"], "nnz": nnz, "effective_gb_s": effective,
            "copy_bandwidth_gb_s": copy_bw,
            "fraction_of_copy": effective / copy_bw if copy_bw else None,
            "kernel_s": m["kernel"], "peak_rss_gib": peak_rss_gib(),
            "device_memory_gib": None if m["device_bytes"] is None else
            m["device_bytes"] / _GIB, "finite": m["finite"]}


def _on_gpu(backend: str) -> bool:
    if backend == "cuda":
        return True
    if backend == "jax":
        import jax

        return jax.default_backend() == "gpu"
    return False


def run_bench(backends: Sequence[str], models: Sequence[str], dtypes: Sequence[str],
              runs: Sequence[tuple[str, int, int]], *, repeat: int = 3, peers: bool = False,
              conn: Connectivity | None = None, conn_name: str = "bundled 76-region connectome",
              copy_bytes: int = 1 << 30, max_run_s: float | None = None, log=print,
              checkpoint=None) -> dict:
    """Measure every (backend, model, dtype, size) of ``runs`` ((panel, sets, steps)); the
    report of the module docstring's schema. ``log`` gets one line per measurement;
    ``checkpoint`` (if given) gets the report so far after each one (``--json`` writes it, so
    a long bench that is stopped keeps what it measured).

    A scan of one (backend, model, dtype) stops, and says so in ``stopped``, before a size the
    memory estimate refuses, and before a size whose run would take longer than ``max_run_s``
    seconds at the rate measured at the previous size (set-steps/s, assumed constant; ``None``:
    no limit). Each size costs 1 + ``repeat`` runs."""
    conn = Connectivity.default() if conn is None else conn
    nnz = int(conn.edges()[0].size)
    info = machine()
    host_bw = host_copy_bandwidth(copy_bytes) / 1e9
    device_bw = None
    skipped, usable = [], []
    for backend in backends:
        reason = unavailable(backend)
        (skipped.append({"backend": backend, "reason": reason}) if reason else
         usable.append(backend))
    if "cuda" in usable:
        from .backends.cuda._cupy import require_cupy

        device_bw = device_copy_bandwidth(require_cupy(), 2 * copy_bytes) / 1e9
    results, stopped = [], []

    def report(peer_rows):
        return {"schema": SCHEMA, "date": datetime.datetime.now(datetime.UTC).isoformat(),
                "argv": list(sys.argv), "machine": info,
                "workload": {"connectivity": conn_name, "n_regions": conn.n_regions,
                             "nnz": nnz, "dt_ms": DT, "integrator": "heun", "monitor": MONITOR},
                "copy_bandwidth_gb_s": {"host": host_bw, "device": device_bw},
                "results": results, "peers": peer_rows, "skipped": skipped, "stopped": stopped}

    with tempfile.TemporaryDirectory(prefix="neuralmass-bench-cache-") as cache:
        previous = os.environ.get("NEURALMASS_CACHE_DIR")
        os.environ["NEURALMASS_CACHE_DIR"] = cache  # compile "cold" into a fresh cache
        try:
            for backend in usable:
                copy_bw = device_bw if _on_gpu(backend) else host_bw
                for model in models:
                    for dtype in dtypes:
                        rate = None  # set-steps/s at the previous size of this scan
                        for index, (panel, n_sets, n_steps) in enumerate(runs):
                            if rate is not None and max_run_s is not None and \
                                    n_sets * n_steps / rate > max_run_s:
                                stopped.append(dict(
                                    backend=backend, model=model, dtype=dtype, sets=n_sets,
                                    steps=n_steps, reason=f"one run would take "
                                    f"~{n_sets * n_steps / rate:.0f} s at {rate:.3g} "
                                    f"set-steps/s, over the limit of {max_run_s:g} s "
                                    "(--max-run-s)"))
                                log(f"{backend} {model} {dtype}: stopped before {n_sets} sets "
                                    f"× {n_steps} steps: {stopped[-1]['reason']}")
                                break
                            plan = workload(model, conn, n_sets, n_steps, dtype)
                            try:
                                m = MEASURE[backend](plan, repeat)
                            except ParameterError as error:  # the memory estimate says no
                                stopped.append(dict(backend=backend, model=model, dtype=dtype,
                                                    sets=n_sets, steps=n_steps,
                                                    reason=str(error)))
                                log(f"{backend} {model} {dtype}: stopped before {n_sets} sets "
                                    f"× {n_steps} steps: {error}")
                                break
                            cached = _numba_cached_prepare(conn, model, n_sets, n_steps, dtype) \
                                if backend == "numba" and index == 0 else None
                            row = _row(backend, model, dtype, panel, plan, m, copy_bw, cached,
                                       nnz)
                            results.append(row)
                            rate = row["set_steps_per_s"]
                            if checkpoint is not None:
                                checkpoint(report([]))
                            log(f"{backend} {model} {dtype} {n_sets} sets × {row['steps']} "
                                f"steps: {row['set_steps_per_s']:.3g} set-steps/s")
        finally:
            if previous is None:
                os.environ.pop("NEURALMASS_CACHE_DIR", None)
            else:
                os.environ["NEURALMASS_CACHE_DIR"] = previous
    return report(measure_peers(results, conn) if peers else [])


# --------------------------------------------------------------------------- output
def _g(value, digits: int = 3, unit: str = "") -> str:
    return "—" if value is None else f"{value:.{digits}g}{unit}"


def _percent(fraction) -> str:
    return "—" if fraction is None else f"{100 * fraction:.2g} %"


def print_report(report: dict, console) -> None:
    """The rich tables (at least 170 columns wide, so that no figure is cut short on a
    narrow or captured console): results, peers, skipped backends and stopped scans."""
    from rich.console import Console
    from rich.table import Table

    if console.width < 170:
        console = Console(width=170, file=console.file)

    info = report["machine"]
    gpu = info["gpu"]
    console.print(f"machine: {info['cpu']}, {info['cores']} cores, {info['ram_gib']} GiB, load "
                  f"{info['load']:.2f}" + (f"; GPU {gpu['name']} (driver {gpu['driver']}, "
                                           f"{gpu['memory_gib']} GiB)" if gpu else "; no GPU"),
                  highlight=False)
    w = report["workload"]
    bw = report["copy_bandwidth_gb_s"]
    console.print(f"workload: {w['connectivity']} ({w['n_regions']} regions, {w['nnz']} edges), "
                  f"dt {w['dt_ms']} ms, {w['integrator']}, {w['monitor']}; copy bandwidth "
                  f"host {bw['host']:.1f} GB/s, device {_g(bw['device'], 4)} GB/s "
                  "(read + write)", highlight=False)
    table = Table("backend", "model", "dtype", "sets", "steps", "compile s\ncold / cached",
                  "run s\nmin / median / max", "set-steps/s", "effective\nGB/s",
                  "copy GB/s\n(reached)", "peak RSS\nGiB", "device\nGiB",
                  title="neuralmass bench (effective GB/s = sets × steps × nnz × C × bytes "
                        "/ median run)")
    for r in report["results"]:
        c, t = r["compile_s"], r["run_s"]
        table.add_row(r["backend"], r["model"], r["dtype"], f"{r['sets']:,}",
                      f"{r['steps']:,}", f"{_g(c['cold'])} / {_g(c['cached'])}",
                      f"{_g(t['min'])} / {_g(t['median'])} / {_g(t['max'])}",
                      _g(r["set_steps_per_s"]), f"{r['effective_gb_s']:.3g} (C={r['channels']})",
                      f"{_g(r['copy_bandwidth_gb_s'])} ({_percent(r['fraction_of_copy'])})",
                      f"{r['peak_rss_gib']:.2f}", _g(r["device_memory_gib"]))
    console.print(table)
    if report["peers"]:
        peers = Table("peer", "model", "dtype", "sets", "steps", "set-steps/s", "measured",
                      "neuralmass ×", title="peers (a few sets timed, extrapolated linearly)")
        for p in report["peers"]:
            if p["status"] != "ok":
                peers.add_row(p["peer"], p.get("model", "—"), p.get("dtype", "—"),
                              str(p.get("sets", "—")), str(p.get("steps", "—")), p["status"],
                              "—", "—")
                continue
            ratios = ", ".join(f"{b} {x:.3g}×" for b, x in p["ratio"].items())
            peers.add_row(p["peer"], p["model"], p["dtype"], f"{p['sets']:,}",
                          f"{p['steps']:,}", _g(p["set_steps_per_s"]),
                          f"{p['measured_sets']} sets" +
                          (" (extrapolated)" if p["extrapolated"] else ""), ratios)
        console.print(peers)
    for s in report["skipped"]:
        console.print(f"skipped {s['backend']}: {s['reason']}", highlight=False, markup=False)
    for s in report["stopped"]:
        console.print(f"stopped {s['backend']} {s['model']} {s['dtype']} at {s['sets']:,} sets × "
                      f"{s['steps']:,} steps: {s['reason']}", highlight=False,
                      markup=False)


def write_json(report: dict, path: str) -> None:
    with open(path, "w") as handle:
        json.dump(report, handle, indent=1)


def plot_report(report: dict, path: str) -> None:
    """The four panels as one PNG: (A) effective vs copy GB/s, (B) set-steps/s per case,
    (C) set-steps/s against sets, (D) against steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report["results"]
    figure, axes = plt.subplots(2, 2, figsize=(12, 9))
    (a, b), (c, d) = axes
    fixed = [r for r in results if r["panel"] == "B"] or results
    labels = [f"{r['backend']}\n{r['model']}\n{r['dtype']}" for r in fixed]
    a.bar(labels, [r["effective_gb_s"] for r in fixed], label="effective (delayed reads)")
    a.bar(labels, [r["copy_bandwidth_gb_s"] or 0 for r in fixed], fill=False,
          edgecolor="k", label="copy bandwidth")
    a.set(title="A: memory bandwidth", ylabel="GB/s")
    a.legend()
    b.bar(labels, [r["set_steps_per_s"] for r in fixed])
    b.set(title="B: parameter-set-steps/s", ylabel="set-steps/s", yscale="log")
    for axis, panel, key, title in ((c, "C", "sets", "C: against parameter sets"),
                                    (d, "D", "steps", "D: against integration steps")):
        rows = [r for r in results if r["panel"] == panel]
        for case in sorted({(r["backend"], r["model"], r["dtype"]) for r in rows}):
            line = [r for r in rows if (r["backend"], r["model"], r["dtype"]) == case]
            axis.plot([r[key] for r in line], [r["set_steps_per_s"] for r in line], "o-",
                      label=" ".join(case))
        if rows:
            axis.legend(fontsize="small")
        else:
            axis.text(0.5, 0.5, f"run with --scan {key}", ha="center", transform=axis.transAxes)
        axis.set(title=title, xlabel=key, ylabel="set-steps/s", xscale="log", yscale="log")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
