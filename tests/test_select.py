"""TargetSet: construction, draws exactly as documented (Twilio's shares),
health, drain, DR result, sticky/keyed choice, failover rules, termination
order; native and pure Python."""
from collections import Counter

import pytest

from sipedge import _impl, select
from sipedge._py.rng import Rng, hash_bytes
from sipedge.errors import DisasterRecovery, InputError, SelectionError, URIError
from sipedge.select import (NO_ANSWER_TIMEOUT, Target, TargetSet, counts_against_health,
                            should_failover, termination_order)


class Clock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


@pytest.fixture
def make(impl, monkeypatch):
    """make(targets, **kw) -> TargetSet over the implementation under test."""
    monkeypatch.setattr(select, "_core", impl("select"))

    def factory(targets, **kw):
        kw.setdefault("seed", 1)
        return TargetSet([t if isinstance(t, Target) else Target(*t) for t in targets], **kw)

    factory.impl = impl.name
    return factory


A, B, C, D = (f"sip:sbc{i}.example.com" for i in range(1, 5))
TWILIO = [(A, 10, 60), (B, 10, 20), (C, 10, 20)]


def uris(targets):
    return [str(t) for t in targets]


# ---------------------------------------------------------------- construction
def test_target_fields_and_validation():
    t = Target("sip:SBC1.example.com;region=ie1", 10, 60)
    assert (str(t), t.priority, t.weight, t.enabled) == ("sip:sbc1.example.com;edge=dublin", 10, 60, True)
    assert repr(Target(A, 1, 2, enabled=False)) == f"Target('{A}', priority=1, weight=2, enabled=False)"
    assert Target(A, 0, 0).weight == 0 and Target(A, 65535, 65535).priority == 65535
    assert Target(A, "7", " 8").weight == 8
    for bad in ({"priority": -1}, {"priority": 65536}, {"weight": 70000}, {"weight": -2},
                {"weight": 1.5}, {"priority": True}, {"weight": "ten"}):
        kw = {"priority": 10, "weight": 10, **bad}
        with pytest.raises(InputError, match="0-65535"):
            Target(A, kw["priority"], kw["weight"])
    with pytest.raises(URIError):
        Target("sip:sbc.example.com;edge=mars", 1, 1)


def test_targetset_refuses_bad_input(make):
    with pytest.raises(InputError, match="listed twice"):
        make([(A, 10, 1), ("SIP:SBC1.EXAMPLE.COM", 20, 1)])
    with pytest.raises(InputError, match="not a sipedge.Target"):
        TargetSet(["sip:x.example.com"])
    with pytest.raises(URIError, match="disaster-recovery"):
        make(TWILIO, dr_url="ftp://x")
    with pytest.raises(InputError, match="seed"):
        make(TWILIO, seed=-1)
    with pytest.raises(InputError, match="fail_threshold"):
        make(TWILIO, fail_threshold=0)
    with pytest.raises(InputError, match="cooldown"):
        make(TWILIO, cooldown=-1)
    ts = make(TWILIO)
    with pytest.raises(InputError, match="not in this target set"):
        ts.mark_failed(D)


def test_from_twilio_records(make):
    class Rec:  # as the twilio helper library's OriginationUrlInstance
        def __init__(self, **kw):
            self.__dict__.update(kw)

    recs = [{"sip_url": A, "priority": 10, "weight": 60, "enabled": True, "friendly_name": "x"},
            Rec(sip_url=B, priority=10, weight=20, enabled="false"),
            {"sip_url": C, "priority": "20", "weight": "10", "enabled": "True"}]
    ts = TargetSet.from_twilio(recs, seed=1)
    assert [(str(t), t.priority, t.weight, t.enabled) for t in ts] == [
        (A, 10, 60, True), (B, 10, 20, False), (C, 20, 10, True)]
    assert ts.state(B) == "disabled"
    assert all(str(x) != B for _ in range(200) for x in ts.order())
    with pytest.raises(InputError, match="no 'weight'"):
        TargetSet.from_twilio([{"sip_url": A, "priority": 1, "enabled": True}])
    with pytest.raises(InputError, match="not true or false"):
        TargetSet.from_twilio([{"sip_url": A, "priority": 1, "weight": 1, "enabled": "maybe"}])


