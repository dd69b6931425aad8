"""Allowlist: the embedded Twilio dataset (every range in the facts file), user
files that extend or replace it, other carriers, edge selection, and every
validation error with file, line, value and fix."""
import ipaddress
import json
import warnings

import pytest

from sipedge.allowlist import AllEdgesWarning, Allowlist, Entry, Match, PortRange
from sipedge.cli import main
from sipedge.errors import AddressError, AllowlistError, EXIT_INPUT
from conftest import scaled

SIGNALING = {
    "ashburn": ["54.172.60.0/30"],
    "umatilla": ["54.244.51.0/30"],
    "dublin": ["54.171.127.192/30"],
    "frankfurt": ["35.156.191.128/30"],
    "tokyo": ["54.65.63.192/30"],
    "singapore": ["54.169.127.128/30"],
    "sydney": ["54.252.254.64/30"],
    "sao-paulo": ["177.71.206.192/30"],
}
IX = {
    "ashburn-ix": "208.78.112.{}", "san-jose-ix": "67.213.136.{}",
    "london-ix": "185.187.132.{}", "frankfurt-ix": "185.194.136.{}",
    "singapore-ix": "103.75.151.{}", "tokyo-ix": "103.144.142.{}",
    "sydney-ix": "103.146.214.{}", "sao-paulo-ix": "159.183.255.{}",
}
IX_LAST = {"ashburn-ix": 64, "san-jose-ix": 64, "frankfurt-ix": 64}  # others: 68
for _edge, _fmt in IX.items():
    _first = IX_LAST.get(_edge, 68)
    SIGNALING[_edge] = [_fmt.format(_first + i) + "/32" for i in range(3)]
MEDIA = "168.86.128.0/18"


@pytest.fixture(scope="module")
def twilio():
    return Allowlist.twilio()


def test_dataset_has_source_version_and_date(twilio):
    assert twilio.meta["name"] == "twilio"
    assert twilio.meta["read"] == "2026-11"
    assert "Twilio" in twilio.meta["source"]
    assert twilio.meta["version"]


def test_every_range_of_the_facts_file(twilio):
    want = {(e, p) for e, ps in SIGNALING.items() for p in ps}
    got = {(e.edge, str(e.network)) for e in twilio.entries if e.role == "signaling"}
    assert got == want
    assert [(e.role, e.edge, str(e.network)) for e in twilio.entries if e.role == "media"] == \
        [("media", None, MEDIA)]
    assert len(twilio) == len(want) + 1


def test_ports(twilio):
    assert twilio.roles == ["signaling", "media"]
    assert twilio.ports["signaling"] == [PortRange(5060, 5060, "udp"), PortRange(5060, 5060, "tcp"),
                                         PortRange(5061, 5061, "tcp")]
    assert twilio.ports["media"] == [PortRange(10000, 60000, "udp")]
    assert [str(p) for p in twilio.ports["media"]] == ["10000-60000/udp"]
    assert twilio.carriers == {"signaling": "twilio", "media": "twilio"}


@pytest.mark.parametrize("edge", list(SIGNALING))
def test_match_every_address_of_every_edge(twilio, edge):
    for p in SIGNALING[edge]:
        net = ipaddress.ip_network(p)
        for a in net:
            assert twilio.match(str(a)) == Match("signaling", edge, p)
            assert twilio.match(a.packed) == Match("signaling", edge, p)
            assert str(a) in twilio
        for outside in (net.network_address - 1, net.broadcast_address + 1):
            if all(outside not in ipaddress.ip_network(q) for ps in SIGNALING.values() for q in ps):
                assert twilio.match(str(outside)) is None
                assert str(outside) not in twilio


def test_media_range_every_edge(twilio):
    media = ipaddress.ip_network(MEDIA)
    for a in (media.network_address, media.network_address + 1000, media.broadcast_address):
        assert twilio.match(str(a)) == Match("media", None, MEDIA)
    assert "168.86.130.9" in twilio
    assert twilio.match(str(media.network_address - 1)) is None
    assert twilio.match(str(media.broadcast_address + 1)) is None
    # old per-region media ranges are not shipped
    assert all(e.network.prefixlen <= 32 for e in twilio.entries)


