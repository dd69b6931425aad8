"""Selection statistics: observed shares against exact probabilities.

The rule (csrc/select.h, as Twilio documents it): inside a priority a usable
positive-weight target comes next with probability w / S exactly (S = the
usable positive weights left); weight-0 targets come after them, uniformly.
Exact probabilities come from enumerating every outcome (fractions, no
sampling); observed counts from the implementation under test with fixed
seeds (so each run is the same run: a pass is reproducible). The chi-square
tail is computed here (regularised incomplete gamma); a test fails when
p < ALPHA. With ALPHA = 1e-9 and fewer than 400 comparisons in the whole file
the chance of a false failure, had the seeds been random, is below 4e-7
(< 1e-6).
"""
import itertools
import math
from collections import Counter
from fractions import Fraction

import pytest

from sipedge._py.rng import Rng
from sipedge.select.health import HealthTable
from conftest import scaled

ALPHA = 1e-9
N_FULL = 40_000
N = scaled(N_FULL, floor=4000)  # draws per statistical check (SIPEDGE_TEST_SCALE)


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
def exact_group_orders(group):
    """{order tuple of names: Fraction} for one priority group [(name, w)]:
    positive weights next with w / S, then the weight-0 ones uniformly."""
    pos = [x for x in group if x[1] > 0]
    zero = [x for x in group if x[1] == 0]
    if not pos:
        if not zero:
            return {(): Fraction(1)}
        return {p: Fraction(1, math.factorial(len(zero)))
                for p in itertools.permutations(n for n, _ in zero)}
    total = sum(w for _, w in pos)
    out = Counter()
    for j, (name, w) in enumerate(pos):
        rest = pos[:j] + pos[j + 1:] + zero
        for tail, p in exact_group_orders(rest).items():
            out[(name,) + tail] += Fraction(w, total) * p
    return dict(out)


def exact_orders(targets):
    """targets: [(name, weight, priority)] usable ones -> {full order: Fraction}."""
    by_prio = {}
    for name, w, prio in targets:
        by_prio.setdefault(prio, []).append((name, w))
    result = {(): Fraction(1)}
    for prio in sorted(by_prio):
        group = exact_group_orders(by_prio[prio])
        result = {a + b: pa * pb for a, pa in result.items() for b, pb in group.items()}
    return result


def exact_first(targets):
    """First-place probabilities without enumerating orders (any size)."""
    if not targets:
        return {}
    low = min(p for _, _, p in targets)
    group = [(n, w) for n, w, p in targets if p == low]
    total = sum(w for _, w in group)
    if total:
        return {n: Fraction(w, total) for n, w in group}
    return {n: Fraction(1, len(group)) for n, _ in group}


def test_exact_reference_on_hand_examples():
    assert exact_group_orders([("A", 1), ("B", 3)]) == {("A", "B"): Fraction(1, 4),
                                                         ("B", "A"): Fraction(3, 4)}
    # weight 0 never first while a positive weight is usable
    assert exact_group_orders([("Z", 0), ("A", 2)]) == {("A", "Z"): Fraction(1)}
    assert exact_group_orders([("Y", 0), ("Z", 0)]) == {("Y", "Z"): Fraction(1, 2),
                                                         ("Z", "Y"): Fraction(1, 2)}
    assert sum(exact_orders([("A", 1, 1), ("B", 2, 1), ("C", 0, 2)]).values()) == 1
    assert exact_first([("a", 60, 10), ("b", 20, 10), ("c", 20, 10)]) == {
        "a": Fraction(3, 5), "b": Fraction(1, 5), "c": Fraction(1, 5)}


# ------------------------------------------------------------------ scenarios
def equal(n, w):
    return ([(f"e{i}", 1, w) for i in range(n)], [], [])


