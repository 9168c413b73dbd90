"""The layout of an online Gaussian mixture's state buffer, declared once as a table.

A model keeps everything in one flat ``float64`` buffer (:class:`streamgmm._layout.Table`): the
shape, where each region starts, then the header slots. ``mass``, ``means`` and ``scatter`` are
the decayed sufficient statistics of each component, kept in centred form (mean and scatter
about the mean, never raw second moments). ``factor`` and ``log_norm`` are derived from them
after every update (:mod:`streamgmm.mixture.kernels`): the row-major lower Cholesky factor L of
the floored covariance for "full", per-dimension standard deviations otherwise, and
log N_k - log det L. The ring holds recent points and their log-likelihoods, used to reseed
dead components. ``x``, ``p`` and ``w`` are working space of one step.

The regime detectors nest such a buffer in theirs as their emission model
(:mod:`streamgmm.regime.layout`).
"""

from __future__ import annotations

import numpy as np

from streamgmm._layout import Table, read_ints
from streamgmm._numeric import hot

__all__ = ["TABLE", "new_state", "read_layout", "regions"]

FULL, DIAG, SPHERICAL = range(3)
STEPWISE, DECAY = range(2)
#: Recent points a model keeps for reseeding dead components.
RING_LENGTH = 32

#: The table: the shape is K components, D features, a ring of R recent points, and M floats per
#: component's scatter or factor (D * D for "full", D otherwise).
TABLE = Table("n_components", "n_features", "ring_size", "stride")
N_COMPONENTS, N_FEATURES, RING_SIZE, STRIDE = TABLE.shape
#: FULL, DIAG or SPHERICAL (the kernels branch on it, so it is read with the shape).
(COVARIANCE,) = TABLE.slots(1)
# -- where each region starts: the decayed sufficient statistics, their factors, the ring of
#    recent points and their log-likelihoods, and working space (the point, its
#    responsibilities, a work vector) -----------------------------------------------------
MASS = TABLE.region("mass", lambda k, d, r, m: k)
MEANS = TABLE.region("means", lambda k, d, r, m: k * d)
SCATTER = TABLE.region("scatter", lambda k, d, r, m: k * m)
FACTOR = TABLE.region("factor", lambda k, d, r, m: k * m)
LOG_NORM = TABLE.region("log_norm", lambda k, d, r, m: k)
RING_X = TABLE.region("ring_x", lambda k, d, r, m: r * d)
RING_SCORE = TABLE.region("ring_score", lambda k, d, r, m: r)
X = TABLE.region("x", lambda k, d, r, m: d)
P = TABLE.region("p", lambda k, d, r, m: k)
W = TABLE.region("w", lambda k, d, r, m: d)
END = TABLE.end()
# -- header slots: settings, then the state's scalars ---------------------------------------------
SCHEDULE, DECAY_FACTOR, ALPHA, REG, MIN_WEIGHT = TABLE.slots(5)
N_SEEN, N_RESEEDS, RING_POS, RING_FILL = TABLE.slots(4)


@hot
def read_layout(state):
    """The shape and where each region starts, as integers (the header's first slots)."""
    return read_ints(state, END)


def new_state(n_components: int, n_features: int, cov_type: int, ring_size: int) -> np.ndarray:
    """A zeroed buffer with its shape, table of contents and covariance type written."""
    stride = n_features * n_features if cov_type == FULL else n_features
    state = TABLE.new(n_components, n_features, ring_size, stride)
    state[COVARIANCE] = cov_type
    return state


def regions(state: np.ndarray) -> dict[str, np.ndarray]:
    """Named flat views of the regions, for Python-side reading and restoring."""
    return TABLE.views(state)
