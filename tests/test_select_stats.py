"""RFC 2782 order statistics: observed shares against exact probabilities.

Exact probabilities come from enumerating every draw r in [0, S] at every
step of the RFC 2782 algorithm (fractions, no sampling). Observed counts come
from the implementation under test with fixed seeds. The chi-square tail is
computed here (regularised incomplete gamma); a test fails when p < ALPHA.
With ALPHA = 1e-9 and fewer than 200 comparisons in the whole file the chance
of a false failure, had the seeds been random, is below 2e-7 (< 1e-6).
"""
import itertools
import math
from collections import Counter
from fractions import Fraction

import pytest

from sipedge._py.rng import Rng

ALPHA = 1e-9
N = 40_000


# ----------------------------------------------------------------- statistics
def chi2_sf(x: float, df: int) -> float:
    """P(X > x) for X ~ chi-square(df): Q(df/2, x/2)."""
    a, x = df / 2.0, x / 2.0
    if x <= 0:
        return 1.0
    lead = math.exp(-x + a * math.log(x) - math.lgamma(a))
    if x < a + 1:
        term = total = 1.0 / a
        n = a
        for _ in range(100_000):
            n += 1
            term *= x / n
            total += term
            if abs(term) < abs(total) * 1e-16:
                break
        return max(0.0, 1.0 - total * lead)
    tiny = 1e-300
    b = x + 1 - a
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, 100_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = d if abs(d) > tiny else tiny
        c = b + an / c
        c = c if abs(c) > tiny else tiny
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-16:
            break
    return lead * h


@pytest.mark.parametrize("x", [0.1, 1.0, 3.0, 10.0, 40.0, 80.0])
def test_chi2_tail_matches_closed_forms(x):
    # df=2: exp(-x/2); df=1: erfc(sqrt(x/2)); df=4: exp(-x/2)(1 + x/2)
    assert chi2_sf(x, 2) == pytest.approx(math.exp(-x / 2), rel=1e-9)
    assert chi2_sf(x, 1) == pytest.approx(math.erfc(math.sqrt(x / 2)), rel=1e-8)
    assert chi2_sf(x, 4) == pytest.approx(math.exp(-x / 2) * (1 + x / 2), rel=1e-9)


def test_chi2_tail_known_quantiles():
    # chi-square quantiles from tables: df=10 at 0.999 is 29.588; df=3 at 0.95 is 7.815
    assert chi2_sf(29.588, 10) == pytest.approx(0.001, rel=1e-3)
    assert chi2_sf(7.815, 3) == pytest.approx(0.05, rel=1e-3)


def chi_square_check(observed: Counter, expected: dict, n: int, what: str) -> None:
    """Fail when *observed* counts do not fit the exact *expected* probabilities."""
    impossible = {k: c for k, c in observed.items() if expected.get(k, 0) == 0}
    assert not impossible, f"{what}: outcomes with probability 0 happened: {impossible}"
    cells = [(observed.get(k, 0), float(p) * n) for k, p in expected.items() if p > 0]
    # merge cells with a small expectation so the chi-square approximation holds
    cells.sort(key=lambda c: c[1])
    merged, acc_o, acc_e = [], 0, 0.0
    for o, e in cells:
        acc_o, acc_e = acc_o + o, acc_e + e
        if acc_e >= 10:
            merged.append((acc_o, acc_e))
            acc_o, acc_e = 0, 0.0
    if acc_e > 0:
        if merged:
            o, e = merged.pop()
            merged.append((o + acc_o, e + acc_e))
        else:
            merged.append((acc_o, acc_e))
    if len(merged) < 2:
        assert sum(observed.values()) == n
        return
    stat = sum((o - e) ** 2 / e for o, e in merged)
    p = chi2_sf(stat, len(merged) - 1)
    assert p >= ALPHA, f"{what}: chi-square {stat:.1f} on {len(merged) - 1} df, p = {p:.3g}"


# ------------------------------------------------------------ exact reference
def rfc_list(targets):
    """RFC 2782 list of one priority: weight-0 first, then the others, order kept."""
    return [t for t in targets if t[1] == 0] + [t for t in targets if t[1] > 0]


