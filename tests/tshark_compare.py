"""Compare sipedge's per-frame kinds with tshark's per-frame protocol stacks.

tshark's ``frame.protocols`` (with ``-o rtp.heuristic_rtp:TRUE``) is mapped to
one of our kinds: the first of sip, rtcp, rtp, stun, tls present in the stack,
else other -- except that an ICMP error quoting a packet (``ip:icmp:ip:udp:rtp``)
is ICMP, i.e. other: tshark dissects the quoted datagram, but the frame is not
media. Agreement is measured on the frames tshark calls SIP or RTP.
"""
from __future__ import annotations

import subprocess
from typing import NamedTuple

KIND_ORDER = ("sip", "rtcp", "rtp", "stun", "tls")
NEVER_RTP = ("dns", "snmp", "ntp")


def tshark_kind(protocols: str) -> str:
    ps = protocols.strip().split(":")
    if "icmp" in ps or "icmpv6" in ps:
        return "other"
    if "t38" in ps:  # T.38 fax over UDPTL
        return "udptl"
    for k in KIND_ORDER:
        if k in ps:
            return k
    return "other"


def read_tsv(path: str) -> list[str]:
    """frame.protocols of each frame, in frame order, from a 2-column TSV."""
    out = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            num, _, protos = line.rstrip("\n").partition("\t")
            assert int(num) == n, f"{path}: frame numbers out of order at line {n}"
            out.append(protos)
    return out


def run_tshark(capture: str) -> list[str]:
    out = subprocess.run(["tshark", "-r", capture, "-o", "rtp.heuristic_rtp:TRUE", "-T", "fields",
                          "-e", "frame.number", "-e", "frame.protocols"],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    return [line.partition("\t")[2] for line in out.splitlines() if line.strip()]


class Agreement(NamedTuple):
    frames: int
    sip_rtp: int        # frames tshark calls SIP or RTP
    agree: int          # ... of which we say the same kind
    never_rtp_as_rtp: int  # frames tshark calls DNS/SNMP/NTP that we call RTP
    mismatches: dict

    @property
    def ratio(self) -> float:
        return self.agree / self.sip_rtp if self.sip_rtp else 1.0


def compare(protocols: list[str], kinds: list[str]) -> Agreement:
    assert len(protocols) == len(kinds), (len(protocols), len(kinds))
    sip_rtp = agree = bad = 0
    mism: dict = {}
    for protos, ours in zip(protocols, kinds):
        theirs = tshark_kind(protos)
        if theirs in ("sip", "rtp"):
            sip_rtp += 1
            agree += theirs == ours
        if ours == "rtp" and any(p in protos.split(":") for p in NEVER_RTP):
            bad += 1
        if theirs != ours:
            mism[(theirs, ours)] = mism.get((theirs, ours), 0) + 1
    return Agreement(len(kinds), sip_rtp, agree, bad, mism)


class Precision(NamedTuple):
    frames: int
    false_sip_rtp: int  # frames tshark calls another protocol that we call sip/rtp/rtcp
    t38_as_rtp: int     # T.38 (UDPTL) frames we call rtp
    recall: float       # of the frames tshark calls SIP or RTP, the share we call the same

    @property
    def false_share(self) -> float:
        return self.false_sip_rtp / self.frames if self.frames else 0.0


def precision(protocols: list[str], kinds: list[str]) -> Precision:
    """Frame by frame: what we call sip/rtp/rtcp that tshark calls something else."""
    assert len(protocols) == len(kinds), (len(protocols), len(kinds))
    fp = t38 = 0
    for protos, ours in zip(protocols, kinds):
        theirs = tshark_kind(protos)
        if ours in ("sip", "rtp", "rtcp") and theirs != ours:
            fp += 1
        if theirs == "udptl" and ours == "rtp":
            t38 += 1
    return Precision(len(kinds), fp, t38, compare(protocols, kinds).ratio)