def test_any_number_of_targets(make):
    big = [(f"sip:h{i}.example.com", i % 3, i % 7) for i in range(10_000)]
    ts = make(big)
    o = ts.order()
    assert len(o) == 10_000 and len(set(o)) == 10_000
    assert [t.priority for t in o] == sorted(t.priority for t in o)


# -------------------------------------------------- draws exactly as documented
def reference_order(targets, seed, rounds):
    """The documented algorithm (csrc/select.h) written plainly over the
    documented RNG: positive weights by an exact draw in [0, S), then the
    weight-0 ones in a uniformly random order."""
    rng = Rng(seed)
    res = []
    for _ in range(rounds):
        out = []
        for prio in sorted({p for _, p, _ in targets}):
            group = [(n, w) for n, p, w in targets if p == prio]
            pos = [x for x in group if x[1] > 0]
            zero = [x for x in group if x[1] == 0]
            while pos:
                if len(pos) == 1:
                    out.append(pos.pop()[0])
                    break
                r = rng.uniform(sum(w for _, w in pos) - 1)
                run = 0
                for j, (_, w) in enumerate(pos):
                    run += w
                    if run > r:
                        break
                out.append(pos.pop(j)[0])
            while zero:
                j = rng.uniform(len(zero) - 1) if len(zero) > 1 else 0
                out.append(zero.pop(j)[0])
        res.append(out)
    return res


@pytest.mark.parametrize("n", [1, 2, 4, 10, 33, 100, 1000])
def test_order_equals_plain_algorithm(make, n):
    targets = [(f"sip:h{i}.example.com", (i * 7) % 3, (i * 13) % 5 * (i % 4)) for i in range(n)]
    ts = make(targets, seed=77)
    got = [uris(ts.order()) for _ in range(5)]
    assert got == reference_order(targets, 77, 5)


def test_pick_is_first_step_of_order(make):
    # pick() makes exactly the first draw of order(): one uniform in [0, 100)
    ts2 = make(TWILIO + [(D, 20, 5)], seed=9)
    firsts = [str(ts2.pick()) for _ in range(300)]
    rng = Rng(9)
    expect = []
    for _ in range(300):
        r = rng.uniform(99)
        expect.append(A if r < 60 else (B if r < 80 else C))
    assert firsts == expect


def test_same_seed_same_results_different_seed_differs(make):
    a, b, c = make(TWILIO, seed=5), make(TWILIO, seed=5), make(TWILIO, seed=6)
    sa = [uris(a.order()) for _ in range(50)]
    assert sa == [uris(b.order()) for _ in range(50)]
    assert sa != [uris(c.order()) for _ in range(50)]


# ---------------------------------------------------------------------- health
def test_thresholds_and_cooldown(make):
    clock = Clock()
    ts = make(TWILIO, fail_threshold=3, ok_threshold=2, cooldown=30, clock=clock)
    assert ts.mark_failed(A) is False and ts.mark_failed(A) is False
    assert ts.state(A) == "up"
    ts.mark_ok(A)  # a success resets the failure run
    assert [ts.mark_failed(A) for _ in range(3)] == [False, False, True]
    assert ts.state(A) == "out"
    assert all(str(t) != A for _ in range(100) for t in ts.order())
    clock.t += 29.9
    assert ts.state(A) == "out"
    clock.t += 0.2
    assert ts.state(A) == "probing"
    assert any(str(t) == A for _ in range(50) for t in ts.order()[:1])
    assert A in uris(ts.order())  # probing targets are offered again
    ts.mark_failed(A)  # a failed probe restarts the cool-down
    assert ts.state(A) == "out"
    clock.t += 31
    assert ts.mark_ok(A) is False and ts.state(A) == "probing"
    assert ts.mark_ok(A) is True and ts.state(A) == "up"
    assert ts.counters(A) == (6, 3)


def test_ok_during_cooldown_counts_as_probe(make):
    clock = Clock()
    ts = make(TWILIO, ok_threshold=1, cooldown=1000, clock=clock)
    ts.mark_failed(B)
    assert ts.state(B) == "out"
    assert ts.mark_ok(B) is True  # e.g. an OPTIONS ping answered
    assert ts.state(B) == "up"


