"""Analysis from the IR: equilibria, their stability, network stability, continuation.

Every function here works on the SymPy right-hand side of a :class:`~neuralmass.model.Model`
(``model.drift``), lambdified to NumPy; nothing is simulated. Times are in the model's units
(ms for the bundled models), so eigenvalues are in 1/ms and Hopf frequencies are given both as
angular frequencies (rad/ms) and in Hz.
"""

from ._continuation import Branch as Branch
from ._continuation import Continuation as Continuation
from ._continuation import SpecialPoint as SpecialPoint
from ._continuation import continuation as continuation
from ._fixed_points import FixedPoint as FixedPoint
from ._fixed_points import classify as classify
from ._fixed_points import fixed_points as fixed_points
from ._network import NetworkStability as NetworkStability
from ._network import network_stability as network_stability
from ._plot import plot_bifurcation as plot_bifurcation
