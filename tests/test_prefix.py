"""The prefix table, both implementations: agreement with ``ipaddress`` on random
addresses and random prefix sets (v4 and v6), the /16 index, dump/from_ranges,
and an Allowlist running on each implementation."""
import ipaddress

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from sipedge.allowlist import Allowlist, Match
from sipedge.errors import AddressError
from conftest import scaled


def nets(version):
    bits = 32 if version == 4 else 128
    return st.builds(
        lambda a, plen: ipaddress.ip_network((a >> (bits - plen) << (bits - plen), plen)),
        st.integers(0, 2 ** bits - 1), st.integers(0, bits))


def clustered_nets(version):
    """Networks crowded into a few blocks so that they nest, touch and repeat."""
    bits = 32 if version == 4 else 128
    base = 0xC0000200 if version == 4 else 0x20010DB8 << 96
    return st.builds(
        lambda off, plen: ipaddress.ip_network(
            ((base + off) >> (bits - plen) << (bits - plen), plen)),
        st.integers(0, 1023), st.integers(bits - 12, bits))


def expected(entries, addr):
    """Most specific network holding addr; the first given wins on equal networks."""
    best = None
    for net, value in entries:
        if addr.version == net.version and addr in net:
            if best is None or net.prefixlen > best[0].prefixlen:
                best = (net, value)
    return None if best is None else best[1]


def boundary_addresses(entries, version):
    out = []
    top = 2 ** (32 if version == 4 else 128) - 1
    for net, _ in entries:
        if net.version != version:
            continue
        lo, hi = int(net.network_address), int(net.broadcast_address)
        out += [x for x in (lo - 1, lo, hi, hi + 1) if 0 <= x <= top]
    return [ipaddress.ip_address(x) if version == 4 else ipaddress.IPv6Address(x) for x in out]


def _check(pt, entries, addrs):
    for a in addrs:
        want = expected(entries, a)
        assert pt.lookup(str(a)) == want, (str(a), entries)
        assert pt.get(a.packed) == want
        assert pt.get(a) == want
        assert (str(a) in pt) == (want is not None)


