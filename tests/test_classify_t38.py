"""A T.38 fax call made by this test, scored against tshark: sipp (scenarios in
tests/sipp/) places an audio call between two network namespaces
(documentation addresses), plays RTP, re-INVITEs to ``m=image ... udptl t38``;
the test then sends UDPTL datagrams whose first bytes look like RTP (sipp's
-rtp_echo on the far side echoes them back), all captured with tcpdump. The
flow mode must call none of them RTP; the per-frame mode cannot tell."""
from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time

import pytest

from conftest import require_root, require_tool
from netns import Netns, link
from tshark_compare import precision, run_tshark

pytestmark = [pytest.mark.netns, pytest.mark.slow]

HERE = os.path.dirname(os.path.abspath(__file__))
UDPTL_SENDER = r"""
import socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("192.0.2.1", 17000))
for i in range(40):
    # UDPTL (T.38): sequence number 0x8000 + i (so the first byte reads as RTP
    # version 2), a primary IFP (t30-indicator), no redundancy
    s.sendto(struct.pack(">H", 0x8000 + i) + b"\x02\x00\x01\x00" + bytes(10), ("192.0.2.2", 16000))
    time.sleep(0.02)
"""


def _dev(ns: Netns) -> str:
    out = ns.exec("ip", "-o", "link", "show", "type", "veth").stdout
    return out.split(":")[1].strip().split("@")[0]


def _stop(p: subprocess.Popen, sig=signal.SIGTERM) -> None:
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)


def _wait_for(path, needle: bytes, deadline_s: float) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if path.exists() and needle in path.read_bytes():
            return
        time.sleep(0.05)
    pytest.fail(f"{needle!r} did not appear in the capture within {deadline_s} s")


def test_t38_reinvite_capture_against_tshark(tmp_path):
    require_root()
    require_tool("sipp", "tshark", "tcpdump", "ip")
    media = "/usr/share/sip-tester"
    if not os.path.exists(os.path.join(media, "g711a.pcap")):
        pytest.fail(f"sipp's RTP sample {media}/g711a.pcap is missing (package sip-tester)")
    os.symlink(media, tmp_path / "pcap")
    cap = tmp_path / "t38.pcap"
    procs = []
    with Netns("uac") as a, Netns("uas") as b:
        link(a, b, "192.0.2.1/24", "192.0.2.2/24")
        try:
            dump = a.popen("tcpdump", "-n", "-U", "-s", "0", "-i", _dev(a), "-w", str(cap),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            procs.append(dump)
            line = dump.stderr.readline().decode()
            assert "listening" in line, line
            uas = b.popen("sipp", "-sf", os.path.join(HERE, "sipp", "uas_t38.xml"),
                          "-i", "192.0.2.2", "-p", "5060", "-mi", "192.0.2.2", "-mp", "16000",
                          "-rtp_echo", "-m", "1", "-timeout", "60s", "-nostdin", cwd=tmp_path,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(uas)
            uac = a.popen("sipp", "192.0.2.2:5060", "-sf", os.path.join(HERE, "sipp",
                                                                         "uac_t38.xml"),
                          "-i", "192.0.2.1", "-p", "5070", "-mi", "192.0.2.1", "-mp", "6000",
                          "-m", "1", "-timeout", "60s", "-nostdin", cwd=tmp_path,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            procs.append(uac)
            # the 200 OK to the re-INVITE (T.38 accepted) is in the capture: send fax
            _wait_for(cap, b"m=image 16000 udptl t38", 40)
            a.exec(sys.executable, "-c", UDPTL_SENDER, timeout=60)
            uac.wait(timeout=60)
            assert uac.returncode == 0, uac.stderr.read().decode()[-2000:]
            time.sleep(0.3)  # let tcpdump write the last echoes before it is stopped
        finally:
            for p in reversed(procs):
                _stop(p, signal.SIGINT if p is procs[0] else signal.SIGTERM)

    out = subprocess.run([sys.executable, "-m", "sipedge", "classify", str(cap), "--frames"],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    ours = [line.split("\t")[1] for line in out.splitlines()]
    stateless = [line.split("\t")[1] for line in subprocess.run(
        [sys.executable, "-m", "sipedge", "classify", str(cap), "--frames", "--stateless"],
        capture_output=True, text=True, check=True, timeout=120).stdout.splitlines()]
    theirs = run_tshark(str(cap))
    pr = precision(theirs, ours)
    t38 = sum(1 for p in theirs if "t38" in p.split(":"))
    print(f"T.38 sipp capture: {len(ours)} frames, {t38} T.38 by tshark, {ours.count('udptl')} "
          f"udptl by sipedge; recall {pr.recall:.3%}, {pr.false_sip_rtp} frames "
          f"({pr.false_share:.3%}) sip/rtp/rtcp against tshark, {pr.t38_as_rtp} T.38 as RTP; "
          f"per-frame mode: {precision(theirs, stateless).t38_as_rtp} T.38 as RTP")
    assert t38 >= 40, "tshark saw no T.38: the re-INVITE did not set it up"
    assert ours.count("rtp") > 200, "the call carried no RTP"
    assert precision(theirs, stateless).t38_as_rtp >= 40  # the datagrams do look like RTP
    assert pr.t38_as_rtp == 0
    assert ours.count("udptl") >= 40
    assert pr.false_share <= 0.001, pr
    assert pr.recall >= 0.999, pr
