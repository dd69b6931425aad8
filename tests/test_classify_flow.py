"""Flow mode: SDP-announced flows (T.38 UDPTL is not RTP), RTP confirmed by
sequence progression, strict RTCP, SIP split over TCP/SCTP segments, bounded
tables; the native flow mode against the twin on random captures."""
from __future__ import annotations

import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from sipedge import _impl
from classify_util import (GW, INVITE, OK, UAC, _ip4, allowlist, pcap_bytes, rtcp_payload, rtp, sctp_data,
                           sdp, sip, t38_call, tcp, udp)

from conftest import IMPLEMENTATIONS, scaled

@pytest.fixture
def clf(impl):
    return impl("classify").Classifier(allowlist())


def kinds(clf, frames, **kw):
    rep = clf.classify_buffer(pcap_bytes(frames), frames=True, **kw)
    return [f.kind for f in rep.iter_frames()]


def test_t38_is_udptl_not_rtp(clf):
    frames = t38_call()
    stateless = kinds(clf, frames)
    flow = kinds(clf, frames, flows=True)
    assert stateless[-6:] == ["rtp"] * 6  # per frame, UDPTL cannot be told from RTP
    assert flow[-6:] == ["udptl"] * 6
    assert flow[2:12] == ["rtp"] * 10 and flow[:2] == ["sip", "sip"]
    rep = clf.classify_buffer(pcap_bytes(frames), flows=True)
    assert rep.counts[("udptl", True, "*")] == 6  # media role sends udptl from its ports


def test_unannounced_rtp_confirmed_by_progression(clf):
    a = [udp(UAC, 40000, GW, 40002, rtp(10 + i, 160 * i)) for i in range(3)]
    assert kinds(clf, a, flows=True) == ["rtp"] * 3  # the first two re-labelled
    assert kinds(clf, a[:2], flows=True) == ["other"] * 2
    jumpy = [udp(UAC, 40000, GW, 40002, rtp(s, 0, ssrc=s)) for s in (7, 9000, 300)]
    assert kinds(clf, jumpy, flows=True) == ["other"] * 3
    assert kinds(clf, jumpy) == ["rtp"] * 3
    backwards = [udp(UAC, 40000, GW, 40002, rtp(10 + i, 1000 - 160 * i)) for i in range(3)]
    assert kinds(clf, backwards, flows=True) == ["other"] * 3


def test_relabel_window(clf):
    noise = udp(UAC, 1, GW, 2, b"x")
    a = [udp(UAC, 40000, GW, 40002, rtp(10 + i, 160 * i)) for i in range(3)]
    frames = [a[0], noise, noise, a[1], a[2]]
    lim = dict(max_flows=64, max_anns=64, window=4)
    # frame 1 is 4 frames behind the confirming frame 5: out of the window, stays other
    assert kinds(clf, frames, flows=True, limits=lim) == ["other"] * 3 + ["rtp"] * 2
    lim["window"] = 5
    assert kinds(clf, frames, flows=True, limits=lim) == ["rtp", "other", "other", "rtp", "rtp"]
    # a run that only counts moves the re-labelled frame's count the same way
    for window, n_rtp in ((4, 2), (5, 3)):
        lim["window"] = window
        rep = clf.classify_buffer(pcap_bytes(frames), flows=True, limits=lim)
        assert rep.by_kind()["rtp"] == n_rtp and rep.by_kind()["other"] == 5 - n_rtp


def test_flow_session_reports_relabelled(impl):
    s = impl("classify").Classifier(allowlist()).flow_session()
    got = []
    for i in range(4):
        v = s.classify(udp(UAC, 40000, GW, 40002, rtp(10 + i, 160 * i)))
        got.append((v.kind, s.relabelled))
    assert got == [("other", ()), ("other", ()), ("rtp", (1, 2)), ("rtp", ())]
    assert s.frames == 4


