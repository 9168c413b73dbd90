"""Forward filter: exact against brute-force path enumeration; learnt transitions; state."""

from __future__ import annotations

import itertools
import json
import math
import random

import pytest

from streamgmm.persistence import ForwardFilter


def brute_force_filtered(
    log_emissions: list[list[float]], matrix: list[list[float]]
) -> list[float]:
    """P(s_T = j | x_1..T) by summing the joint probability of every state path."""
    k = len(matrix)
    totals = [0.0] * k
    for path in itertools.product(range(k), repeat=len(log_emissions)):
        p = 1.0 / k  # the filter starts from a uniform belief before the first transition
        prev = None
        for t, s in enumerate(path):
            if prev is None:
                # First step: uniform prior pushed through one transition, as the filter does.
                p = sum(matrix[i][s] / k for i in range(k))
            else:
                p *= matrix[prev][s]
            p *= math.exp(log_emissions[t][s])
            prev = s
        totals[path[-1]] += p
    z = sum(totals)
    return [v / z for v in totals]


@pytest.mark.parametrize("k", [2, 3])
def test_filter_equals_brute_force_enumeration(k: int) -> None:
    rng = random.Random(k)
    f = ForwardFilter(k, self_transition=0.85)
    matrix = f.transition_matrix
    emissions: list[list[float]] = []
    for _ in range(7):
        e = [rng.uniform(-6, 1) for _ in range(k)]
        emissions.append(e)
        got = f.update(e)
        want = brute_force_filtered(emissions, matrix)
        assert got == pytest.approx(want, abs=1e-12)
    assert sum(f.probabilities) == pytest.approx(1.0, abs=1e-15)


def test_emissions_are_shift_invariant_and_extreme_values_do_not_underflow() -> None:
    a, b = ForwardFilter(2), ForwardFilter(2)
    for e in ([0.0, -2.0], [-1.0, -1.5], [-3.0, 0.5]):
        pa = a.update(e)
        pb = b.update([v - 5000.0 for v in e])
        assert pa == pytest.approx(pb, abs=1e-12)
    p = a.update([0.0, -1e6])
    assert p[0] == 1.0 and p[1] == 0.0
    p = a.update([-1e6, 0.0])  # state 1 recovers: the off-diagonal mass keeps it alive
    assert p[1] == 1.0


def test_impossible_states_and_bad_input() -> None:
    f = ForwardFilter(2)
    assert f.update([0.0, -math.inf]) == [1.0, 0.0]
    assert f.update([-math.inf, -math.inf]) == [1.0, 0.0]  # nothing possible: tick ignored
    before = f.to_state()
    for bad in ([math.nan, 0.0], [math.inf, 0.0], [0.0]):
        with pytest.raises(ValueError, match="log_emission"):
            f.update(bad)
    assert f.to_state() == before
    json.dumps(before, allow_nan=False)


def test_filter_smooths_flips_relative_to_raw_posteriors() -> None:
    # A persistent state observed through noisy emissions: filtering flips far less.
    rng = random.Random(3)
    f = ForwardFilter(2, self_transition=0.98)
    state, raw_flips, filt_flips, prev_raw, prev_filt = 0, 0, 0, 0, 0
    for _ in range(3000):
        if rng.random() < 0.01:
            state = 1 - state
        e = [rng.gauss(1.0 if state == 0 else 0.0, 1.0), rng.gauss(1.0 if state else 0.0, 1.0)]
        raw = int(e[1] > e[0])
        filt = int(f.update(e)[1] > 0.5)
        raw_flips += raw != prev_raw
        filt_flips += filt != prev_filt
        prev_raw, prev_filt = raw, filt
    assert filt_flips < raw_flips / 5