SCENARIOS = {
    # name: ([(name, priority, weight)], names marked out, names drained)
    "twilio_60_20_20": ([("a", 10, 60), ("b", 10, 20), ("c", 10, 20)], [], []),
    "twilio_60_out": ([("a", 10, 60), ("b", 10, 20), ("c", 10, 20)], ["a"], []),
    "twilio_60_drained": ([("a", 10, 60), ("b", 10, 20), ("c", 10, 20)], [], ["a"]),
    "equal_2x1": equal(2, 1),
    "equal_2x20": equal(2, 20),
    "equal_3x1": equal(3, 1),
    "equal_3x20": equal(3, 20),
    "equal_4x10": equal(4, 10),
    "weight_zero_with_peers": ([("a", 5, 3), ("z1", 5, 0), ("b", 5, 6), ("z2", 5, 0)], [], []),
    "weight_zero_alone": ([("a", 5, 0), ("b", 5, 0), ("c", 5, 0)], [], []),
    "weight_zero_peers_out": ([("a", 5, 3), ("z1", 5, 0), ("z2", 5, 0)], ["a"], []),
    "one_target": ([("a", 7, 5)], [], []),
    "priorities": ([("a", 20, 1), ("b", 10, 3), ("c", 10, 1), ("d", 20, 0), ("e", 20, 2)], [], []),
    "out_and_drained_mixed": ([("a", 10, 5), ("b", 10, 5), ("c", 20, 1), ("d", 20, 4)],
                              ["b"], ["c"]),
    "whole_priority_out": ([("a", 10, 5), ("b", 10, 5), ("c", 20, 1), ("d", 20, 4)],
                           ["a"], ["b"]),
}
#: first place only (10! full orders are too many to enumerate)
BIG = {"equal_10x1": equal(10, 1), "equal_10x20": equal(10, 20),
       "mixed_10": ([(f"m{i}", 1, 1 + 7 * i) for i in range(10)], ["m3"], ["m9"])}


def build(impl, spec, out, drained, seed):
    core_mod = impl("select")
    names = [n for n, _, _ in spec]
    table = HealthTable.private(len(spec), cooldown=1e9)
    core = core_mod.Core(names, [p for _, p, _ in spec], [w for _, _, w in spec],
                         [True] * len(spec), list(range(len(spec))), table, seed=seed,
                         clock=lambda: 0.0)
    for n in out:
        core.mark_failed(names.index(n))
    for n in drained:
        core.set_drained(names.index(n), True)
    return core


def usable_of(spec, out, drained):
    return [(n, w, p) for n, p, w in spec if n not in out and n not in drained]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_order_distribution_is_exact(impl, scenario):
    spec, out, drained = SCENARIOS[scenario]
    core = build(impl, spec, out, drained, seed=2782 + len(scenario))
    usable = usable_of(spec, out, drained)
    exact = exact_orders(usable)
    orders = Counter(tuple(core.order()) for _ in range(N))
    chi_square_check(orders, exact, N, f"{scenario}: full orders")
    for pos in range(len(usable)):
        exp_pos, obs_pos = Counter(), Counter()
        for o, p in exact.items():
            exp_pos[o[pos]] += p
        for o, c in orders.items():
            obs_pos[o[pos]] += c
        chi_square_check(obs_pos, exp_pos, N, f"{scenario}: position {pos}")


@pytest.mark.parametrize("scenario", sorted(SCENARIOS) + sorted(BIG))
def test_pick_share_is_exact_first_place(impl, scenario):
    spec, out, drained = SCENARIOS.get(scenario) or BIG[scenario]
    core = build(impl, spec, out, drained, seed=99 + len(scenario))
    first = exact_first(usable_of(spec, out, drained))
    picks = Counter(core.pick() for _ in range(N))
    chi_square_check(picks, first, N, f"{scenario}: pick()")


@pytest.mark.parametrize("scenario", ["twilio_60_20_20", "twilio_60_out", "priorities",
                                      "weight_zero_with_peers", "equal_3x20"])
