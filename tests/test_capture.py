"""Capture readers and the batch API: pcap (both byte orders, us and ns),
pcapng (sections, interfaces with their own link types, simple packet blocks),
errors that name the file and offset, counts and per-frame codes."""
from __future__ import annotations

import struct

import pytest
from scapy.all import IP, TCP, UDP, Ether, IPv6, Raw, raw

from sipedge import _impl, errors
from classify_util import (SIP_200, SIP_INVITE, allowlist, pcap_bytes, pcapng_bytes,
                           rtcp_payload, rtp_payload)
from conftest import scaled

MAC = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def frames_eth():
    return [
        raw(Ether(**MAC) / IP(src="192.0.2.10", dst="203.0.113.1") / UDP(sport=5060, dport=5060)
            / Raw(SIP_INVITE)),
        raw(Ether(**MAC) / IP(src="198.51.100.7", dst="203.0.113.1") / UDP(sport=20000, dport=30000)
            / Raw(rtp_payload())),
        raw(Ether(**MAC) / IP(src="198.51.100.7", dst="203.0.113.1") / UDP(sport=20001, dport=30001)
            / Raw(rtcp_payload())),
        raw(Ether(**MAC) / IP(src="203.0.113.9", dst="203.0.113.1") / TCP(sport=80, dport=40000)),
        raw(Ether(**MAC) / IPv6(src="2001:db8:5::1", dst="2001:db8:1::2") / UDP(sport=5060, dport=5060)
            / Raw(SIP_200)),
    ]


EXPECT = ["sip", "rtp", "rtcp", "other", "sip"]


@pytest.fixture
def clf(impl):
    return impl("classify").Classifier(allowlist())


@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("nsec", [False, True])
def test_pcap_byte_orders_and_resolutions(clf, tmp_path, big, nsec):
    p = tmp_path / "t.pcap"
    p.write_bytes(pcap_bytes(frames_eth(), big=big, nsec=nsec))
    rep = clf.classify_pcap(str(p), frames=True)
    assert rep.frames == 5
    assert [f.kind for f in rep.iter_frames()] == EXPECT
    assert [f.number for f in rep.iter_frames()] == [1, 2, 3, 4, 5]
    assert rep.by_kind() == {"other": 1, "sip": 2, "rtp": 1, "rtcp": 1, "stun": 0, "tls": 0, "udptl": 0}
    assert rep.counts[("sip", True, "test-east")] == 2
    assert rep.counts[("rtp", True, "*")] == 1
    assert rep.counts[("other", False, None)] == 1
    assert rep.trusted == 4
    # the codes are the single-frame codes
    assert list(rep.codes) == [clf.code(f) for f in frames_eth()]


def test_raw_and_sll_linktypes(clf, tmp_path):
    ipf = [f[14:] for f in frames_eth()]
    p = tmp_path / "raw.pcap"
    p.write_bytes(pcap_bytes(ipf, linktype=101))
    assert [f.kind for f in clf.classify_pcap(p, frames=True).iter_frames()] == EXPECT
    sll = [b"\0\0\0\x01\0\x06" + b"\x02\0\0\0\0\x01\0\0" + f[12:] for f in frames_eth()]
    p.write_bytes(pcap_bytes(sll, linktype=113))
    assert [f.kind for f in clf.classify_pcap(p, frames=True).iter_frames()] == EXPECT


@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("simple", [False, True])
def test_pcapng_interfaces_sections(clf, tmp_path, big, simple):
    eth = frames_eth()
    raw_ip = [f[14:] for f in eth]
    # section 1: interface 0 Ethernet, interface 1 raw IP; section 2: SLL only
    s1 = ([1, 101], [(0, eth[0]), (1, raw_ip[1]), (0, eth[3]), (1, raw_ip[4])])
    sll = b"\0\0\0\x01\0\x06" + b"\x02\0\0\0\0\x01\0\0" + eth[2][12:]
    s2 = ([113], [(0, sll)])
    p = tmp_path / "t.pcapng"
    p.write_bytes(pcapng_bytes([s1, s2], big=big, simple_first=simple))
    rep = clf.classify_pcap(p, frames=True)
    assert [f.kind for f in rep.iter_frames()] == ["sip", "rtp", "other", "sip", "rtcp"]


def test_buffer_equals_file(clf, tmp_path):
    data = pcap_bytes(frames_eth() * 50)
    p = tmp_path / "t.pcap"
    p.write_bytes(data)
    a = clf.classify_pcap(str(p), frames=True)
    b = clf.classify_buffer(data, frames=True)
    assert a.counts == b.counts and list(a.codes) == list(b.codes) and a.frames == 250
    assert clf.classify_buffer(bytearray(data)).codes is None
    assert clf.classify_buffer(memoryview(data)).counts == a.counts
    d = a.to_dict()
    assert d["frames"] == 250 and d["by_kind"]["sip"] == 100 and d["trusted"] == 200