def test_rtcp_strict_unless_announced(clf):
    good = struct.pack(">BBHI", 0x80, 200, 6, 0x1234) + bytes(20) + struct.pack(">BBHI", 0x80, 201,
                                                                                1, 0x1234)
    stray = good + b"\0\0"  # 2 bytes after the compound: RFC 3550 A.2 says invalid
    frames = [udp(UAC, 40001, GW, 40003, good), udp(UAC, 40001, GW, 40003, stray)]
    assert kinds(clf, frames) == ["rtcp", "rtcp"]
    assert kinds(clf, frames, flows=True) == ["rtcp", "other"]
    ann = [udp(GW, 5060, UAC, 5060, sip(OK, sdp(GW, "m=audio 40002 RTP/AVP 0")))]
    assert kinds(clf, ann + frames, flows=True) == ["sip", "rtcp", "rtcp"]  # 40003 = 40002 + 1
    mux = [udp(GW, 5060, UAC, 5060, sip(OK, sdp(GW, "m=audio 40002 RTP/AVP 0\r\na=rtcp-mux"))),
           udp(UAC, 40002, GW, 40002, stray), udp(UAC, 40003, GW, 40003, stray)]
    assert kinds(clf, mux, flows=True) == ["sip", "rtcp", "other"]


def test_udp_keepalive_is_not_sip_in_flow_mode(clf):
    frames = [udp(UAC, 5061, GW, 5060, b"\r\n"), udp(UAC, 5061, GW, 5060, b"\r\n\r\n")]
    assert kinds(clf, frames) == ["sip", "sip"]
    assert kinds(clf, frames, flows=True) == ["other", "other"]


def test_tcp_sip_split_over_segments(clf):
    body = sdp(UAC, "m=image 20000 udptl t38") + b"a=" + b"x" * 1500 + b"\r\n"
    msg = sip(INVITE, body)
    cut = 600
    frames = [tcp(UAC, 5060, GW, 5060, 1000, msg[:cut]),
              tcp(UAC, 5060, GW, 5060, 1000 + cut, msg[cut:1200]),
              tcp(UAC, 5060, GW, 5060, 1000 + cut, msg[cut:1200]),  # retransmission
              tcp(UAC, 5060, GW, 5060, 1200 + 1000, msg[1200:]),
              tcp(UAC, 5060, GW, 5060, 1000 + len(msg), sip(OK))]
    assert kinds(clf, frames) == ["sip", "other", "other", "other", "sip"]
    assert kinds(clf, frames, flows=True) == ["other", "other", "other", "sip", "sip"]
    # the SDP in the first segment announced UDPTL at the uac's port 20000
    frames.append(udp(GW, 30000, UAC, 20000, rtp(1)))
    assert kinds(clf, frames, flows=True)[-1] == "udptl"


def test_sctp_sip_fragments(clf):
    msg = sip(INVITE, sdp(UAC, "m=audio 20000 RTP/AVP 8"))
    frames = [sctp_data(UAC, 5060, GW, 5060, 0x02, 1, msg[:100]),
              sctp_data(UAC, 5060, GW, 5060, 0x00, 2, msg[100:200]),
              sctp_data(UAC, 5060, GW, 5060, 0x01, 3, msg[200:]),
              sctp_data(UAC, 5060, GW, 5060, 0x03, 4, sip(OK))]
    assert kinds(clf, frames) == ["sip", "other", "other", "sip"]
    assert kinds(clf, frames, flows=True) == ["other", "other", "sip", "sip"]


def test_sdp_parsing_rules():
    from sipedge._py.flow import A_RTCP, A_RTP, A_UDPTL, Flows, _parse_ip6

    t = Flows()
    t.sdp_scan(b"v=0\r\nc=IN IP4 192.0.2.1/127\r\nm=audio 5004/2 RTP/SAVPF 0\r\na=rtcp:6000\r\n"
               b"m=image 0 udptl t38\r\nm=video 7000 RTP/AVP 96\r\nc=IN IP6 2001:db8::1\r\n"
               b"m=image 8000 UDP/UDPTL t38\r\nc=IN IP4 192.0.2.2\r\n m=audio $ RTP/AVP 0\r\n")
    a = _ip4("192.0.2.1")
    assert t.ann_find(4, a, 5004) == A_RTP and t.ann_find(4, a, 6000) == A_RTCP
    assert t.ann_find(4, a, 5005) == 0 and t.ann_find(4, a, 0) == 0
    assert t.ann_find(4, _ip4("192.0.2.2"), 8000) == A_UDPTL  # its media-level c=
    assert t.ann_find(4, a, 8000) == 0
    v6 = _parse_ip6(b"2001:db8::1")
    assert t.ann_find(6, v6, 7000) == A_RTP and t.ann_find(6, v6, 7001) == A_RTCP
    assert t.ann_find(4, a, 7000) == 0  # media-level c= (IPv6) replaced the session's
    assert _parse_ip6(b"2001:db8::1") == bytes.fromhex("20010db8000000000000000000000001")
    assert _parse_ip6(b"::") == bytes(16) and _parse_ip6(b"1::2::3") is None
    assert _parse_ip6(b"1:2:3:4:5:6:7:8") == bytes.fromhex("00010002000300040005000600070008")
    assert _parse_ip6(b":1::") is None and _parse_ip6(b"1:2:3:4:5:6:7:8:9") is None