def test_out_weight_shared_in_same_priority_only(make):
    ts = make(TWILIO + [(D, 20, 100)], cooldown=1e9)
    ts.mark_failed(A)
    shares = {str(t): s for t, s in ts.expected_shares().items()}
    assert shares[A] == 0 and shares[D] == 0
    assert shares[B] == 0.5 and shares[C] == 0.5
    firsts = Counter(str(ts.pick()) for _ in range(4000))
    assert set(firsts) == {B, C}
    assert uris(ts.order())[-1] == D


def test_every_target_out_raises_disaster_recovery_else_selection_error(make):
    ts = make(TWILIO, dr_url="https://example.com/dr", cooldown=1e9)
    for u in (A, B, C):
        ts.mark_failed(u)
    for call in (ts.pick, lambda: ts.pick(key="call-1"), ts.order, lambda: ts.order(key="k"),
                 lambda: ts.pick(exclude="0")):
        with pytest.raises(DisasterRecovery, match="disaster-recovery URL https://example.com/dr") as e:
            call()
        assert e.value.url == "https://example.com/dr" and e.value.exit_code == 6
        assert isinstance(e.value, SelectionError)
    ts2 = make(TWILIO, cooldown=1e9)
    for u in (A, B, C):
        ts2.mark_failed(u)
    with pytest.raises(SelectionError, match="no disaster-recovery URL") as e:
        ts2.pick()
    assert e.value.exit_code == 6
    with pytest.raises(SelectionError):
        ts2.order()
    with pytest.raises(SelectionError):
        ts2.pick(key="k")
    ts2.mark_ok(B)
    assert uris(ts2.order()) == [B]


def test_disabled_and_empty(make):
    ts = make([Target(A, 1, 10, enabled=False), Target(B, 2, 0)])
    assert {str(ts.pick()) for _ in range(50)} == {B}
    assert [t for t in ts.usable()] == [Target(B, 2, 0)]
    with pytest.raises(SelectionError):
        make([]).pick()
    with pytest.raises(DisasterRecovery) as e:
        make([], dr_url="http://dr.example.com/x").pick()
    assert e.value.url == "http://dr.example.com/x"


def test_status_rows(make):
    ts = make(TWILIO)
    ts.mark_failed(C)
    rows = ts.status()
    assert [r["state"] for r in rows] == ["up", "up", "out"]
    assert rows[2] == {"uri": C, "destination": "sip:sbc3.example.com:5060;transport=udp",
                       "priority": 10, "weight": 20, "enabled": True, "state": "out",
                       "drained": False, "failures": 1, "successes": 0, "cps": None, "burst": 1}
    ts.drain(B)
    assert [r["state"] for r in ts.status()] == ["up", "drained", "out"]
    assert ts.status()[1]["drained"] is True


# ---------------------------------------------------------------------- sticky
KEYS = [f"{i:08x}-call@192.0.2.{i % 250}" for i in range(6000)]


def test_sticky_same_key_same_target(make):
    ts = make(TWILIO + [(D, 20, 5)])
    first = {k: ts.pick(key=k) for k in KEYS[:500]}
    assert all(ts.pick(key=k) == t for k, t in first.items())
    assert all(t.priority == 10 for t in first.values())
    # independent of the seed and of the order the targets were given in
    other = make(list(reversed(TWILIO)) + [(D, 20, 5)], seed=12345)
    assert all(other.pick(key=k) == t for k, t in first.items())
    assert ts.pick(key=b"abc") == ts.pick(key="abc")
    assert ts.pick(key=42) == ts.pick(key="42")
    with pytest.raises(TypeError):
        ts.pick(key=1.5)


def test_sticky_moves_only_keys_of_failed_target(make):
    ts = make(TWILIO, cooldown=1e9)
    before = {k: str(ts.pick(key=k)) for k in KEYS}
    ts.mark_failed(B)
    after = {k: str(ts.pick(key=k)) for k in KEYS}
    moved = {k for k in KEYS if before[k] != after[k]}
    assert moved == {k for k in KEYS if before[k] == B}
    assert all(after[k] in (A, C) for k in moved)
    ts.mark_ok(B)
    assert {k: str(ts.pick(key=k)) for k in KEYS} == before


