"""Twilio catalog: every edge and region in the facts file, host-name rules of
the helper libraries, errors that list the valid names."""
import warnings

import pytest

from sipedge.twilio import catalog
from sipedge.twilio.catalog import (EDGES, REGIONS, RegionOnlyWarning, api_host, sip_domain_host,
                             sip_registration_host, termination_host)
from sipedge.errors import CatalogError

# (edge, location, legacy id, kind) straight from twilio-facts.md
FACTS_EDGES = [
    ("ashburn", "US East (Virginia)", "us1", "public"),
    ("umatilla", "US West (Oregon)", "us2", "public"),
    ("dublin", "Ireland", "ie1", "public"),
    ("frankfurt", "Germany", "de1", "public"),
    ("sao-paulo", "Brazil", "br1", "public"),
    ("singapore", "Singapore", "sg1", "public"),
    ("tokyo", "Japan", "jp1", "public"),
    ("sydney", "Australia", "au1", "public"),
    ("roaming", "Global Low Latency", "gll", "roaming"),
    ("ashburn-ix", "Virginia", "us1-ix", "private"),
    ("san-jose-ix", "San Jose", "us2-ix", "private"),
    ("london-ix", "London", "ie1-ix", "private"),
    ("frankfurt-ix", "Frankfurt", "de1-ix", "private"),
    ("singapore-ix", "Singapore", "sg1-ix", "private"),
    ("tokyo-ix", "Tokyo", "jp1-ix", "private"),
    ("sydney-ix", "Sydney", "au1-ix", "private"),
    ("sao-paulo-ix", "São Paulo", "br1-ix", "private"),
]


@pytest.fixture(autouse=True)
def no_twilio_env(monkeypatch):
    monkeypatch.delenv("TWILIO_EDGE", raising=False)
    monkeypatch.delenv("TWILIO_REGION", raising=False)


def test_edges_are_exactly_the_facts():
    assert [(e.name, e.location, e.legacy_id, e.kind) for e in EDGES.values()] == FACTS_EDGES


@pytest.mark.parametrize("name,location,legacy,kind", FACTS_EDGES)
def test_edge_by_name_and_legacy_id(name, location, legacy, kind):
    e = catalog.edge(name)
    assert (e.location, e.legacy_id, e.kind) == (location, legacy, kind)
    assert catalog.edge(legacy) is e
    assert catalog.edge(name.upper()) is e
    assert e.sip_trunking == (kind != "roaming")


def test_default_edge_and_region():
    assert catalog.DEFAULT_EDGE == "ashburn" and "default" in EDGES["ashburn"].note
    assert catalog.DEFAULT_REGION == "us1"
    assert list(REGIONS) == ["us1", "ie1", "au1"]
    assert {r.name: r.default_edge for r in REGIONS.values()} == {
        "us1": "ashburn", "ie1": "dublin", "au1": "sydney"}


def test_unknown_edge_lists_valid_names():
    with pytest.raises(CatalogError) as e:
        catalog.edge("mars")
    msg = str(e.value)
    assert "'mars'" in msg
    for name in EDGES:
        assert name in msg


@pytest.mark.parametrize("name", ["us2", "de1", "br1", "mars"])
def test_unknown_region_lists_valid_names(name):
    with pytest.raises(CatalogError) as e:
        catalog.region(name)
    msg = str(e.value)
    assert "us1, ie1, au1" in msg
    if name != "mars":
        assert "edge id" in msg


def test_edge_groups():
    assert catalog.public_edges() == ["ashburn", "umatilla", "dublin", "frankfurt",
                                      "sao-paulo", "singapore", "tokyo", "sydney"]
    assert catalog.private_edges() == [n for n, *_ in FACTS_EDGES if n.endswith("-ix")]


# ------------------------------------------------------------------- REST hosts
def test_api_host_neither():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert api_host() == "api.twilio.com"
        assert api_host("voice") == "voice.twilio.com"