SETTINGS = settings(max_examples=scaled(150), deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("version", [4, 6])
@SETTINGS
@given(data=st.data())
def test_lookup_agrees_with_ipaddress(impl, version, data):
    strat = st.one_of(nets(version), clustered_nets(version))
    networks = data.draw(st.lists(strat, max_size=40))
    entries = [(n, i) for i, n in enumerate(networks)]
    pt = impl("prefix").PrefixTable(entries)
    bits = 32 if version == 4 else 128
    rand = data.draw(st.lists(st.integers(0, 2 ** bits - 1), max_size=30))
    addrs = [ipaddress.IPv4Address(x) if version == 4 else ipaddress.IPv6Address(x) for x in rand]
    _check(pt, entries, addrs + boundary_addresses(entries, version))


@SETTINGS
@given(data=st.data())
def test_mixed_families_and_round_trip(impl, data):
    networks = data.draw(st.lists(st.one_of(clustered_nets(4), clustered_nets(6), nets(4), nets(6)),
                                  max_size=30))
    entries = [(n, f"v{i}") for i, n in enumerate(networks)]
    mod = impl("prefix")
    pt = mod.PrefixTable(entries)
    again = mod.PrefixTable.from_ranges(*pt.dump(), pt.values)
    assert again.ranges(4) == pt.ranges(4) and again.ranges(6) == pt.ranges(6)
    addrs = boundary_addresses(entries, 4) + boundary_addresses(entries, 6)
    _check(again, entries, addrs)


def near_slash16_nets():
    """IPv4 networks that start, end or straddle near /16 boundaries."""
    return st.builds(
        lambda block, off, plen: ipaddress.ip_network(
            (((block << 16) + off) & 0xFFFFFFFF) >> (32 - plen) << (32 - plen), plen),
        st.integers(0, 8) | st.integers(65530, 65535), st.integers(-300, 300), st.integers(12, 32))


@settings(max_examples=scaled(50), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_lookup_with_the_slash16_index(impl, data):
    """64+ IPv4 ranges: the native table narrows each search with its /16 index."""
    networks = data.draw(st.lists(near_slash16_nets(), min_size=64, max_size=160))
    entries = [(n, i) for i, n in enumerate(networks)]
    pt = impl("prefix").PrefixTable(entries)
    extra = data.draw(st.lists(st.integers(0, 2 ** 32 - 1), max_size=20))
    edges = boundary_addresses(entries, 4)
    picked = data.draw(st.lists(st.sampled_from(edges), min_size=1, max_size=60))
    _check(pt, entries, picked + [ipaddress.IPv4Address(x) for x in extra])


def test_both_implementations_flatten_identically(impl):
    from sipedge import _impl
    entries = [(ipaddress.ip_network(p), p) for p in
               ("10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.2.0.0/16", "0.0.0.0/0",
                "2001:db8::/32", "2001:db8:1::/48", "::/0")]
    ref = _impl.python("prefix").PrefixTable(entries)
    pt = impl("prefix").PrefixTable(entries)
    assert pt.ranges(4) == ref.ranges(4) and pt.ranges(6) == ref.ranges(6)
    assert pt.dump() == ref.dump()


def test_index_over_many_slash16_blocks(impl):
    """Ranges spread over and across /16 boundaries (exercises the native index)."""
    entries = []
    for i in range(0, 4000, 7):
        base = (i * 40503) & 0xFFFFFFFF
        plen = 14 + i % 19
        entries.append((ipaddress.ip_network((base >> (32 - plen) << (32 - plen), plen)), i))
    pt = impl("prefix").PrefixTable(entries)
    addrs = boundary_addresses(entries, 4)
    addrs += [ipaddress.IPv4Address(x) for x in (0, 0xFFFFFFFF, 0x00010000, 0xFFFF0000)]
    for a in addrs[::3]:
        assert pt.get(str(a)) == expected(entries, a)


def test_empty_and_full_tables(impl):
    mod = impl("prefix")
    empty = mod.PrefixTable()
    assert empty.get("0.0.0.0") is None and empty.get("::") is None and len(empty) == 0
    full = mod.PrefixTable([(ipaddress.ip_network("0.0.0.0/0"), "all4"),
                            (ipaddress.ip_network("::/0"), "all6")])
    for a in ("0.0.0.0", "255.255.255.255", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"):
        assert full.get(a) in ("all4", "all6")


@pytest.mark.parametrize("bad", ["", "1.2.3", "1.2.3.4.5", "01.2.3.4", "1.2.3.256", " 1.2.3.4",
                                 "1.2.3.4 ", "::g", "1:2:3:4:5:6:7:8:9", "1.2.3.4/32", "x" * 100])
def test_bad_addresses(impl, bad):
    pt = impl("prefix").PrefixTable([(ipaddress.ip_network("0.0.0.0/0"), 1)])
    with pytest.raises(AddressError):
        pt.get(bad)
    with pytest.raises(AddressError):
        pt.get(b"\x01\x02\x03")
    with pytest.raises(AddressError):
        pt.get(12345)


def test_from_ranges_refuses_bad_arrays(impl):
    mod = impl("prefix")
    pt = mod.PrefixTable([(ipaddress.ip_network("192.0.2.0/24"), 1),
                          (ipaddress.ip_network("198.51.100.0/24"), 2)])
    lo4, hi4, val4, lo6, hi6, val6 = pt.dump()
    with pytest.raises(ValueError):
        mod.PrefixTable.from_ranges(lo4, hi4[:4], val4, lo6, hi6, val6, pt.values)
    with pytest.raises(ValueError):  # out of order
        mod.PrefixTable.from_ranges(lo4[4:] + lo4[:4], hi4[4:] + hi4[:4], val4, lo6, hi6, val6,
                                    pt.values)
    with pytest.raises(ValueError):  # value index past the values
        mod.PrefixTable.from_ranges(lo4, hi4, val4, lo6, hi6, val6, pt.values[:1])
    with pytest.raises(TypeError):
        mod.PrefixTable.from_ranges(bytearray(lo4), hi4, val4, lo6, hi6, val6, pt.values)


@SETTINGS
@given(data=st.data())
def test_allowlist_match_on_each_implementation(impl, data):
    networks = data.draw(st.lists(st.one_of(clustered_nets(4), clustered_nets(6)), min_size=1,
                                  max_size=25, unique=True))
    edges = data.draw(st.lists(st.sampled_from(["a", "b", None]), min_size=len(networks),
                               max_size=len(networks)))
    text = '[roles.sig]\nports = ["5060/udp"]\n' + "".join(
        f'[[ranges]]\nrole = "sig"\nedge = "{e or "*"}"\nprefixes = ["{n}"]\n'
        for n, e in zip(networks, edges))
    al = Allowlist.from_toml(text)
    al._set_table(impl("prefix").PrefixTable(
        (e.network, Match(e.role, e.edge, str(e.network))) for e in al.entries))
    entries = [(n, Match("sig", e, str(n))) for n, e in zip(networks, edges)]
    for a in boundary_addresses(entries, 4) + boundary_addresses(entries, 6):
        want = expected(entries, a)
        assert al.match(str(a)) == want
        assert (str(a) in al) == (want is not None)
    for n, e in zip(networks, edges):
        assert al.match(str(n.network_address)).edge == e or any(
            m.prefixlen > n.prefixlen and n.network_address in m for m in networks)


def _ipaddress_says(text):
    if "%" in text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@settings(max_examples=scaled(400), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(
    st.text(alphabet="0123456789.", max_size=18),
    st.text(alphabet="0123456789abcdefABCDEF:.%", max_size=46),
    st.ip_addresses().map(str),
    st.ip_addresses(v=6).map(lambda a: a.exploded),
))
def test_address_text_parsed_like_ipaddress(impl, text):
    """Both parsers accept exactly what ipaddress accepts (scope ids refused)."""
    pt = impl("prefix").PrefixTable([(ipaddress.ip_network("0.0.0.0/0"), 4),
                                     (ipaddress.ip_network("::/0"), 6)])
    want = _ipaddress_says(text)
    if want is None:
        with pytest.raises(AddressError):
            pt.get(text)
    else:
        assert pt.get(text) == want.version


def test_scope_id_refused(impl):
    pt = impl("prefix").PrefixTable([(ipaddress.ip_network("::/0"), 6)])
    with pytest.raises(AddressError):
        pt.get("fe80::1%eth0")


def test_from_ranges_keeps_its_own_values(impl):
    """The table copies the values list: clearing the caller's list changes nothing."""
    import gc
    mod = impl("prefix")
    entries = [(ipaddress.ip_network((0x0A000000 + (i << 12), 20)), f"v{i}") for i in range(200)]
    pt = mod.PrefixTable(entries)
    values = [str(v) + "" for v in pt.values]
    again = mod.PrefixTable.from_ranges(*pt.dump(), values)
    values.clear()
    del pt
    gc.collect()
    for i in range(0, 200, 13):
        assert again.get(str(ipaddress.IPv4Address(0x0A000000 + (i << 12) + 7))) == f"v{i}"
    assert again.get("11.0.0.0") is None


@pytest.mark.parametrize("bad", ["::1\x00", "::1\x00garbage", "2001:db8::1\x00::", "\x00::1",
                                 "::ffff:192.0.2.1\x00", "192.0.2.1\x00", "\udc80", "::\udc80"])
def test_nul_and_surrogates_refused(impl, bad):
    """Text that is not an address in full (a NUL inside, a lone surrogate) is
    an AddressError in both implementations, as ipaddress says."""
    pt = impl("prefix").PrefixTable([(ipaddress.ip_network("0.0.0.0/0"), 4),
                                     (ipaddress.ip_network("::/0"), 6)])
    with pytest.raises(AddressError):
        pt.get(bad)
    with pytest.raises(AddressError):
        bad in pt  # noqa: B015