def test_sticky_shares_follow_weights(make):
    from test_select_stats import chi_square_check
    from fractions import Fraction

    ts = make(TWILIO)
    counts = Counter(str(ts.pick(key=k)) for k in KEYS)
    chi_square_check(counts, {A: Fraction(6, 10), B: Fraction(2, 10), C: Fraction(2, 10)},
                     len(KEYS), "sticky 60/20/20")
    assert {str(t): s for t, s in ts.sticky_shares().items()} == {A: 0.6, B: 0.2, C: 0.2}


def test_sticky_falls_to_next_priority_and_weight_zero(make):
    ts = make([(A, 1, 10), (B, 2, 0), (C, 2, 0)], cooldown=1e9)
    ts.mark_failed(A)
    got = Counter(str(ts.pick(key=k)) for k in KEYS[:2000])
    assert set(got) == {B, C} and min(got.values()) > 800
    ts2 = make([(A, 1, 0), (B, 1, 5)])
    assert {str(ts2.pick(key=k)) for k in KEYS[:500]} == {B}


# -------------------------------------------------------------- failover rules
@pytest.mark.parametrize("code", [200, 202, 299, 400, 404, 405, 410, 416, 482, 484, 486,
                                  600, 603, 604, 606, 699])
def test_no_failover(code):
    assert should_failover(code) is False


@pytest.mark.parametrize("code", [None, "timeout", " TIMEOUT ", 300, 302, 401, 403, 407,
                                  408, 480, 481, 483, 487, 488, 500, 502, 503, 504, 599, "503"])
def test_failover(code):
    assert should_failover(code) is True


@pytest.mark.parametrize("bad,words", [(100, "provisional"), (183, "provisional"),
                                       (99, "100-699"), (700, "100-699"), ("busy", "timeout"),
                                       (True, "number")])
def test_failover_bad_status(bad, words):
    with pytest.raises(InputError, match=words):
        should_failover(bad)


def test_no_answer_timeout_is_four_seconds():
    assert NO_ANSWER_TIMEOUT == 4.0


# --------------------------------------------------------------- termination
def test_termination_order_over_edges_and_addresses():
    resolved = {
        "t.pstn.ashburn.twilio.com": ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.1"],
        "t.pstn.umatilla.twilio.com": ["198.51.100.1", "2001:db8::1"],
    }
    got = termination_order("t", ["ashburn", "umatilla", "dublin"], resolved)
    assert [(a.edge, a.address) for a in got] == [
        ("ashburn", "192.0.2.1"), ("ashburn", "192.0.2.2"), ("ashburn", "192.0.2.3"),
        ("umatilla", "198.51.100.1"), ("umatilla", "2001:db8::1")]
    assert all(a.timeout == 4.0 for a in got)
    plain = termination_order("t", [None, "us2"])
    assert [(a.edge, a.host, a.address) for a in plain] == [
        (None, "t.pstn.twilio.com", None), ("umatilla", "t.pstn.umatilla.twilio.com", None)]
    with pytest.raises(SelectionError, match="resolve"):
        termination_order("t", ["dublin"], resolved)
    with pytest.raises(InputError, match="not an IP"):
        termination_order("t", ["ashburn"], {"t.pstn.ashburn.twilio.com": ["nope"]})


# ---------------------------------------------------------- rng and hash twin
def test_rng_matches_documented_generator(impl):
    mod = impl("select")
    r = mod.Rng(0)
    # xoshiro256** seeded by splitmix64(0): first outputs, computed by the twin
    ref = Rng(0)
    assert [r.next() for _ in range(5)] == [ref.next() for _ in range(5)]
    assert r.uniform(0) == 0 and r.state() == ref.state()  # n == 0 draws nothing
    counts = Counter(r.uniform(2) for _ in range(30000))
    assert set(counts) == {0, 1, 2} and min(counts.values()) > 9000
    assert mod.hash_bytes(b"") == hash_bytes(b"")
    assert mod.hash_key("abc") == hash_bytes(b"abc")


def test_native_select_loaded():
    if _impl.NO_EXTENSIONS:
        assert _impl.load("select").__name__ == "sipedge._py.select"
    else:
        assert _impl.load("select").__name__ == "sipedge._select"
        assert select._core.__name__ == "sipedge._select"


@pytest.mark.parametrize("text, want", [("false", False), (" FALSE ", False), ("true", True),
                                        (False, False), (True, True), (0, False), (1, True)])
