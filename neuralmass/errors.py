"""The exceptions neuralmass raises.

Every error caused by wrong input is a ``ValueError`` subclass whose message says where the
problem is (``model.xml:14:`` for XML, the parameter name and the expected shape for arrays)
and what was expected.
"""

from __future__ import annotations


class NeuralmassError(Exception):
    """Base class of every neuralmass error."""


class ModelError(NeuralmassError, ValueError):
    """A model description (LEMS XML or the IR built from it) is wrong."""


class ExpressionError(ModelError):
    """An expression string in a model could not be turned into SymPy."""


class ConnectivityError(NeuralmassError, ValueError):
    """Connectivity weights, tract lengths or files are wrong."""


class ParameterError(NeuralmassError, ValueError):
    """Arguments of a simulation (parameters, dt, backend, monitors, ...) are wrong."""


class SimulationError(NeuralmassError, RuntimeError):
    """A simulation diverged (NaN or inf); the message names the first step, region and set."""


class ModelWarning(UserWarning):
    """A model file uses a convention neuralmass accepts (often one of RateML's) but reads in a
    way worth knowing: the message names the file and line and says what was done."""


class DivergenceWarning(RuntimeWarning):
    """Some parameter sets diverged (NaN or inf) and are NaN from their first non-finite sample
    on; the others are returned as computed (``simulate(..., on_divergence="warn")``). The
    message says how many and names the first step, region, state variable and set."""


class BackendUnavailableError(NeuralmassError, RuntimeError):
    """The requested backend cannot run here (a package or a device is missing)."""