def exact_group_orders(listed):
    """{order tuple of names: Fraction} for one priority group."""
    if len(listed) <= 1:
        return {tuple(n for n, _ in listed): Fraction(1)}
    total = sum(w for _, w in listed)
    hits = Counter()
    for r in range(total + 1):
        run = 0
        for j, (_, w) in enumerate(listed):
            run += w
            if run >= r:
                hits[j] += 1
                break
    out = Counter()
    for j, c in hits.items():
        rest = listed[:j] + listed[j + 1:]
        for tail, p in exact_group_orders(rest).items():
            out[(listed[j][0],) + tail] += Fraction(c, total + 1) * p
    return dict(out)


def exact_orders(targets):
    """targets: [(name, weight, priority)] usable ones -> {full order: Fraction}."""
    by_prio = {}
    for name, w, prio in targets:
        by_prio.setdefault(prio, []).append((name, w))
    result = {(): Fraction(1)}
    for prio in sorted(by_prio):
        group = exact_group_orders(rfc_list(by_prio[prio]))
        result = {a + b: pa * pb for a, pa in result.items() for b, pb in group.items()}
    return result


def test_exact_reference_on_hand_examples():
    # two targets, weights 1 and 3: r in 0..4; r<=1 -> A (r=0 and r=1), else B
    assert exact_group_orders([("A", 1), ("B", 3)]) == {("A", "B"): Fraction(2, 5),
                                                         ("B", "A"): Fraction(3, 5)}
    # weight 0 first: r=0 -> Z, so Z is first with 1/(S+1)
    ex = exact_group_orders(rfc_list([("A", 2), ("Z", 0)]))
    assert ex == {("Z", "A"): Fraction(1, 3), ("A", "Z"): Fraction(2, 3)}
    assert sum(exact_orders([("A", 1, 1), ("B", 2, 1), ("C", 0, 2)]).values()) == 1


# ------------------------------------------------------------------ scenarios
SCENARIOS = {
    # name: ([(name, priority, weight)], names marked out)
    "twilio_60_20_20": ([("a", 10, 60), ("b", 10, 20), ("c", 10, 20)], []),
    "twilio_60_down": ([("a", 10, 60), ("b", 10, 20), ("c", 10, 20)], ["a"]),
    "equal_weights": ([("a", 1, 10), ("b", 1, 10), ("c", 1, 10), ("d", 1, 10)], []),
    "weight_zero": ([("a", 5, 3), ("z1", 5, 0), ("b", 5, 6), ("z2", 5, 0)], []),
    "all_weight_zero": ([("a", 5, 0), ("b", 5, 0), ("c", 5, 0)], []),
    "one_target": ([("a", 7, 5)], []),
    "priorities": ([("a", 20, 1), ("b", 10, 3), ("c", 10, 1), ("d", 20, 0), ("e", 20, 2)], []),
    "out_of_service_mixed": ([("a", 10, 5), ("b", 10, 5), ("c", 20, 1), ("d", 20, 4)], ["b", "c"]),
    "whole_priority_out": ([("a", 10, 5), ("b", 10, 5), ("c", 20, 1), ("d", 20, 4)], ["a", "b"]),
}


def build(impl, spec, out, seed):
    core_mod = impl("select")
    names = [n for n, _, _ in spec]
    core = core_mod.Core(names, [p for _, p, _ in spec], [w for _, _, w in spec],
                         [True] * len(spec), list(range(len(spec))), seed=seed,
                         cooldown=1e9, clock=lambda: 0.0)
    for n in out:
        core.mark_failed(names.index(n))
    return core


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_order_distribution_matches_rfc2782(impl, scenario):
    spec, out = SCENARIOS[scenario]
    core = build(impl, spec, out, seed=2782 + len(scenario))
    usable = [(n, w, p) for n, p, w in spec if n not in out]
    exact = exact_orders(usable)
    orders = Counter(tuple(core.order()) for _ in range(N))
    # every full order
    chi_square_check(orders, exact, N, f"{scenario}: full orders")
    # each position separately (first place is position 0)
    for pos in range(len(usable)):
        exp_pos, obs_pos = Counter(), Counter()
        for o, p in exact.items():
            exp_pos[o[pos]] += p
        for o, c in orders.items():
            obs_pos[o[pos]] += c
        chi_square_check(obs_pos, exp_pos, N, f"{scenario}: position {pos}")


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_pick_share_matches_rfc2782_first_place(impl, scenario):
    spec, out = SCENARIOS[scenario]
    core = build(impl, spec, out, seed=99 + len(scenario))
    usable = [(n, w, p) for n, p, w in spec if n not in out]
    first = Counter()
    for o, p in exact_orders(usable).items():
        first[o[0]] += p
    picks = Counter(core.pick() for _ in range(N))
    chi_square_check(picks, first, N, f"{scenario}: pick()")