def test_target_enabled_text_is_parsed_not_truth_tested(text, want):
    """Target(..., enabled="false") is a disabled target (bool("false") is True),
    the same reading as TargetSet.from_twilio."""
    assert Target(A, 1, 1, enabled=text).enabled is want


@pytest.mark.parametrize("bad", ["maybe", "", None, 2, 0.5, [True]])
def test_target_enabled_refuses_what_is_not_a_boolean(bad):
    with pytest.raises(InputError, match="enabled=.* is not true or false"):
        Target(A, 1, 1, enabled=bad)


def test_termination_order_takes_a_single_string_as_one_item():
    """A str is a sequence of characters: one edge name or one resolved
    address given as a bare str means that one item, not its letters."""
    host = "t.pstn.ashburn.twilio.com"
    got = termination_order("t", "ashburn", {host: "192.0.2.1"})
    assert [(a.edge, a.host, a.address) for a in got] == [("ashburn", host, "192.0.2.1")]
    assert got == termination_order("t", ["ashburn"], {host: ["192.0.2.1"]})


@pytest.mark.parametrize("key", ["call-\udc80\udcff@host", "\ud800", "abc\udfff"])
def test_sticky_key_with_lone_surrogates(make, key):
    """A Call-ID decoded with errors='surrogateescape' still picks a target
    (hashed as UTF-8 with surrogates passed through), the same in both."""
    ts = make(TWILIO)
    want = hash_bytes(key.encode("utf-8", "surrogatepass"))
    assert select._core.hash_key(key) == want
    assert str(ts.pick(key=key)) == str(ts.pick(key=key)) in (A, B, C)


def test_empty_set_message_says_it_is_empty(make):
    """An empty set has nothing 'out of service': the message says what to do."""
    with pytest.raises(SelectionError, match="no targets.*add targets or set dr_url="):
        make([]).pick()
    with pytest.raises(SelectionError, match="no targets"):
        make([]).order()


def test_same_destination_spelled_twice_is_refused(make):
    """Two spellings of one destination (default port or transport written
    out) would split one SBC's share in two: refused like an exact repeat."""
    for other in ("sip:SBC1.example.com:5060", "sip:sbc1.example.com;transport=udp",
                  "sip:sbc1.example.com:5060;transport=UDP"):
        with pytest.raises(InputError, match="listed twice"):
            make([(A, 10, 10), (other, 10, 10)])
    # a different port, transport or edge is another destination
    ts = make([(A, 10, 10), (A + ":5080", 10, 10), (A + ";transport=tcp", 10, 10),
               (A + ";edge=dublin", 10, 10)])
    assert len(ts) == 4


def test_targets_found_by_any_spelling(make):
    ts = make(TWILIO)
    assert ts.index("sip:sbc1.example.com:5060;transport=udp") == 0
    assert ts.mark_failed("sip:SBC1.example.com:5060") is True
    assert ts.state(A) == "out"


@pytest.mark.parametrize("text", ["1_0", "١٠", "+10", "0x10", "10.0"])
def test_numbers_as_text_are_plain_decimal(text):
    """Priority, weight and SIP status given as text are ASCII decimal digits:
    int() alone would also take '1_0' (10) or Arabic-Indic digits."""
    with pytest.raises(InputError, match="not an integer"):
        Target(A, text, 10)
    with pytest.raises(InputError, match="not an integer"):
        Target(A, 10, text)


@pytest.mark.parametrize("text", ["4_86", "٤٨٦", "+486", "0x1e6", "486.0"])
def test_sip_status_text_is_plain_decimal(text):
    with pytest.raises(InputError, match="not a number"):
        should_failover(text)


def test_numbers_as_text_still_accepted():
    assert (Target(A, " 10 ", "20").priority, Target(A, " 10 ", "20").weight) == (10, 20)
    assert should_failover(" 486 ") is False and should_failover("503") is True