def test_api_host_edge_only_means_us1():
    assert api_host(edge="sydney") == "api.sydney.us1.twilio.com"
    assert api_host("messaging", edge="ie1") == "messaging.dublin.us1.twilio.com"


def test_api_host_region_only_is_deprecated_and_warns():
    with pytest.warns(RegionOnlyWarning, match="processes in US1") as rec:
        assert api_host(region="au1") == "api.au1.twilio.com"
    assert "edge='sydney'" in str(rec[0].message)


def test_api_host_both():
    assert api_host(edge="sydney", region="au1") == "api.sydney.au1.twilio.com"
    assert api_host(edge="dublin", region="ie1") == "api.dublin.ie1.twilio.com"
    assert api_host(edge="ashburn-ix", region="us1") == "api.ashburn-ix.us1.twilio.com"


def test_api_host_refuses_roaming():
    with pytest.raises(CatalogError, match="REST"):
        api_host(edge="roaming")
    with pytest.raises(CatalogError, match="REST"):
        api_host(edge="gll", region="us1")


def test_api_host_unknown_names():
    with pytest.raises(CatalogError, match="valid edges: ashburn"):
        api_host(edge="atlantis")
    with pytest.raises(CatalogError, match="valid regions: us1, ie1, au1"):
        api_host(edge="sydney", region="jp1")
    with pytest.raises(CatalogError, match="bad product"):
        api_host("api.evil", edge="sydney")


def test_api_host_environment(monkeypatch):
    monkeypatch.setenv("TWILIO_EDGE", "tokyo")
    assert api_host() == "api.tokyo.us1.twilio.com"
    monkeypatch.setenv("TWILIO_REGION", "au1")
    assert api_host() == "api.tokyo.au1.twilio.com"
    # arguments win over the environment
    assert api_host(edge="dublin", region="ie1") == "api.dublin.ie1.twilio.com"
    monkeypatch.delenv("TWILIO_EDGE")
    with pytest.warns(RegionOnlyWarning):
        assert api_host() == "api.au1.twilio.com"
    # an explicit env mapping replaces os.environ
    assert api_host(env={}) == "api.twilio.com"
    assert api_host(env={"TWILIO_EDGE": "sydney"}) == "api.sydney.us1.twilio.com"


# -------------------------------------------------------------------- SIP hosts
def test_termination_host():
    assert termination_host("acme") == "acme.pstn.twilio.com"
    assert termination_host("acme", edge="dublin") == "acme.pstn.dublin.twilio.com"
    assert termination_host("Acme.pstn.twilio.com", "sydney") == "acme.pstn.sydney.twilio.com"
    assert termination_host("acme", "ie1") == "acme.pstn.dublin.twilio.com"


def test_termination_host_ignores_environment(monkeypatch):
    monkeypatch.setenv("TWILIO_EDGE", "tokyo")
    assert termination_host("acme") == "acme.pstn.twilio.com"


@pytest.mark.parametrize("fn", [lambda e: termination_host("acme", e),
                                lambda e: sip_registration_host("acme", e)])
def test_sip_hosts_refuse_roaming_and_unknown(fn):
    with pytest.raises(CatalogError, match="roaming does not work"):
        fn("roaming")
    with pytest.raises(CatalogError, match="valid edges"):
        fn("nowhere")


@pytest.mark.parametrize("bad", ["", "a b", "-acme", "acme.example.com", "x" * 64, "ac_me"])
def test_bad_domain(bad):
    with pytest.raises(CatalogError, match="bad domain"):
        termination_host(bad)


def test_sip_registration_and_domain_hosts():
    assert sip_registration_host("acme", "ashburn") == "acme.sip.ashburn.twilio.com"
    assert sip_registration_host("acme.sip.twilio.com", "tokyo") == "acme.sip.tokyo.twilio.com"
    with pytest.raises(CatalogError, match="needs an edge"):
        sip_registration_host("acme", None)
    assert sip_domain_host("acme") == "acme.sip.twilio.com"