def test_learnt_transitions_move_towards_the_truth() -> None:
    # True persistence 0.9 per tick, prior belief 0.6: the estimate must end nearer to 0.9.
    rng = random.Random(0)
    f = ForwardFilter(
        2,
        self_transition=0.6,
        learn_transitions=True,
        transition_halflife=2000,
        prior_strength=20.0,
    )
    state = 0
    for _ in range(6000):
        if rng.random() < 0.1:
            state = 1 - state
        e = [0.0, -3.0] if state == 0 else [-3.0, 0.0]
        f.update([v + rng.gauss(0, 0.5) for v in e])
    stay = [f.transition_matrix[i][i] for i in range(2)]
    assert all(0.8 < s < 0.97 for s in stay), stay
    for row in f.transition_matrix:
        assert sum(row) == pytest.approx(1.0, abs=1e-12)


def test_reorder_relabels_consistently() -> None:
    f = ForwardFilter(3, self_transition=0.9, learn_transitions=True)
    g = ForwardFilter(3, self_transition=0.9, learn_transitions=True)
    rng = random.Random(5)
    seq = [[rng.uniform(-3, 0) for _ in range(3)] for _ in range(50)]
    for e in seq[:25]:
        f.update(e)
        g.update(e)
    order = [2, 0, 1]  # new state r is old state order[r]
    g.reorder(order)
    for e in seq[25:]:
        pf = f.update(e)
        pg = g.update([e[o] for o in order])
        assert [pf[o] for o in order] == pytest.approx(pg, abs=1e-12)
    with pytest.raises(ValueError, match="permutation"):
        g.reorder([0, 0, 1])


def test_state_round_trip_is_bit_identical() -> None:
    rng = random.Random(9)
    a = ForwardFilter(3, self_transition=0.95, learn_transitions=True)
    for _ in range(100):
        a.update([rng.uniform(-5, 0) for _ in range(3)])
    a.update([0.0, -math.inf, -1.0])
    b = ForwardFilter.from_state(json.loads(json.dumps(a.to_state(), allow_nan=False)))
    for _ in range(100):
        e = [rng.uniform(-5, 0) for _ in range(3)]
        assert a.update(e) == b.update(e)
    assert a.transition_matrix == b.transition_matrix


def test_parameter_validation() -> None:
    with pytest.raises(ValueError, match="self_transition"):
        ForwardFilter(2, self_transition=1.0)
    with pytest.raises(ValueError, match="self_transition"):
        ForwardFilter(4, self_transition=0.2)
    with pytest.raises(ValueError, match="n_states"):
        ForwardFilter(0)


def _reference_update(
    log_alpha: list[float], log_a: list[list[float]], emission: list[float]
) -> list[float]:
    """The textbook log-space forward step with fsum-based log-sum-exp (no fast paths)."""

    def lse(values: list[float]) -> float:
        top = max(values)
        if top == -math.inf:
            return -math.inf
        return top + math.log(math.fsum(math.exp(v - top) for v in values))

    k = len(log_alpha)
    predicted = [lse([log_alpha[i] + log_a[i][j] for i in range(k)]) for j in range(k)]
    joint = [predicted[j] + emission[j] for j in range(k)]
    norm = lse(joint)
    return [v - norm for v in joint]


def test_two_state_filter_matches_the_reference_recursion_to_the_bit() -> None:
    # The two-state filter has an unrolled path; it must give the general recursion's numbers
    # exactly, extreme and impossible emissions included (those take the general path).
    rng = random.Random(11)
    f = ForwardFilter(2, self_transition=0.93)
    log_a = [[math.log(v) for v in row] for row in f.transition_matrix]
    log_alpha = [-math.log(2.0)] * 2
    specials = [[-800.0, 0.0], [0.0, -1e5], [-math.inf, 0.0], [3.0, 3.0]]
    for t in range(3000):
        e = specials[t % 4] if t % 97 == 0 else [rng.uniform(-40, 5), rng.uniform(-40, 5)]
        log_alpha = _reference_update(log_alpha, log_a, e)
        assert f.update(e) == [math.exp(v) for v in log_alpha]