# ------------------------------------------------ what an SBC needs from a target
def test_destination_is_separate_from_the_request_uri():
    t = Target("sip:sbc1.example.com;edge=dublin", 10, 60)
    assert str(t) == "sip:sbc1.example.com;edge=dublin"  # identity, as Twilio lists it
    assert t.destination == "sip:sbc1.example.com:5060;transport=udp"
    assert t.request_uri == "sip:sbc1.example.com"  # no ;edge=: not a SIP parameter
    r = Target("sips:+15551234567@pstn.example.com:5081", 1, 1, address="192.0.2.7")
    assert r.destination == "sip:192.0.2.7:5081;transport=tls"
    assert r.request_uri == "sips:+15551234567@pstn.example.com:5081"  # keeps the name
    assert Target("sip:[2001:db8::5];transport=tcp", 1, 1).destination == \
        "sip:[2001:db8::5]:5060;transport=tcp"
    with pytest.raises(InputError, match="not an IP address"):
        Target(A, 1, 1, address="sbc.example.com")


def test_ordinary_sip_uri_parameters_are_accepted_for_targets():
    t = Target("sip:proxy.example.net;lr;maddr=198.51.100.4;user=phone;transport=tcp", 1, 1)
    assert t.uri.param("lr") == "" and t.uri.param("user") == "phone"
    assert t.destination == "sip:198.51.100.4:5060;transport=tcp"  # maddr wins
    assert str(t) == "sip:proxy.example.net;transport=tcp;lr;maddr=198.51.100.4;user=phone"
    assert t.request_uri == str(t)
    with pytest.raises(URIError, match="twice"):
        Target("sip:a.example.com;lr;lr", 1, 1)
    with pytest.raises(URIError):
        Target("sip:a.example.com;ma ddr=1", 1, 1)
    # Twilio's origination records keep the strict Twilio check
    with pytest.raises(URIError, match="unsupported parameter ;lr"):
        TargetSet.from_twilio([{"sip_url": "sip:a.example.com;lr", "priority": 1, "weight": 1,
                                "enabled": True}])


def test_lookups_by_uri_destination_and_source(make):
    ts = make([("sip:sbc1.example.com", 10, 1), ("sip:192.0.2.10:5080", 10, 1),
               Target("sip:sbc3.example.com;transport=tcp", 10, 1, address="198.51.100.3"),
               ("sip:p.example.net;maddr=203.0.113.9", 20, 1)])
    t1, t2, t3, t4 = ts.targets
    assert ts.index(t3) == 2 and ts.index(2) == 2 and ts.index("sip:sbc1.example.com") == 0
    assert ts.index("sip:SBC1.example.com:5060") == 0  # another spelling: parsed once, then cached
    assert "sip:SBC1.example.com:5060" in ts._by_text
    assert ts.by_destination("sip:192.0.2.10:5080;transport=udp") is t2
    assert ts.by_destination(t3.destination) is t3 and ts.by_destination("sip:x:1") is None
    assert ts.by_source("192.0.2.10") is t2 and ts.by_source("192.0.2.10", 5080) is t2
    assert ts.by_source("192.0.2.10", 5060) is None
    assert ts.by_source("198.51.100.3") is t3 and ts.by_source("203.0.113.9") is t4
    assert ts.by_source("192.0.2.99") is None and ts.by_source("not an ip") is None
    assert ts.get("sip:192.0.2.10:5080") is t2
    with pytest.raises(InputError, match="out of range"):
        ts.index(9)


@pytest.mark.parametrize("code,want", [(None, True), ("timeout", True), (408, True), (500, True),
                                       (503, True), ("503", True), (504, True), (580, False),
                                       (486, False), (404, False), (403, False), (480, False),
                                       (487, False), (200, False), (302, False), (603, False)])
def test_counts_against_health(code, want):
    assert counts_against_health(code) is want


def test_counts_against_health_refuses_what_is_not_a_final_status():
    for bad in (100, 183, 700, "busy", True):
        with pytest.raises(InputError):
            counts_against_health(bad)


# --------------------------------------------------- exclude, drain, trial, rate
def test_exclude_carried_as_a_short_string(make):
    ts = make(TWILIO + [(D, 20, 5)])
    assert ts.tried(A, "sip:sbc3.example.com", A) == "0,2"
    seen = set()
    for k in KEYS[:300]:
        order = ts.order(key=k)
        assert str(ts.pick(key=k)) == str(order[0])
        assert ts.pick(key=k, exclude=ts.tried(order[0])) == order[1]
        assert ts.pick(key=k, exclude=[order[0], 1 if order[1] is not ts.targets[1] else 0]) in ts
        assert ts.pick(key=k, exclude=ts.tried(*order[:3])) == order[3] == ts.targets[3]
        seen.add(str(order[0]))
    assert seen == {A, B, C}
    assert ts.pick(exclude="0,1,2") == ts.targets[3]  # unkeyed too
    with pytest.raises(SelectionError):
        ts.pick(exclude="0,1,2,3")
    for bad in ("0,x", "9", "-1", "0;1"):
        with pytest.raises(InputError, match="exclude"):
            ts.pick(exclude=bad)
    with pytest.raises(InputError, match="not a target of this set"):
        ts.pick(exclude=[Target("sip:other.example.com", 1, 1)])


