"""neuralmass: whole-brain network simulation from LEMS/RateML neural mass models.

    import neuralmass as nm
    model = nm.load_model("kuramoto")
    conn = nm.Connectivity.default()
    res = nm.simulate(model, conn, {"global_coupling": np.linspace(0, 1, 1024)})
"""

from . import analysis as analysis
from . import errors as errors
from . import hemodynamics as hemodynamics
from . import lems as lems
from . import metrics as metrics
from . import models as models
from . import monitors as monitors
from ._simulate import simulate as simulate
from .connectivity import Connectivity as Connectivity
from .fit import fit as fit
from .io import load_result as load_result
from .model import Model as Model
from .models import load_model as load_model
from .params import grid as grid
from .result import Result as Result
from .sweep import sweep as sweep

__version__ = "0.1.0"