def test_match_is_bound_to_the_table(twilio):
    assert twilio.match.__self__ is twilio._table
    assert twilio._table.lookup("54.172.60.1") is twilio.match("54.172.60.1")
    assert twilio.match("2001:db8::1") is None
    with pytest.raises(AddressError):
        twilio.match("54.172.60.300")


def test_networks_collapse_for_the_firewall():
    al = Allowlist.from_toml("""
[roles.sig]
ports = ["5060/udp"]
[[ranges]]
role = "sig"
edge = "a"
prefixes = ["192.0.2.0/25", "198.51.100.0/24", "2001:db8::/33"]
[[ranges]]
role = "sig"
edge = "b"
prefixes = ["192.0.2.128/25", "198.51.100.64/26", "2001:db8:8000::/33"]
""")
    assert [str(n) for n in al.networks("sig")] == ["192.0.2.0/24", "198.51.100.0/24", "2001:db8::/32"]
    assert [str(n) for n in al.networks("sig", 6)] == ["2001:db8::/32"]
    # still attributed to their edges
    assert al.match("192.0.2.1").edge == "a"
    assert al.match("192.0.2.200").edge == "b"
    assert al.match("198.51.100.70") == Match("sig", "b", "198.51.100.64/26")
    assert al.match("198.51.100.1") == Match("sig", "a", "198.51.100.0/24")
    assert al.match("2001:db8:ffff::1").edge == "b"
    assert al.edges == ["a", "b"]


# ------------------------------------------------------------------ user files
DOC_FILE = """\
[dataset]
name = "lab"
version = "3"

[roles.sig]
ports = ["5060/udp", "5061/tcp"]

[roles.rtp]
ports = ["20000-30000/udp"]

[[ranges]]
role = "sig"
edge = "east"
prefixes = ["192.0.2.0/24", "2001:db8:1::/48"]

[[ranges]]
role = "rtp"
prefixes = ["198.51.100.0/24"]
"""


def test_user_file_replaces_the_default(tmp_path):
    f = tmp_path / "lab.toml"
    f.write_text(DOC_FILE)
    al = Allowlist.load(str(f))
    assert al.meta["name"] == "lab" and al.meta["version"] == "3"
    assert al.roles == ["sig", "rtp"]
    assert al.match("192.0.2.9") == Match("sig", "east", "192.0.2.0/24")
    assert al.match("2001:db8:1:ffff::1") == Match("sig", "east", "2001:db8:1::/48")
    assert al.match("198.51.100.9") == Match("rtp", None, "198.51.100.0/24")
    assert "54.172.60.1" not in al
    assert al.ports["rtp"] == [PortRange(20000, 30000, "udp")]


def test_user_file_extends_twilio_with_another_carrier():
    al = Allowlist.from_toml("""
[dataset]
name = "mine"
extends = "twilio"

[roles.carrierx]
ports = ["5080/udp"]
carrier = "carrierx"

[[ranges]]
role = "carrierx"
edge = "paris"
prefixes = ["203.0.113.0/24"]

[[ranges]]
role = "signaling"
edge = "ashburn"
prefixes = ["192.0.2.10/32"]
""", "mine.toml")
    assert al.meta["extends"]["name"] == "twilio"
    assert al.roles == ["signaling", "media", "carrierx"]
    assert al.match("54.172.60.1").edge == "ashburn"
    assert al.match("203.0.113.5") == Match("carrierx", "paris", "203.0.113.0/24")
    assert al.match("192.0.2.10") == Match("signaling", "ashburn", "192.0.2.10/32")
    assert al.ports["carrierx"] == [PortRange(5080, 5080, "udp")]
    assert len(al) == len(Allowlist.twilio()) + 2


def test_extends_may_repeat_a_role_with_the_same_ports():
    al = Allowlist.from_toml("""
[dataset]
extends = "twilio"
[roles.media]
carrier = "twilio"
ports = ["10000-60000/udp"]
""")
    assert len(al) == len(Allowlist.twilio())


def test_constructor_and_entries_api():
    al = Allowlist([Entry("s", None, ipaddress.ip_network("192.0.2.0/24"))],
                   {"s": [PortRange(5060, 5060, "udp")]})
    assert al.match("192.0.2.1") == Match("s", None, "192.0.2.0/24")
    assert list(al) == al.entries
    with pytest.raises(AllowlistError, match="unknown role 'x'"):
        Allowlist([Entry("x", None, ipaddress.ip_network("192.0.2.0/24"))], {})