def test_drain_moves_only_the_drained_targets_keys(make):
    ts = make(TWILIO)
    before = {k: str(ts.pick(key=k)) for k in KEYS[:3000]}
    assert ts.drain(B) is True and ts.drain(B) is False
    assert ts.state(B) == "drained"
    after = {k: str(ts.pick(key=k)) for k in KEYS[:3000]}
    moved = {k for k in before if before[k] != after[k]}
    assert moved == {k for k in before if before[k] == B} and moved
    assert all(str(t) != B for _ in range(300) for t in ts.order())
    ts.mark_failed(B)  # a call in progress on the drained target still reports
    assert ts.counters(B) == (1, 0) and ts.state(B) == "drained"
    assert ts.undrain(B) is True and ts.state(B) == "out"


def test_out_target_gets_a_single_trial_call_after_its_cooldown(make):
    clock = Clock()
    ts = make(TWILIO, cooldown=30, clock=clock)
    ts.mark_failed(A)
    assert all(str(ts.pick()) != A for _ in range(200))
    clock.t += 30
    assert ts.state(A) == "probing"
    got = [str(ts.pick()) for _ in range(500)]
    assert got.count(A) == 1  # one trial; every other pick (in any process) skips it
    assert ts.state(A) == "out"  # the trial restarted the cool-down
    clock.t += 30
    assert ts.mark_ok(A) is True and ts.state(A) == "up"


def test_rate_limit_passes_over_and_then_raises_with_the_wait(make):
    from sipedge.errors import RateLimited

    clock = Clock(50.0)
    ts = make([Target(A, 10, 1, cps=2), Target(B, 10, 1, cps=1, burst=2), (C, 20, 1)],
              clock=clock)
    got = Counter(str(ts.pick()) for _ in range(3))
    # A: burst 1 -> one call now; B: burst 2 -> two; then the lower priority C
    assert got == Counter({A: 1, B: 2})
    assert str(ts.pick()) == C  # both priority-10 targets at their limit: next in order
    ts2 = make([Target(A, 10, 1, cps=2), Target(B, 10, 1, cps=4)], clock=clock)
    ts2.pick(), ts2.pick()
    with pytest.raises(RateLimited) as e:
        ts2.pick()
    assert e.value.wait == pytest.approx(0.25) and e.value.exit_code == 6  # B frees first
    clock.t += 0.25
    assert str(ts2.pick()) == B
    clock.t += 0.25
    assert {str(ts2.pick()), str(ts2.pick())} == {A, B}
    with pytest.raises(InputError, match="cps"):
        Target(A, 1, 1, cps=0)
    with pytest.raises(InputError, match="burst"):
        Target(A, 1, 1, cps=5, burst=0)


def test_target_pickles_into_another_process():
    """A Target sent to a worker (multiprocessing spawn) is rebuilt there:
    its cached hash is the receiving process's, so set lookups keep working."""
    import pickle
    import subprocess
    import sys

    t = Target("sip:sbc1.example.com;lr", 10, 60, cps=30, burst=2, address="192.0.2.1")
    assert pickle.loads(pickle.dumps(t)) == t
    code = ("import pickle, sys\n"
            "from sipedge.select import Target, TargetSet\n"
            "t = pickle.loads(sys.stdin.buffer.read())\n"
            "ts = TargetSet([Target('sip:sbc1.example.com;lr', 10, 60, cps=30, burst=2, "
            "address='192.0.2.1')])\n"
            "print(ts.index(t), hash(t) == hash(ts.targets[0]), repr(t))\n")
    r = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(t), capture_output=True,
                       timeout=60, env={**__import__("os").environ, "PYTHONHASHSEED": "random"})
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode().split(" ", 2)[:2] == ["0", "True"]