def test_keyed_order_has_the_same_distribution_over_keys(impl, scenario):
    """order(key=) over many keys: the same exact distribution of whole orders
    as the unkeyed draws (weighted rendezvous = sampling without replacement)."""
    spec, out, drained = SCENARIOS[scenario]
    core = build(impl, spec, out, drained, seed=0)
    exact = exact_orders(usable_of(spec, out, drained))
    # weight-0 tails are ordered by hash, uniformly over keys, as documented
    orders = Counter(tuple(core.order(f"{i:x}@call.example.com")) for i in range(N))
    chi_square_check(orders, exact, N, f"{scenario}: keyed orders")
    firsts = Counter(core.pick(f"{i:x}@call.example.com") for i in range(N))
    chi_square_check(firsts, exact_first(usable_of(spec, out, drained)), N,
                     f"{scenario}: keyed pick")


def test_60_20_20_with_the_60_out_is_exactly_even(impl):
    spec, out, drained = SCENARIOS["twilio_60_out"]
    core = build(impl, spec, out, drained, seed=3)
    picks = Counter(core.pick() for _ in range(N))
    assert set(picks) == {"b", "c"}
    chi_square_check(picks, {"b": Fraction(1, 2), "c": Fraction(1, 2)}, N, "60 out")


def test_large_group_first_place(impl):
    # 48 targets in one priority (> 32: the Fenwick path in order()), weights 0..47
    spec = [(f"t{i}", 1, i) for i in range(48)]
    core = build(impl, spec, [], [], seed=5)
    exact = exact_first([(n, w, p) for n, p, w in spec])
    assert exact["t0"] == 0
    n = scaled(20_000, floor=4000)
    orders = [core.order() for _ in range(n)]
    chi_square_check(Counter(o[0] for o in orders), exact, n, "48 targets: first place")
    assert all(o[-1] == "t0" for o in orders)  # the only weight 0 comes last


def test_expected_shares_are_the_exact_first_place(impl, monkeypatch):
    from sipedge import select

    monkeypatch.setattr(select, "_core", impl("select"))
    for scenario, (spec, out, drained) in {**SCENARIOS, **BIG}.items():
        ts = select.TargetSet([select.Target(f"sip:{n}.example.com", p, w) for n, p, w in spec],
                              seed=1, cooldown=1e9)
        for n in out:
            ts.mark_failed(f"sip:{n}.example.com")
        for n in drained:
            ts.drain(f"sip:{n}.example.com")
        first = exact_first(usable_of(spec, out, drained))
        got = {t.uri.host.split(".")[0]: s for t, s in ts.expected_shares().items()}
        for name, _, _ in spec:
            assert got[name] == float(first.get(name, 0)), scenario


def test_all_permutations_reachable_with_equal_weights(impl):
    spec, _, _ = SCENARIOS["equal_4x10"]
    core = build(impl, spec, [], [], seed=11)
    seen = {tuple(core.order()) for _ in range(4000)}
    assert seen == set(itertools.permutations([n for n, _, _ in spec]))


def test_rfc_inclusive_draw_would_be_caught():
    """The checker rejects the RFC 2782 prose's inclusive draw r in [0, S]
    (first-listed favoured by 1/(S+1)): 20/20 at 51.2/48.8 with 4 x N_FULL draws (the
    full size whatever SIPEDGE_TEST_SCALE says: this is the check's power at that size)."""
    rng = Rng(1)
    inclusive = Counter("a" if rng.uniform(40) <= 20 else "b" for _ in range(4 * N_FULL))
    with pytest.raises(AssertionError, match="chi-square"):
        chi_square_check(inclusive, {"a": Fraction(1, 2), "b": Fraction(1, 2)}, 4 * N_FULL, "inclusive")


def test_checker_rejects_wrong_distributions():
    rng = Rng(1)
    wrong = Counter("abc"[rng.uniform(2)] for _ in range(N))
    with pytest.raises(AssertionError, match="chi-square"):
        chi_square_check(wrong, {"a": Fraction(3, 5), "b": Fraction(1, 5), "c": Fraction(1, 5)},
                         N, "uniform")
    with pytest.raises(AssertionError, match="probability 0"):
        chi_square_check(Counter({"x": 1, "a": N - 1}), {"a": Fraction(1)}, N, "impossible")