def test_tables_are_bounded_and_evict(impl):
    from sipedge._py.flow import Flows

    clf = impl("classify").Classifier(allowlist())
    # 64 interleaved RTP flows through a table of 8 entries: each flow is evicted
    # before its next packet, so none is ever confirmed
    frames = [udp(UAC, 40000 + 2 * k, GW, 50000, rtp(i, 160 * i)) for i in range(3)
              for k in range(64)]
    lim = dict(max_flows=8, max_anns=8, window=1 << 16)
    assert set(kinds(clf, frames, flows=True, limits=lim)) == {"other"}
    assert set(kinds(clf, frames, flows=True)) == {"rtp"}
    assert Flows(max_flows=5).nsets * 4 == 8


def test_iter_pcap_equals_classify_pcap(impl, tmp_path):
    clf = impl("classify").Classifier(allowlist())
    frames = t38_call() * 3 + [udp(UAC, 40000, GW, 40002, rtp(i, 160 * i)) for i in range(9)]
    p = tmp_path / "c.pcap"
    p.write_bytes(pcap_bytes(frames))
    for flows in (True, False):
        rep = clf.classify_pcap(str(p), frames=True, flows=flows)
        st_ = clf.iter_pcap(str(p), flows=flows, chunk=7)
        chunks = list(st_)
        assert max(len(c) for c in chunks) <= 7
        assert [c for ch in chunks for c in ch] == list(rep.codes)
        assert st_.report.counts == rep.counts and st_.report.frames == rep.frames == len(frames)
        rb = clf.classify_buffer(p.read_bytes(), frames=True, flows=flows)
        assert list(rb.codes) == list(rep.codes)


# ------------------------------------------------------------------ native vs twin
AL = allowlist()
PY = _impl.python("classify").Classifier(AL)
NAT = _impl.native("classify").Classifier(AL) if "native" in IMPLEMENTATIONS else None
ADDRS = [UAC, GW, "198.51.100.6", "203.0.113.7"]
PORTS = [5060, 20000, 20001, 30000, 30001, 40000, 53]


@st.composite
def frame_strategy(draw):
    a, b = draw(st.sampled_from(ADDRS)), draw(st.sampled_from(ADDRS))
    sp, dp = draw(st.sampled_from(PORTS)), draw(st.sampled_from(PORTS))
    k = draw(st.integers(0, 7))
    if k == 0:
        media = draw(st.sampled_from(["audio", "image", "video"]))
        proto = draw(st.sampled_from(["RTP/AVP", "udptl", "UDP/TLS/RTP/SAVPF", "TCP/BFCP"]))
        port = draw(st.sampled_from(PORTS + [0]))
        extra = draw(st.sampled_from(["", "\r\na=rtcp-mux", "\r\na=rtcp:40000"]))
        return udp(a, sp, b, dp, sip(draw(st.sampled_from([INVITE, OK])),
                                     sdp(draw(st.sampled_from(ADDRS)),
                                         f"m={media} {port} {proto} 0{extra}")))
    if k in (1, 2, 3):
        return udp(a, sp, b, dp, rtp(draw(st.integers(0, 70)), draw(st.integers(0, 2 ** 32 - 1)),
                                     ssrc=draw(st.sampled_from([1, 2]))))
    if k == 4:
        return udp(a, sp, b, dp, draw(st.sampled_from([rtcp_payload(), rtcp_payload() + b"\0",
                                                       b"\r\n", b"MEGACO/1 [x]\r\nm=image 20000 "
                                                       b"udptl t38\r\nc=IN IP4 192.0.2.10"])))
    if k == 5:
        msg = sip(INVITE, sdp(a, "m=audio 20001 RTP/AVP 0"))
        lo = draw(st.integers(0, len(msg)))
        return tcp(a, sp, b, dp, draw(st.sampled_from([0, lo, 2 ** 32 - 5])), msg[lo:])
    if k == 6:
        msg = sip(OK)
        return sctp_data(a, sp, b, dp, draw(st.integers(0, 3)), 1, msg[:draw(st.integers(1, 90))])
    return draw(st.binary(max_size=120))


