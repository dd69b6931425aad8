"""Digests of results that must not depend on the machine: `make test-arm64`
runs this on the host and inside the arm64 root, in both implementations, and
requires every digest to be the same (x86_64 and aarch64 differ in ``char``
signedness and alignment rules; both are LP64 little-endian).

    python tests/arch_digest.py [--captures DIR] [--snapshot FILE] [--write-snapshot FILE]

Prints one JSON object {name: sha256 prefix}. Only the public API is used:
lookups over the Twilio allowlist (its own prefixes' edges and random
addresses), orders and sticky picks of a seeded TargetSet, per-frame verdicts
and whole-capture codes over synthetic frames (bytes above 0x7f included) and
the given captures, and the snapshot bytes; --snapshot loads a snapshot
written elsewhere (on the other architecture) and digests its lookups.
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import ipaddress
import json
import os
import random
import struct
import sys
import tempfile


def _h(obj) -> str:
    return hashlib.sha256(repr(obj).encode()).hexdigest()[:20]


def _addresses(al, rng: random.Random) -> list[str]:
    out = []
    for e in al.entries:
        net = e.network
        first, last = int(net.network_address), int(net.broadcast_address)
        top = (1 << net.max_prefixlen) - 1
        for a in (first - 1, first, (first + last) // 2, last, last + 1):
            if 0 <= a <= top:
                out.append(str(ipaddress.ip_address(a) if net.version == 4
                               else ipaddress.IPv6Address(a)))
    out += [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(20000)]
    out += [str(ipaddress.IPv6Address(rng.getrandbits(128))) for _ in range(2000)]
    # text that is not an address, bytes above 0x7f among it
    out += ["", "1.2.3", "1.2.3.4.5", "01.2.3.4", "1.2.3.256", "\u0661.2.3.4", "1.2.3.\xb9",
            "::g", "1.2.3.4\x00", "\udcff.1.1.1"]
    return out


def _lookups(al, addrs) -> list:
    res = []
    for a in addrs:
        try:
            m = al.match(a)
        except Exception as e:  # noqa: BLE001 - the kind of refusal is part of the result
            res.append(("error", type(e).__name__))
        else:
            res.append(None if m is None else tuple(m))
    return res


def _frames(rng: random.Random) -> list[bytes]:
    """Ethernet/IPv4/UDP and TCP frames with SIP, RTP, STUN and random
    payloads, then random byte flips (many land above 0x7f)."""
    payloads = [
        b"INVITE sip:bob@203.0.113.5 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.1\r\n\r\n",
        b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"OPTIONS sips:x SIP/2.0\n", b"\r\n", b"\r\n\r\n",
        bytes([0x80, 0x00, 0x12, 0x34]) + bytes(8) + bytes(160),
        bytes([0x81, 0xC8, 0x00, 0x06]) + bytes(24),
        struct.pack("!HHI", 1, 0, 0x2112A442) + bytes(12),
        bytes([0x16, 0x03, 0x01, 0x00, 0x10]) + bytes(16),
    ]
    frames = []
    for i in range(6000):
        p = rng.choice(payloads) if i % 4 else bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 64)))
        sport, dport = rng.choice([(5060, 5060), (10000, 20000), (5061, 40000), (3478, 50000)])
        src = bytes([54, 172, 60, rng.randrange(256)]) if i % 3 else bytes([203, 0, 113, 7])
        if i % 5 == 4:
            l4 = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 0x50, 0x18, 512, 0, 0) + p
            proto = 6
        else:
            l4 = struct.pack("!HHHH", sport, dport, 8 + len(p), 0) + p
            proto = 17
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0, 0, 64, proto, 0, src,
                         bytes([192, 0, 2, 1])) + l4
        f = bytearray(bytes(6) + bytes(6) + b"\x08\x00" + ip)
        for _ in range(rng.choice([0, 0, 1, 3])):
            f[rng.randrange(len(f))] = rng.getrandbits(8)
        if rng.random() < 0.1:
            f = f[:rng.randrange(len(f) + 1)]
        frames.append(bytes(f))
    return frames


def _pcap(frames: list[bytes]) -> bytes:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, f in enumerate(frames):
        out.append(struct.pack("<IIII", i, 0, len(f), len(f)) + f)
    return b"".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--captures", help="a folder of .pcap/.pcapng files to classify")
    ap.add_argument("--snapshot", help="a snapshot file made elsewhere: load it and digest its lookups")
    ap.add_argument("--write-snapshot", help="write this machine's snapshot of the Twilio allowlist here")
    args = ap.parse_args(argv)

    import sipedge

    rng = random.Random(20261130)
    out = {"implementation": sorted(set(sipedge.implementation().values()))}
    al = sipedge.Allowlist.twilio()
    addrs = _addresses(al, rng)
    out["lookups"] = _h(_lookups(al, addrs))

    targets = [sipedge.Target(f"sip:sbc{i}.example.com", priority=p, weight=w)
               for i, (p, w) in enumerate([(10, 60), (10, 20), (10, 20), (10, 0), (20, 5), (20, 7)])]
    ts = sipedge.TargetSet(targets, seed=0x5EED)
    out["orders"] = _h([[str(t.uri) for t in ts.order()] for _ in range(3000)])
    out["picks"] = _h([str(ts.pick(key=f"call-{i}@example.com").uri) for i in range(3000)])
    ts.mark_failed(targets[0])
    out["orders_failed"] = _h([[str(t.uri) for t in ts.order()] for _ in range(3000)])

    clf = sipedge.Classifier(al)
    frames = _frames(rng)
    fields = ("kind", "trusted", "role", "edge", "src", "dst", "proto", "sport", "dport")
    out["verdicts"] = _h([tuple(getattr(v, k) for k in fields)
                          for v in (clf.classify(f, linktype=1) for f in frames)])
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "synthetic.pcap")
        with open(path, "wb") as f:
            f.write(_pcap(frames))
        rep = clf.classify_pcap(path, frames=True)
        out["capture_codes"] = _h(list(rep.codes))
        snap = os.path.join(d, "twilio.snap")
        al.save_snapshot(snap)
        with open(snap, "rb") as f:
            data = f.read()
        out["snapshot_bytes"] = hashlib.sha256(data).hexdigest()[:20]
        if args.write_snapshot:
            with open(args.write_snapshot, "wb") as f:
                f.write(data)
    if args.snapshot:
        other = sipedge.Allowlist.load_snapshot(args.snapshot)
        out["foreign_snapshot_lookups"] = _h(_lookups(other, addrs))
    if args.captures:
        for p in sorted(glob.glob(os.path.join(args.captures, "*.pcap*"))):
            rep = clf.classify_pcap(p, frames=True)
            out["capture:" + os.path.basename(p)] = _h(list(rep.codes))
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