# -------------------------------------------------------------- edge selection
def test_select_edges_warns_and_keeps_media(twilio):
    with pytest.warns(AllEdgesWarning, match="Twilio asks you to allow ALL edges"):
        sel = twilio.select(["ashburn", "umatilla"])
    assert {e.edge for e in sel.entries} == {"ashburn", "umatilla", None}
    assert sel.match("168.86.128.1").role == "media"
    assert sel.match("54.171.127.193") is None
    assert sel.meta["selected_edges"] == ["ashburn", "umatilla"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(twilio.select(twilio.edges)) == len(twilio)
        twilio.select(["dublin"], warn=False)


@pytest.mark.parametrize("edges,msg", [
    (["mars"], "unknown edge 'mars'.*edges in this allowlist: ashburn, umatilla"),
    (["dublin", "dublin"], "selected twice"),
    ([], "no edges selected"),
])
def test_select_errors(twilio, edges, msg):
    with pytest.raises(AllowlistError, match=msg):
        twilio.select(edges, warn=False)


# ------------------------------------------------------------------ validation
HEAD = '[roles.sig]\nports = ["5060/udp"]\n'


def _err(text, source="bad.toml"):
    with pytest.raises(AllowlistError) as e:
        Allowlist.from_toml(text, source)
    return str(e.value)


def test_bad_cidr():
    msg = _err(HEAD + '[[ranges]]\nrole = "sig"\nprefixes = ["192.0.2.0/24",\n  "300.1.2.3/32"]\n')
    assert msg.startswith("bad.toml:6: bad prefix '300.1.2.3/32'")
    assert "such as 192.0.2.0/24" in msg
    msg = _err(HEAD + '[[ranges]]\nrole = "sig"\nprefixes = ["2001:db8::/129"]\n')
    assert msg.startswith("bad.toml:5: bad prefix '2001:db8::/129'")
    msg = _err(HEAD + '[[ranges]]\nrole = "sig"\nprefixes = [42]\n')
    assert "bad.toml:5: prefix 42 is not a string" in msg


def test_host_bits_set_says_which_network_was_meant():
    msg = _err(HEAD + '[[ranges]]\nrole = "sig"\nprefixes = ["192.0.2.77/24"]\n')
    assert msg == ("bad.toml:5: prefix '192.0.2.77/24' has host bits set: did you mean the "
                   "network 192.0.2.0/24 or the single host 192.0.2.77/32?")
    msg = _err(HEAD + '[[ranges]]\nrole = "sig"\nprefixes = ["2001:db8::1/64"]\n')
    assert "network 2001:db8::/64 or the single host 2001:db8::1/128" in msg


def test_unknown_role():
    msg = _err(HEAD + '\n[[ranges]]\nrole = "media"\nprefixes = ["192.0.2.0/24"]\n')
    assert msg.startswith("bad.toml:5: unknown role 'media'; roles defined: sig")
    assert "[roles.media]" in msg
    assert "unknown role None" in _err(HEAD + '[[ranges]]\nprefixes = ["192.0.2.0/24"]\n')


@pytest.mark.parametrize("spec,msg", [
    ("70000/udp", "port out of range in '70000/udp': ports are 1-65535"),
    ("0/udp", "port out of range"),
    ("5060-70000/udp", "port out of range"),
    ("6000-5000/udp", "backwards: write 5000-6000/udp"),
    ("5060/sctp", "bad protocol in '5060/sctp': use udp or tcp"),
    ("5060", "bad port spec '5060': write PORT/PROTO"),
    ("x-1/udp", "bad port spec"),
    ("\u00b2/udp", "bad port spec"),                      # superscript two: isdigit() but no int
    ("\u0665\u0660\u0666\u0660/udp", "bad port spec"),  # Arabic-Indic 5060 is not ASCII
])
def test_port_errors(spec, msg):
    text = f'[roles.sig]\nports = ["5060/udp",\n  "{spec}"]\n[[ranges]]\nrole="sig"\nprefixes=["192.0.2.0/24"]\n'
    got = _err(text)
    assert got.startswith("bad.toml:3: ") and msg in got


def test_empty_lists():
    assert _err('[roles.sig]\n\nports = []\n').startswith("bad.toml:3: role 'sig' has no ports")
    assert "role 'sig' has no ports" in _err('[roles.sig]\ncarrier = "x"\n')
    msg = _err(HEAD + '[[ranges]]\nrole = "sig"\nprefixes = []\n')
    assert msg.startswith("bad.toml:5: range of role 'sig' has no prefixes")
    assert "no ranges" in _err(HEAD)
    assert "no ranges" in _err("")


def test_duplicate_names():
    msg = _err(HEAD + '[[ranges]]\nrole = "sig"\nedge = "a"\nprefixes = ["192.0.2.0/24"]\n'
               '[[ranges]]\nrole = "sig"\nedge = "b"\nprefixes = ["192.0.2.0/24"]\n')
    assert msg.startswith("bad.toml:10: duplicate prefix '192.0.2.0/24' in role 'sig': "
                          "already listed at line 6 (edge a)")
    msg = _err(HEAD + '[[ranges]]\nrole = "sig"\nprefixes = ["192.0.2.0/24", "192.0.2.0/24"]\n')
    assert msg.startswith("bad.toml:5: duplicate prefix")
    msg = _err('[roles.sig]\nports = ["5060/udp", "5060/udp"]\n')
    assert msg.startswith("bad.toml:2: duplicate port '5060/udp' in role 'sig'")
    msg = _err('[dataset]\nextends = "twilio"\n[roles.signaling]\nports = ["5080/udp"]\n')
    assert msg.startswith("bad.toml:3: duplicate role name 'signaling'")
    assert "another name" in msg
    msg = _err('[dataset]\nextends = "twilio"\n[[ranges]]\nrole = "signaling"\nedge = "ashburn"\n'
               'prefixes = ["54.172.60.0/30"]\n')
    assert msg.startswith("bad.toml:6: duplicate prefix '54.172.60.0/30'")
    assert "in the twilio dataset" in msg
    # TOML itself refuses a table defined twice, with its line
    msg = _err(HEAD + HEAD)
    assert "not valid TOML" in msg and "line 3" in msg


def test_unknown_keys_and_names():
    msg = _err(HEAD + '[[ranges]]\nrole = "sig"\nprefix = ["192.0.2.0/24"]\n')
    assert msg.startswith("bad.toml:5: unknown key 'prefix' in [[ranges]]; valid keys: role, edge, prefixes")
    assert "unknown key 'port'" in _err('[roles.sig]\nport = ["5060/udp"]\n')
    assert "unknown key 'range'" in _err('[[range]]\nrole = "x"\n')
    assert "bad role name 'Sig-1'" in _err('[roles.Sig-1]\nports = ["5060/udp"]\n')
    msg = _err(HEAD + '[[ranges]]\nrole = "sig"\nedge = "East Coast"\nprefixes = ["192.0.2.0/24"]\n')
    assert msg.startswith("bad.toml:5: bad edge 'East Coast'")
    assert "only \"twilio\"" in _err('[dataset]\nextends = "other"\n')


def test_twilio_roles_need_twilio_edges():
    msg = _err('[dataset]\nextends = "twilio"\n[[ranges]]\nrole = "signaling"\nedge = "roaming"\n'
               'prefixes = ["192.0.2.0/24"]\n')
    assert msg.startswith("bad.toml:5: unknown Twilio edge 'roaming' for role 'signaling'; valid edges: ashburn")


def test_not_toml_and_unreadable(tmp_path):
    assert "not valid TOML" in _err("[roles\n")
    with pytest.raises(AllowlistError, match="cannot read allowlist"):
        Allowlist.load(str(tmp_path / "missing.toml"))
    f = tmp_path / "latin1.toml"
    f.write_bytes(b"# caf\xe9\n")
    with pytest.raises(AllowlistError, match="not UTF-8"):
        Allowlist.load(str(f))


# ------------------------------------------------------------------------- CLI
def test_cli_allowlist_json(capsys):
    assert main(["allowlist", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["meta"]["read"] == "2026-11"
    assert {"role": "media", "edge": None, "prefix": MEDIA} in out["ranges"]
    assert out["ports"]["signaling"] == ["5060/udp", "5060/tcp", "5061/tcp"]


def test_cli_allowlist_edges_warns(capsys):
    assert main(["allowlist", "--edges", "ashburn,umatilla"]) == 0
    cap = capsys.readouterr()
    assert "allow ALL edges" in cap.err
    lines = cap.out.splitlines()
    assert any("54.172.60.0/30" in line for line in lines)
    assert not any("54.171.127.192/30" in line for line in lines)
    assert any(MEDIA in line and " * " in line for line in lines)


def test_cli_allowlist_match(capsys):
    assert main(["allowlist", "--match", "54.172.60.2", "--match", "192.0.2.1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == [{"address": "54.172.60.2", "role": "signaling", "edge": "ashburn",
                    "prefix": "54.172.60.0/30"},
                   {"address": "192.0.2.1", "role": None, "edge": None, "prefix": None}]


def test_cli_allowlist_bad_file(tmp_path, capsys):
    f = tmp_path / "bad.toml"
    f.write_text(HEAD + '[[ranges]]\nrole = "sig"\nprefixes = ["192.0.2.77/24"]\n')
    assert main(["allowlist", "--file", str(f)]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{f}:5:" in err and "192.0.2.0/24" in err


def test_cli_edges(capsys):
    assert main(["edges", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 17 and rows[0]["edge"] == "ashburn"
    assert main(["edges"]) == 0
    assert "sao-paulo-ix" in capsys.readouterr().out


def test_cli_hosts(capsys, monkeypatch):
    monkeypatch.delenv("TWILIO_EDGE", raising=False)
    monkeypatch.delenv("TWILIO_REGION", raising=False)
    assert main(["hosts", "--edge", "sydney", "--region", "au1", "--domain", "acme", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"api": "api.sydney.au1.twilio.com",
                   "termination": "acme.pstn.sydney.twilio.com",
                   "sip_registration": "acme.sip.sydney.twilio.com",
                   "sip_domain": "acme.sip.twilio.com"}
    assert main(["hosts", "--region", "ie1"]) == 0
    cap = capsys.readouterr()
    assert "api.ie1.twilio.com" in cap.out and "US1" in cap.err
    assert main(["hosts", "--edge", "roaming"]) == EXIT_INPUT
    assert "REST" in capsys.readouterr().err


def test_contrib_example_loads():
    import os
    path = os.path.join(os.path.dirname(__file__), "..", "contrib", "allowlist-extend-twilio.toml")
    al = Allowlist.load(path)
    assert al.roles == ["signaling", "media", "carrierx_signaling", "carrierx_media"]
    assert al.match("54.172.60.1").edge == "ashburn"
    assert al.match("198.51.100.20") == Match("carrierx_signaling", "carrierx-east", "198.51.100.16/28")
    assert al.match("2001:db8:100::9").edge == "carrierx-east"
    assert al.match("203.0.113.200") == Match("carrierx_media", None, "203.0.113.128/25")
    assert al.ports["carrierx_media"] == [PortRange(16384, 32767, "udp")]


def _net_strategy():
    from hypothesis import strategies as st
    v4 = st.builds(lambda a, p: ipaddress.IPv4Network((a >> (32 - p) << (32 - p), p)),
                   st.integers(0, 2 ** 32 - 1) | st.integers(0xC0000000, 0xC0000FFF),
                   st.integers(0, 32) | st.integers(22, 32))
    v6 = st.builds(lambda a, p: ipaddress.IPv6Network((a >> (128 - p) << (128 - p), p)),
                   st.integers(0, 2 ** 128 - 1) | st.integers(0, 4095),
                   st.integers(0, 128) | st.integers(116, 128))
    return st.lists(st.tuples(st.sampled_from(["sig", "rtp"]), v4 | v6), max_size=40,
                    unique_by=lambda t: t)


def test_networks_equal_ipaddress_collapse():
    from hypothesis import given, settings

    @settings(max_examples=scaled(200), deadline=None)
    @given(_net_strategy())
    def check(pairs):
        al = Allowlist([Entry(r, None, n) for r, n in pairs],
                       {"sig": [PortRange(5060, 5060, "udp")], "rtp": [PortRange(20000, 20000, "udp")]})
        for role in ("sig", "rtp"):
            for ver in (4, 6):
                nets = [n for r, n in pairs if r == role and n.version == ver]
                assert al.networks(role, ver) == list(ipaddress.collapse_addresses(nets))
            assert al.networks(role) == al.networks(role, 4) + al.networks(role, 6)

    check()