@pytest.mark.needs_native
@settings(max_examples=scaled(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frame_strategy(), max_size=60), st.integers(2, 40), st.integers(2, 12),
       st.integers(1, 20))
def test_flow_mode_native_equals_twin(frames, max_flows, max_anns, window):
    data = pcap_bytes(frames)
    lim = (max_flows, max_anns, window)
    p = PY.classify_buffer(data, frames=True, flows=True, limits=lim)
    n = NAT.classify_buffer(data, frames=True, flows=True, limits=lim)
    assert list(p.codes) == list(n.codes)
    assert p.counts == n.counts
    # runs that only count (native: no window of codes, re-labelled frames' counts moved)
    for c in (PY, NAT):
        only = c.classify_buffer(data, flows=True, limits=lim)
        assert only.frames == p.frames and only.counts == p.counts
    sp, sn = PY.flow_session(lim), NAT.flow_session(lim)
    for f in frames:
        assert sp.classify(f)._astuple() == sn.classify(f)._astuple()
        assert sp.relabelled == sn.relabelled


@pytest.mark.needs_native
@settings(max_examples=scaled(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 255)), max_size=12),
       st.integers(0, 3))
def test_flow_mode_mutated_captures(flips, which):
    rnd = random.Random(which)
    frames = t38_call() + [tcp(UAC, 5060, GW, 5060, 1, sip(INVITE, sdp(UAC, "m=image 20000 "
                                                                         "udptl t38")))]
    rnd.shuffle(frames)
    data = bytearray(pcap_bytes(frames))
    for pos, val in flips:
        data[24 + pos % (len(data) - 24)] = val  # frames and record headers, not the file header
    outs, counts = [], []
    for c in (PY, NAT):
        try:
            r = c.classify_buffer(bytes(data), frames=True, flows=True, limits=(8, 8, 4))
            outs.append(list(r.codes))
            counts.append(r.counts)
        except Exception as e:  # noqa: BLE001 - the same error from both
            outs.append((type(e).__name__, str(e)))
            counts.append(outs[-1])
        try:  # counting only: the same counts as with the codes
            counts.append(c.classify_buffer(bytes(data), flows=True, limits=(8, 8, 4)).counts)
        except Exception as e:  # noqa: BLE001
            counts.append((type(e).__name__, str(e)))
    assert outs[0] == outs[1]
    assert counts[0] == counts[1] == counts[2] == counts[3]


# the native flow mode decides most frames of a call in progress from the flow
# first (csrc/flow_inline.h): Ethernet + IPv4 (no options, not fragmented) UDP
# with a version-2 payload, on a flow SDP announced. Every header field that
# shortcut reads, at the values on either side of its conditions, against the twin.
def _media_frame(draw, src, sport, dst, dport) -> bytes:
    head = draw(st.sampled_from([b"\x80\x08", b"\x80\x88", b"\x80\xc8", b"\x81\xc9", b"\x80\xd5",
                                 b"\x80\xd6", b"\x80\xbf", b"\xa0\xc8", b"\x00\x01", b"\x40\x08",
                                 b"\xc0\x08", b"\x90\x08"]))
    plen = draw(st.sampled_from([1, 2, 7, 8, 11, 12, 13, 28, 40]))
    payload = (head + b"\x00\x01" + b"\x00\x00\x00\xa0" + b"\x00\x00\x12\x34"
               + b"\xd5" * 40)[:plen]
    if head[1] in (0xC8, 0xC9) and plen >= 8 and draw(st.booleans()):
        payload = rtcp_payload()  # a well-formed SR or RR
    f = bytearray(udp(src, sport, dst, dport, payload))
    tot = struct.unpack_from(">H", f, 16)[0]
    for mut in draw(st.lists(st.sampled_from(["none", "ethertype", "ihl", "frag", "tot", "ulen",
                                              "cut", "proto"]), min_size=1, max_size=2)):
        _mutate(draw, f, mut, tot, plen)
    return bytes(f)


