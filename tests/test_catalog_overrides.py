"""Webhook connection overrides: build, parse, exact round trips, every range."""
import pytest
from hypothesis import given, strategies as st

from sipedge.twilio import catalog
from sipedge.errors import OverrideError
from sipedge.twilio.overrides import DEFAULTS, Overrides, RETRY_POLICIES, build, egress_edges, parse

URL = "https://example.com/voice"


def test_build_example_from_the_docs():
    assert build(URL, ct=1000, rc=2, e=["ashburn", "umatilla"]) == \
        "https://example.com/voice#ct=1000&rc=2&e=ashburn,umatilla"


def test_build_every_key_in_order():
    o = Overrides(e="dublin", sni=False, rp=["4xx", "ct"], rc=0, tt=15000, rt=100, ct=10000)
    assert build(URL, o) == URL + "#ct=10000&rt=100&tt=15000&rc=0&rp=4xx,ct&sni=n&e=dublin"


def test_nothing_set_gives_the_url_unchanged():
    assert build(URL) == URL
    assert parse(URL) == (URL, Overrides())
    assert Overrides().is_empty()
    assert Overrides().effective() == DEFAULTS


def test_parse_example():
    base, o = parse(URL + "#ct=1000&rc=2&e=ashburn,umatilla")
    assert base == URL
    assert (o.ct, o.rc, o.e) == (1000, 2, ("ashburn", "umatilla"))
    assert o.effective()["rt"] == 15000 and o.effective()["sni"] is True


@pytest.mark.parametrize("key,lo,hi", [("ct", 100, 10000), ("rt", 100, 15000),
                                       ("tt", 100, 15000), ("rc", 0, 5)])
def test_integer_ranges(key, lo, hi):
    for ok in (lo, hi):
        assert parse(f"{URL}#{key}={ok}")[1] == Overrides(**{key: ok})
    for bad in (lo - 1, hi + 1):
        msg = (f"{key}={bad} is out of range: {key} must be {lo}-{hi}" if bad >= 0
               else f"must be a whole number {lo}-{hi}")
        with pytest.raises(OverrideError, match=msg):
            parse(f"{URL}#{key}={bad}")
        with pytest.raises(OverrideError, match="out of range"):
            Overrides(**{key: bad})
    for text in ("", "1e3", "-1", "0100", "٣"):
        with pytest.raises(OverrideError, match="whole number"):
            parse(f"{URL}#{key}={text}")
    with pytest.raises(OverrideError, match="integer"):
        Overrides(**{key: True})


def test_retry_policy_values():
    for rp in RETRY_POLICIES:
        assert parse(f"{URL}#rp={rp}")[1].rp == (rp,)
    assert parse(f"{URL}#rp=4xx,5xx,rt")[1].rp == ("4xx", "5xx", "rt")
    with pytest.raises(OverrideError, match="'3xx' is not valid; use one or more of 4xx, 5xx, ct, rt, all"):
        parse(f"{URL}#rp=3xx")
    with pytest.raises(OverrideError, match="twice"):
        parse(f"{URL}#rp=ct,ct")
    with pytest.raises(OverrideError, match="empty"):
        parse(f"{URL}#rp=")


def test_sni_values():
    assert parse(f"{URL}#sni=y")[1].sni is True
    assert parse(f"{URL}#sni=n")[1].sni is False
    for bad in ("yes", "Y", "1", ""):
        with pytest.raises(OverrideError, match="y or n"):
            parse(f"{URL}#sni={bad}")


def test_egress_edges_public_and_private_only():
    valid = egress_edges()
    assert "roaming" not in valid
    assert set(valid) == {n for n, e in catalog.EDGES.items() if e.kind != "roaming"}
    for e in valid:
        assert parse(f"{URL}#e={e}")[1].e == (e,)
    with pytest.raises(OverrideError, match="not an egress edge"):
        parse(f"{URL}#e=roaming")
    with pytest.raises(OverrideError, match="did you mean 'dublin'"):
        parse(f"{URL}#e=ie1")
    with pytest.raises(OverrideError, match="valid: ashburn"):
        parse(f"{URL}#e=ashburn,mars")


def test_unknown_or_malformed_keys():
    with pytest.raises(OverrideError, match="unknown override key 'xt'.*valid keys: ct, rt, tt, rc, rp, sni, e"):
        parse(f"{URL}#xt=1")
    with pytest.raises(OverrideError, match="KEY=VALUE"):
        parse(f"{URL}#section")
    with pytest.raises(OverrideError, match="twice"):
        parse(f"{URL}#ct=100&ct=200")
    with pytest.raises(OverrideError, match="already has a fragment"):
        build(URL + "#x", ct=100)
    with pytest.raises(TypeError):
        build(URL, Overrides(ct=100), rc=1)


overrides_st = st.builds(
    Overrides,
    ct=st.none() | st.integers(100, 10000),
    rt=st.none() | st.integers(100, 15000),
    tt=st.none() | st.integers(100, 15000),
    rc=st.none() | st.integers(0, 5),
    rp=st.none() | st.lists(st.sampled_from(RETRY_POLICIES), min_size=1, unique=True).map(tuple),
    sni=st.none() | st.booleans(),
    e=st.none() | st.lists(st.sampled_from(egress_edges()), min_size=1, unique=True).map(tuple),
)


@given(overrides_st, st.sampled_from([URL, "https://sbc.example.net:8443/twiml?x=1&y=2", "http://a/"]))
def test_round_trip_exact(o, url):
    built = build(url, o)
    assert parse(built) == (url, o)
    assert build(*parse(built)) == built
