"""Against tshark on traffic this test makes: a sipp call with RTP between two
network namespaces (documentation addresses), plus DNS, NTP and SNMP
datagrams, captured with tcpdump inside one namespace, then compared frame by
frame: ``sipedge classify --frames`` against tshark's dissection."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from classify_util import ROLES
from conftest import require_root, require_tool
from netns import Netns, link
from tshark_compare import compare, run_tshark

pytestmark = [pytest.mark.netns, pytest.mark.slow]

ALLOWLIST = ROLES + """
[[ranges]]
role = "signaling"
edge = "lab"
prefixes = ["192.0.2.2/32", "2001:db8:77::2/128"]
[[ranges]]
role = "media"
edge = "*"
prefixes = ["198.51.100.0/24"]
"""

NOISE = r"""
import socket, sys
from scapy.all import DNS, DNSQR, NTP, SNMP, raw
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("192.0.2.1", 40123))
for i in range(20):
    # DNS ids with the RTP version bits set: the port rule must keep them out
    s.sendto(raw(DNS(id=0x8000 + i, qd=DNSQR(qname=f"h{i}.example.com"))), ("192.0.2.2", 53))
    s.sendto(raw(NTP()), ("192.0.2.2", 123))
    s.sendto(raw(SNMP()), ("192.0.2.2", 161))
"""


def _dev(ns: Netns) -> str:
    out = ns.exec("ip", "-o", "link", "show", "type", "veth").stdout
    return out.split(":")[1].strip().split("@")[0]


def _wait_for(what: str, ready, seconds: float = 30.0) -> None:
    """Poll *ready* until it is true; fail after *seconds* (a readiness check with
    a bounded deadline, not a sleep that hopes the other side is ready)."""
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {seconds:.0f} s waiting for {what}")
        time.sleep(0.02)


def _listening(ns: Netns, transport: str, port: int) -> bool:
    proto = "-u" if transport.startswith("u") else "-t"
    return bool(ns.exec("ss", "-H", "-ln", proto, f"sport = :{port}").stdout.strip())


def _sip_captured(cap, al, calls: int) -> bool:
    """Whether the capture holds every call's SIP from both sides yet (3 messages
    each way per call): then stopping tcpdump loses none of it."""
    from sipedge.allowlist import Allowlist
    from sipedge.classify import Classifier
    from sipedge.errors import CaptureError

    try:
        rep = Classifier(Allowlist.load(str(al))).classify_pcap(str(cap))
    except CaptureError:  # a record half written
        return False
    return (rep.counts.get(("sip", True, "lab"), 0) >= 3 * calls
            and rep.counts.get(("sip", False, None), 0) >= 3 * calls)


def _stop(p: subprocess.Popen, sig=signal.SIGTERM) -> None:
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)


VARIANTS = {
    # name: (uac address, uas address, sipp transport, link addresses v4, v6)
    "udp-ipv4": ("192.0.2.1", "192.0.2.2", "u1", None),
    "tcp-ipv6": ("2001:db8:77::1", "2001:db8:77::2", "t1",
                 ("2001:db8:77::1/64", "2001:db8:77::2/64")),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_sipp_call_against_tshark(tmp_path, variant):
    require_root()
    require_tool("sipp", "tshark", "tcpdump", "ip", "ss")
    media = "/usr/share/sip-tester"
    if not os.path.exists(os.path.join(media, "g711a.pcap")):
        pytest.fail(f"sipp's RTP sample {media}/g711a.pcap is missing (package sip-tester)")
    os.symlink(media, tmp_path / "pcap")
    cap = tmp_path / "call.pcap"
    al = tmp_path / "lab.toml"
    al.write_text(ALLOWLIST)
    procs = []
    uac_ip, uas_ip, transport, v6 = VARIANTS[variant]
    host = f"[{uas_ip}]" if ":" in uas_ip else uas_ip
    with Netns("uac") as a, Netns("uas") as b:
        link(a, b, "192.0.2.1/24", "192.0.2.2/24", v6=v6)
        try:
            dump = a.popen("tcpdump", "-n", "-U", "-s", "0", "-i", _dev(a), "-w", str(cap),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            procs.append(dump)
            # wait until tcpdump listens (it prints "listening on ...")
            line = dump.stderr.readline().decode()
            assert "listening" in line, line
            uas = b.popen("sipp", "-sn", "uas", "-i", uas_ip, "-p", "5060", "-t", transport,
                          "-mi", uas_ip, "-rtp_echo", "-mp", "16000", "-m", "2",
                          "-timeout", "60s", "-nostdin", cwd=tmp_path,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(uas)
            _wait_for("the sipp UAS to listen on port 5060",
                      lambda: uas.poll() is None and _listening(b, transport, 5060))
            uac = a.popen("sipp", f"{host}:5060", "-sn", "uac_pcap", "-i", uac_ip,
                          "-p", "5070", "-t", transport, "-mi", uac_ip, "-m", "2", "-l", "2", "-r", "5",
                          "-timeout", "60s", "-nostdin", cwd=tmp_path,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            procs.append(uac)
            a.exec(sys.executable, "-c", NOISE, timeout=60)
            uac.wait(timeout=90)
            assert uac.returncode == 0, uac.stderr.read().decode()[-2000:]
            _wait_for("tcpdump to write both calls' SIP", lambda: _sip_captured(cap, al, 2))
        finally:
            for p in reversed(procs):
                _stop(p, signal.SIGINT if p is procs[0] else signal.SIGTERM)
    assert cap.stat().st_size > 10000

    out = subprocess.run([sys.executable, "-m", "sipedge", "classify", str(cap), "--frames",
                          "--allowlist", str(al)], capture_output=True, text=True, check=True,
                         timeout=120).stdout.splitlines()
    ours = [line.split("\t") for line in out]
    assert [int(r[0]) for r in ours] == list(range(1, len(ours) + 1))
    theirs = run_tshark(str(cap))
    a = compare(theirs, [r[1] for r in ours])
    print(f"sipp capture {variant}: {a.frames} frames, {a.agree}/{a.sip_rtp} = {a.ratio:.2%} of SIP/RTP "
          f"frames agree with tshark; mismatches (tshark, sipedge): {a.mismatches}")
    rtp = sum(1 for r in ours if r[1] == "rtp")
    assert rtp > 300, "the call carried no RTP"
    noise = sum(1 for p in theirs if any(x in p.split(":") for x in ("dns", "ntp", "snmp")))
    assert noise >= 60
    assert a.never_rtp_as_rtp == 0
    assert a.ratio >= 0.995, a
    # trust: SIP from the lab edge's signaling address on 5060 is trusted, the uac's is not
    from sipedge.allowlist import Allowlist
    from sipedge.classify import Classifier

    rep = Classifier(Allowlist.load(str(al))).classify_pcap(str(cap))
    assert rep.counts.get(("sip", True, "lab"), 0) >= 6
    assert rep.counts.get(("sip", False, None), 0) >= 6