def _mutate(draw, f: bytearray, mut: str, tot: int, plen: int) -> None:
    if mut == "ethertype" and len(f) >= 14:
        f[12:14] = draw(st.sampled_from([b"\x86\xdd", b"\x81\x00", b"\x08\x06"]))
    elif mut == "ihl" and len(f) > 14:
        f[14] = draw(st.sampled_from([0x44, 0x46, 0x4F, 0x55, 0x65]))
    elif mut == "frag" and len(f) >= 22:
        struct.pack_into(">H", f, 20, draw(st.sampled_from([0x2000, 0x4000, 0x0001, 0x1FFF,
                                                             0x8000, 0x6000])))
    elif mut == "tot" and len(f) >= 18:
        struct.pack_into(">H", f, 16, draw(st.sampled_from([0, 19, 20, 27, 28, 29, tot - 1, tot + 1,
                                                             0xFFFF])))
    elif mut == "ulen" and len(f) >= 40:
        struct.pack_into(">H", f, 38, draw(st.sampled_from([0, 7, 8, 9, 8 + plen - 1, 8 + plen + 1,
                                                             0xFFFF])))
    elif mut == "cut" and len(f) > 14:
        del f[draw(st.sampled_from([len(f) - 1, len(f) - 2, draw(st.integers(14, len(f) - 1))])):]
    elif mut == "proto" and len(f) > 23:
        f[23] = draw(st.sampled_from([6, 132, 47]))


@st.composite
def call_in_progress(draw):
    frames = [udp(UAC, 5060, GW, 5060, sip(INVITE, sdp(UAC, "m=audio 20000 RTP/AVP 8"
                                                       + draw(st.sampled_from(["", "\r\na=rtcp-mux",
                                                                               "\r\na=rtcp:20005"]))))),
              udp(GW, 5060, UAC, 5060, sip(OK, sdp(GW, draw(st.sampled_from(
                  ["m=audio 30000 RTP/AVP 8", "m=image 30000 udptl t38"])))))]
    flows = [(UAC, 20000, GW, 30000), (GW, 30000, UAC, 20000), (UAC, 20001, GW, 30001),
             (GW, 30001, UAC, 20001), (UAC, 20005, GW, 30001), (GW, 40000, UAC, 40002),
             ("203.0.113.7", 30000, UAC, 20000)]
    for _ in range(draw(st.integers(1, 40))):
        if draw(st.integers(0, 15)) == 0:  # a re-INVITE in between changes the announcements
            frames.append(udp(UAC, 5060, GW, 5060, sip(INVITE, sdp(UAC, draw(st.sampled_from(
                ["m=image 20000 udptl t38", "m=audio 20000 RTP/AVP 0", "m=audio 0 RTP/AVP 0"]))))))
        frames.append(_media_frame(draw, *draw(st.sampled_from(flows))))
    return frames


@pytest.mark.needs_native
@settings(max_examples=scaled(400), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(call_in_progress(), st.sampled_from([(4, 4, 3), (64, 64, 8), (65536, 16384, 64)]))
def test_flow_fast_path_native_equals_twin(frames, lim):
    data = pcap_bytes(frames)
    p = PY.classify_buffer(data, frames=True, flows=True, limits=lim)
    n = NAT.classify_buffer(data, frames=True, flows=True, limits=lim)
    assert list(p.codes) == list(n.codes)
    assert NAT.classify_buffer(data, flows=True, limits=lim).counts == p.counts
    sp, sn = PY.flow_session(lim), NAT.flow_session(lim)
    for f in frames:
        assert sp.classify(f)._astuple() == sn.classify(f)._astuple()
        assert sp.relabelled == sn.relabelled
