r"""Persistence filter: the forward recursion of a hidden Markov model, one tick at a time.

Per-tick mixture posteriors treat every tick as independent, so a single large return flips the
regime. Regimes persist, and an HMM says so with a transition matrix $A$ whose diagonal is close
to one. Given per-regime emission log-likelihoods $\log p(x_t \mid j)$ (from the mixture), the
filter keeps $\alpha_t(j) = P(s_t = j \mid x_{1..t})$:

$$\alpha_t(j) \propto p(x_t \mid j) \sum_i \alpha_{t-1}(i) A_{ij}.$$

It is causal (no smoothing, nothing changes with hindsight) and runs in log space, so
emissions far in a tail cannot underflow.

The transition matrix is either fixed (``self_transition`` on the diagonal, the rest spread
evenly) or estimated online (``learn_transitions=True``): decayed expected transition counts
$N_{ij} \leftarrow \lambda N_{ij} + \xi_t(i, j)$ with the filtered two-slice posterior
$\xi_t(i,j) \propto \alpha_{t-1}(i) A_{ij} p(x_t \mid j)$, plus a Dirichlet prior centred on the
fixed matrix with ``prior_strength`` pseudo-counts per row. Being causal, $\xi_t$ is less sharp
than a smoothed two-slice posterior, so the estimated matrix switches a little more readily than
a batch Baum-Welch fit would.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["ForwardFilter", "logsumexp"]


def _enc(value: float) -> float | str:
    """JSON-safe log-probability: ``-inf`` (an impossible state) travels as a string."""
    return float(value) if math.isfinite(value) else "-inf"


def logsumexp(values: Sequence[float]) -> float:
    """``log(sum(exp(values)))`` without overflow; ``-inf`` for all ``-inf`` inputs."""
    top = max(values)
    if top == -math.inf:
        return -math.inf
    return top + math.log(math.fsum([math.exp(v - top) for v in values]))


class ForwardFilter:
    """Normalised online HMM forward filter over ``n_states`` regimes.

    Parameters
    ----------
    n_states
        Number of hidden states (regimes).
    self_transition
        Probability of staying in the same state per tick, in ``[1/n_states, 1)``; off-diagonal
        mass is spread evenly. Ignored when ``n_states == 1``. This is also the prior mean when
        transitions are learnt.
    learn_transitions
        Estimate the transition matrix online from filtered two-slice posteriors.
    transition_halflife
        Half-life in ticks of the expected transition counts (only with ``learn_transitions``).
    prior_strength
        Dirichlet pseudo-counts per row centred on the fixed matrix (only with
        ``learn_transitions``).

    Examples
    --------
    >>> f = ForwardFilter(2, self_transition=0.9)
    >>> f.update([0.0, 0.0])
    [0.5, 0.5]
    >>> p = f.update([0.0, -3.0])            # one tick favouring state 0
    >>> round(p[0], 4)
    0.9526
    >>> p = f.update([-3.0, 0.0])            # equal contrary evidence, weighed against the past
    >>> round(p[0], 4)
    0.2373
    """

    def __init__(
        self,
        n_states: int,
        self_transition: float = 0.98,
        learn_transitions: bool = False,
        transition_halflife: float = 2000.0,
        prior_strength: float = 100.0,
    ) -> None:
        if not (isinstance(n_states, int) and n_states >= 1):
            raise ValueError(f"n_states must be a positive integer, got {n_states!r}")
        lo = 1.0 / n_states
        # With a single state there is nothing to switch to: the matrix is [[1]] whatever the
        # setting, so a detector configured for several regimes also works with one.
        if n_states > 1 and not (
            isinstance(self_transition, int | float) and lo <= self_transition < 1.0
        ):
            raise ValueError(
                f"self_transition must lie in [1/n_states, 1) = [{lo:g}, 1), "
                f"got {self_transition!r}"
            )
        if not (math.isfinite(transition_halflife) and transition_halflife > 0):
            raise ValueError(
                f"transition_halflife must be a positive finite number, got {transition_halflife!r}"
            )
        if not (math.isfinite(prior_strength) and prior_strength > 0):
            raise ValueError(
                f"prior_strength must be a positive finite number, got {prior_strength!r}"
            )
        self.n_states = n_states
        self.self_transition = float(self_transition)
        self.learn_transitions = bool(learn_transitions)
        self.transition_halflife = float(transition_halflife)
        self.prior_strength = float(prior_strength)
        self._decay = 2.0 ** (-1.0 / self.transition_halflife)
        k = n_states
        if k == 1:
            self._prior = [[1.0]]
        else:
            off = (1.0 - self.self_transition) / (k - 1)
            self._prior = [
                [self.self_transition if i == j else off for j in range(k)] for i in range(k)
            ]
        self._counts = [[0.0] * k for _ in range(k)]
        self._log_alpha: list[float] = [-math.log(k)] * k
        self._log_a = self._log_matrix(self._prior)
        self.n_updates = 0

    @staticmethod
    def _log_matrix(matrix: list[list[float]]) -> list[list[float]]:
        return [[math.log(v) if v > 0 else -math.inf for v in row] for row in matrix]

    @property
    def probabilities(self) -> list[float]:
        """Current filtered state probabilities."""
        return [math.exp(v) for v in self._log_alpha]

    @property
    def transition_matrix(self) -> list[list[float]]:
        """Transition matrix used for the next prediction step (rows sum to one)."""
        return [[math.exp(v) for v in row] for row in self._log_a]

    def predict(self) -> list[float]:
        """One-step-ahead state probabilities ``P(s_{t+1} | x_{1..t})``."""
        return [math.exp(v) for v in self._predicted_log()]

    def _predicted_log(self) -> list[float]:
        k = self.n_states
        la = self._log_alpha
        return [logsumexp([la[i] + self._log_a[i][j] for i in range(k)]) for j in range(k)]

    def update(self, log_emission: Sequence[float]) -> list[float]:
        """Fold in one tick's per-state emission log-likelihoods; return filtered probabilities.

        Emissions need only be correct up to an additive constant. ``-inf`` is allowed for
        impossible states; if every state is impossible the tick is ignored.

        Raises
        ------
        ValueError
            On a wrong length, NaN or ``+inf``; the state is left unchanged.
        """
        k = self.n_states
        if len(log_emission) != k:
            raise ValueError(f"log_emission must have {k} entries, got {len(log_emission)}")
        if k == 2 and not self.learn_transitions:
            e0 = float(log_emission[0])
            e1 = float(log_emission[1])
            # Finite emissions only (``e - e == 0`` is False for NaN and both infinities): an
            # impossible state (-inf) or a bad value takes the general path, which handles or
            # rejects it.
            if e0 - e0 == 0.0 and e1 - e1 == 0.0:
                return self._update2(e0, e1)
        emission = [float(v) for v in log_emission]
        for j, v in enumerate(emission):
            if math.isnan(v) or v == math.inf:
                raise ValueError(f"log_emission[{j}] must be finite or -inf, got {v!r}")
        if max(emission) == -math.inf:
            return self.probabilities
        predicted = self._predicted_log()
        joint = [predicted[j] + emission[j] for j in range(k)]
        norm = logsumexp(joint)
        if self.learn_transitions:
            self._learn(emission, norm)
        self._log_alpha = [v - norm for v in joint]
        self.n_updates += 1
        return self.probabilities

    def packed(self) -> list[float] | None:
        """Log probabilities then the row-major log transition matrix, for a compiled run.

        None with learnt transitions, which the compiled run does not implement.
        """
        if self.learn_transitions:
            return None
        return [*self._log_alpha, *(v for row in self._log_a for v in row)]

    def unpack(self, packed: Sequence[float], n_updates: int) -> None:
        """Take back the log probabilities after a compiled run of ``n_updates`` updates."""
        self._log_alpha = [float(v) for v in packed[: self.n_states]]
        self.n_updates += n_updates

    def _update2(self, e0: float, e1: float) -> list[float]:
        """:meth:`update` for two states, fixed transitions and finite emissions.

        The same operations as the general path, unrolled: ``max`` picks the first of equal
        values and ``fsum`` of two terms is one correctly rounded addition, so every result is
        identical to the bit, without the list and generator overhead (this runs once per tick
        per key).
        """
        la0, la1 = self._log_alpha
        (a00, a01), (a10, a11) = self._log_a
        exp = math.exp
        u, v = la0 + a00, la1 + a10
        top = v if v > u else u
        p0 = top + math.log(exp(u - top) + exp(v - top)) if top != -math.inf else top
        u, v = la0 + a01, la1 + a11
        top = v if v > u else u
        p1 = top + math.log(exp(u - top) + exp(v - top)) if top != -math.inf else top
        j0 = p0 + e0
        j1 = p1 + e1
        top = j1 if j1 > j0 else j0
        norm = top + math.log(exp(j0 - top) + exp(j1 - top))
        a0 = j0 - norm
        a1 = j1 - norm
        self._log_alpha = [a0, a1]
        self.n_updates += 1
        return [exp(a0), exp(a1)]

    def _learn(self, emission: list[float], norm: float) -> None:
        k = self.n_states
        lam = self._decay
        la = self._log_alpha
        counts = self._counts
        for i in range(k):
            row = counts[i]
            for j in range(k):
                xi = math.exp(la[i] + self._log_a[i][j] + emission[j] - norm)
                row[j] = lam * row[j] + xi
        matrix = []
        for i in range(k):
            row = [counts[i][j] + self.prior_strength * self._prior[i][j] for j in range(k)]
            total = math.fsum(row)
            matrix.append([v / total for v in row])
        self._log_a = self._log_matrix(matrix)

    def reorder(self, order: Sequence[int]) -> None:
        """Relabel states: new state ``r`` is old state ``order[r]`` (used when labels change)."""
        k = self.n_states
        if sorted(order) != list(range(k)):
            raise ValueError(f"order must be a permutation of range({k}), got {list(order)!r}")
        self._log_alpha = [self._log_alpha[o] for o in order]
        self._counts = [[self._counts[a][b] for b in order] for a in order]
        self._log_a = [[self._log_a[a][b] for b in order] for a in order]

    # -- state -----------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """JSON-safe, versioned state."""
        return {
            "version": 1,
            "kind": "ForwardFilter",
            "params": {
                "n_states": self.n_states,
                "self_transition": self.self_transition,
                "learn_transitions": self.learn_transitions,
                "transition_halflife": self.transition_halflife,
                "prior_strength": self.prior_strength,
            },
            "log_alpha": [_enc(v) for v in self._log_alpha],
            "counts": [list(row) for row in self._counts],
            "log_transitions": [[_enc(v) for v in row] for row in self._log_a],
            "n_updates": self.n_updates,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ForwardFilter:
        """Rebuild from :meth:`to_state` output."""
        if not isinstance(state, Mapping) or state.get("kind") != "ForwardFilter":
            raise ValueError("state: not a ForwardFilter snapshot")
        if state.get("version") != 1:
            raise ValueError(
                f"ForwardFilter state version {state.get('version')!r} is not supported "
                "(expected 1)"
            )
        obj = cls(**state["params"])
        k = obj.n_states
        log_alpha = [float(v) for v in state["log_alpha"]]
        counts = [[float(v) for v in row] for row in state["counts"]]
        log_a = [[float(v) for v in row] for row in state["log_transitions"]]
        if len(log_alpha) != k or len(counts) != k or len(log_a) != k:
            raise ValueError(f"ForwardFilter state: arrays must have {k} rows")
        obj._log_alpha = log_alpha
        obj._counts = counts
        obj._log_a = log_a
        obj.n_updates = int(state["n_updates"])
        return obj