def test_progress_callback(clf, impl, tmp_path, monkeypatch):
    mod = impl("classify")
    monkeypatch.setattr(mod, "PROGRESS_FRAMES", 7)
    seen = []
    data = pcap_bytes(frames_eth() * 10)
    rep = clf.classify_buffer(data, progress=lambda done, total: seen.append((done, total)))
    assert rep.frames == 50
    assert len(seen) == 50 // 7
    assert all(t == len(data) for _, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_empty_capture_file_is_an_error(clf, tmp_path):
    p = tmp_path / "empty.pcap"
    p.write_bytes(b"")
    with pytest.raises(errors.CaptureError, match=r"empty\.pcap.*offset 0.*too short"):
        clf.classify_pcap(p)


def test_header_only_pcap_has_no_frames(clf, tmp_path):
    p = tmp_path / "h.pcap"
    p.write_bytes(pcap_bytes([]))
    rep = clf.classify_pcap(p, frames=True)
    assert rep.frames == 0 and len(rep.codes) == 0 and rep.counts == {}


def test_missing_file(clf, tmp_path):
    with pytest.raises(errors.CaptureError, match="nope.pcap: cannot open capture"):
        clf.classify_pcap(tmp_path / "nope.pcap")


@pytest.mark.parametrize("mangle,msg,off", [
    (lambda d: b"GIF89a" + d[6:], "unknown magic number", 0),
    (lambda d: d[:20], "truncated pcap file header", 0),
    (lambda d: d[:-3], "truncated pcap record", None),
    (lambda d: d + b"\0" * 7, "truncated pcap record header", None),
    (lambda d: d[:24] + struct.pack("<IIII", 0, 0, 0x7FFFFFFF, 0x7FFFFFFF) + d[40:],
     "over the limit", 32),
    (lambda d: d[:4] + b"\x09\x00" + d[6:], "unsupported pcap major version", 4),
])
def test_bad_pcap_errors(clf, tmp_path, mangle, msg, off):
    p = tmp_path / "bad.pcap"
    p.write_bytes(mangle(pcap_bytes(frames_eth())))
    with pytest.raises(errors.CaptureError) as ei:
        clf.classify_pcap(p)
    text = str(ei.value)
    assert "bad.pcap" in text and msg in text
    if off is not None:
        assert f"byte offset {off}:" in text


@pytest.mark.parametrize("mangle,msg", [
    (lambda d: d[:-4], "truncated pcapng block"),
    (lambda d: d[:8] + b"\x11\x22\x33\x44" + d[12:], "byte-order magic"),
    (lambda d: d + struct.pack("<II", 6, 13) + b"\0" * 5, "not a multiple of 4"),
    (lambda d: d + struct.pack("<IIIIIII", 6, 36, 9, 0, 0, 4, 4) + b"abcd" + struct.pack("<I", 36),
     "undeclared interface"),
    (lambda d: d + struct.pack("<IIIIIII", 6, 36, 0, 0, 0, 400, 4) + b"abcd"
     + struct.pack("<I", 36), "captured length past the end of its block"),
    (lambda d: d + struct.pack("<II", 6, 16) + b"\0\0\0\0" + struct.pack("<I", 20),
     "differs from the start"),
    # a section header block is 28 bytes at least (no room for the section length here)
    (lambda d: d + struct.pack("<IIIHHI", 0x0A0D0D0A, 20, 0x1A2B3C4D, 1, 0, 20) + d[28:],
     "section header block too short"),
])
def test_bad_pcapng_errors(clf, tmp_path, mangle, msg):
    p = tmp_path / "bad.pcapng"
    p.write_bytes(mangle(pcapng_bytes([([1], [(0, f) for f in frames_eth()])])))
    with pytest.raises(errors.CaptureError, match=msg) as ei:
        clf.classify_pcap(p)
    assert "bad.pcapng: byte offset" in str(ei.value)


@pytest.mark.needs_native
def test_errors_identical_in_both_implementations(tmp_path):
    al = allowlist()
    data = pcapng_bytes([([1], [(0, f) for f in frames_eth()])])
    for cut in range(0, len(data), 7):
        msgs = []
        for mod in (_impl.native("classify"), _impl.python("classify")):
            try:
                r = mod.Classifier(al).classify_buffer(data[:cut], frames=True)
                msgs.append(("ok", r.frames, list(r.codes)))
            except errors.CaptureError as e:
                msgs.append(("err", str(e)))
        assert msgs[0] == msgs[1], cut


def _outcome(mod, al, data):
    try:
        r = mod.Classifier(al).classify_buffer(data, frames=True)
        return ("ok", r.frames, list(r.codes), r.counts)
    except errors.CaptureError as e:
        return ("err", str(e))


from hypothesis import given, settings, strategies as st  # noqa: E402

_SEEDS = [pcap_bytes(frames_eth()[:2]), pcap_bytes(frames_eth()[:2], big=True, nsec=True),
          pcapng_bytes([([1, 101], [(0, frames_eth()[0]), (1, frames_eth()[1][14:])])]),
          pcapng_bytes([([1], [(0, frames_eth()[2])])], big=True, simple_first=True)]


@settings(max_examples=scaled(400), deadline=None)
@given(st.sampled_from(_SEEDS), st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)),
                                         max_size=6), st.integers(0, 2000))
def test_mutated_captures_same_outcome(seed, flips, cut):
    """Garbled capture files: both readers stop at the same place with the same message."""
    from sipedge import _impl
    from conftest import IMPLEMENTATIONS

    data = bytearray(seed)
    for pos, val in flips:
        data[pos % len(data)] = val
    data = bytes(data[:len(data) - (cut % 64)])
    al = allowlist()
    outs = [_outcome(_impl.python("classify"), al, data)]
    if "native" in IMPLEMENTATIONS:
        outs.append(_outcome(_impl.native("classify"), al, data))
        assert outs[0] == outs[1]