def test_large_group_first_place(impl):
    # 48 targets in one priority (> 32: the Fenwick path), weights 0..47
    spec = [(f"t{i}", 1, i) for i in range(48)]
    core = build(impl, spec, [], seed=5)
    listed = rfc_list([(n, w) for n, _, w in spec])
    total = sum(w for _, w in listed)
    exact = {n: Fraction(w + (1 if j == 0 else 0), total + 1) for j, (n, w) in enumerate(listed)}
    n = 20_000
    firsts = Counter(core.order()[0] for _ in range(n))
    chi_square_check(firsts, exact, n, "48 targets: first place")


def test_expected_shares_match_enumeration(impl, monkeypatch):
    from sipedge import select

    monkeypatch.setattr(select, "_core", impl("select"))
    for scenario, (spec, out) in SCENARIOS.items():
        ts = select.TargetSet([select.Target(f"sip:{n}.example.com", p, w) for n, p, w in spec],
                              seed=1, cooldown=1e9)
        for n in out:
            ts.mark_failed(f"sip:{n}.example.com")
        usable = [(n, w, p) for n, p, w in spec if n not in out]
        first = Counter()
        for o, p in exact_orders(usable).items():
            first[o[0]] += p
        got = {t.uri.host.split(".")[0]: s for t, s in ts.expected_shares().items()}
        for name, _, _ in spec:
            assert got[name] == pytest.approx(float(first.get(name, 0)), abs=1e-12), scenario


def test_twilio_60_20_20_with_60_down_is_even(impl):
    spec, out = SCENARIOS["twilio_60_down"]
    core = build(impl, spec, out, seed=3)
    picks = Counter(core.pick() for _ in range(N))
    assert set(picks) == {"b", "c"}
    # b heads the list: RFC 2782 gives it (20+1)/41 and c 20/41 (about 50/50)
    chi_square_check(picks, {"b": Fraction(21, 41), "c": Fraction(20, 41)}, N, "60 down")


def test_all_permutations_reachable_with_equal_weights(impl):
    spec, _ = SCENARIOS["equal_weights"]
    core = build(impl, spec, [], seed=11)
    seen = {tuple(core.order()) for _ in range(4000)}
    assert seen == set(itertools.permutations("abcd"))


def test_checker_rejects_wrong_distributions():
    rng = Rng(1)
    # weights ignored (uniform choice) instead of 60/20/20
    wrong = Counter("abc"[rng.uniform(2)] for _ in range(N))
    first = {"a": Fraction(61, 101), "b": Fraction(20, 101), "c": Fraction(20, 101)}
    with pytest.raises(AssertionError, match="chi-square"):
        chi_square_check(wrong, first, N, "uniform")
    # weight-0 target never first (r drawn from [1, S] instead of [0, S])
    listed = rfc_list([("a", 3), ("z", 0), ("b", 6)])
    exact = exact_group_orders(listed)
    never_zero = Counter()
    for _ in range(N):
        never_zero[("a", "b", "z") if rng.uniform(8) < 3 else ("b", "a", "z")] += 1
    with pytest.raises(AssertionError):
        chi_square_check(never_zero, exact, N, "no weight 0")
    # an impossible outcome fails outright
    with pytest.raises(AssertionError, match="probability 0"):
        chi_square_check(Counter({"x": 1, "a": N - 1}), {"a": Fraction(1)}, N, "impossible")
