"""Issue 9, "Done when" 1: the firewall on a namespace that behaves like a whole SBC host.

Four namespaces, documentation addresses only::

    twilio 192.0.2.20 ---- 192.0.2.10 sbc 203.0.113.10 ---- 203.0.113.20 attacker
                                      | 198.51.100.10
                                      |
                           198.51.100.2 services: dnsmasq (DNS over UDP and TCP),
                                                  python3 -m http.server

The test allowlist trusts 192.0.2.0/24 (signaling and media). After
``firewall apply`` in enforce mode: from the SBC host, DNS over UDP and TCP and
outbound HTTP work; inbound "SSH" (a TCP listener on 22 with a banner) from the
attacker connects; sipp calls with RTP (sipp playing a G.711 pcap to the port
the SBC's SDP names, inside the RTP range) from the Twilio namespace complete;
the same from the attacker get no answer and the drop counters rise.

``backend`` is a parameter so the ipset backend can run the same test.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from sipedge.allowlist import Allowlist
from sipedge.firewall import ops
from sipedge.firewall.desired import desired_state, sbc_ports

from conftest import require_root, require_tool
from netns import Netns, link
from test_firewall import UDP_TOOL, allowlist_toml, udp_burst

#: the firewall code is the same Python in both passes (its one twin, _setdiff, has its
#: own tests over both implementations): run once, in the native pass of make test
pytestmark = pytest.mark.once

SBC_T, TWILIO = "192.0.2.10", "192.0.2.20"
SBC_A, ATTACKER = "203.0.113.10", "203.0.113.20"
SBC_S, SERVICES = "198.51.100.10", "198.51.100.2"
RTP_PORT = 12000  # in the SBC's RTP range 10000-20000 (the default)
G711 = "/usr/share/sip-tester/g711a.pcap"

UAC_PCAP = textwrap.dedent("""\
    <?xml version="1.0" encoding="ISO-8859-1" ?>
    <scenario name="uac with RTP from a pcap">
      <send retrans="500">
        <![CDATA[
          INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
          Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
          From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
          To: [service] <sip:[service]@[remote_ip]:[remote_port]>
          Call-ID: [call_id]
          CSeq: 1 INVITE
          Contact: sip:sipp@[local_ip]:[local_port]
          Max-Forwards: 70
          Content-Type: application/sdp
          Content-Length: [len]

          v=0
          o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
          s=-
          c=IN IP[media_ip_type] [media_ip]
          t=0 0
          m=audio [media_port] RTP/AVP 8
          a=rtpmap:8 PCMA/8000
        ]]>
      </send>
      <recv response="100" optional="true"/>
      <recv response="180" optional="true"/>
      <recv response="200" rtd="true"/>
      <send>
        <![CDATA[
          ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
          Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
          From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
          To: [service] <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
          Call-ID: [call_id]
          CSeq: 1 ACK
          Contact: sip:sipp@[local_ip]:[local_port]
          Max-Forwards: 70
          Content-Length: 0
        ]]>
      </send>
      <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>
      <pause milliseconds="1200"/>
      <send retrans="500">
        <![CDATA[
          BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
          Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
          From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
          To: [service] <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
          Call-ID: [call_id]
          CSeq: 2 BYE
          Contact: sip:sipp@[local_ip]:[local_port]
          Max-Forwards: 70
          Content-Length: 0
        ]]>
      </send>
      <recv response="200" crlf="true"/>
    </scenario>
    """)

SSH_LIKE = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 22))
s.listen(8)
print("ready", flush=True)
s.settimeout(60)
try:
    while True:
        c, _ = s.accept()
        c.sendall(b"SSH-2.0-OpenSSH_9.2 sipedge-test\\r\\n")
        c.close()
except socket.timeout:
    pass
"""

DNS_QUERY = """
import sys, dns.message, dns.query
q = dns.message.make_query("pstn.example.test", "A")
fn = dns.query.tcp if sys.argv[2] == "tcp" else dns.query.udp
r = fn(q, sys.argv[1], timeout=2)
print(r.answer[0][0].address if r.answer else "no answer")
"""

HTTP_GET = """
import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode().strip())
"""

TCP_BANNER = """
import socket, sys
c = socket.create_connection((sys.argv[1], 22), timeout=3)
print(c.recv(200).decode().strip())
"""


def _wait(what: str, check, deadline_s: float = 15.0):
    """Poll *check* until it returns a true value or the deadline passes."""
    end = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < end:
        try:
            last = check()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        time.sleep(0.1)
    raise AssertionError(f"{what} not ready after {deadline_s} s: {last!r}")


def _stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _counter(st: dict, text: str) -> int:
    return sum(r["packets"] for r in st["rules"] if r["rule"] == text)


def _sipp_uas(sbc: Netns, addr: str, calls: int) -> subprocess.Popen:
    return sbc.popen("sipp", "-sn", "uas", "-i", addr, "-p", "5060", "-mi", addr, "-mp", str(RTP_PORT),
                     "-rtp_echo", "-m", str(calls), "-nostdin", "-timeout", "30s",
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _sipp_uac(host: Netns, scenario: str, src: str, dst: str, calls: int, timeout: str):
    return host.exec("sipp", "-sf", scenario, f"{dst}:5060", "-i", src, "-p", "5070", "-mi", src,
                     "-mp", "16000", "-m", str(calls), "-r", "5", "-nostdin", "-timeout", timeout,
                     "-timeout_error", "-recv_timeout", "3000", check=False, timeout=60)


@pytest.fixture
def host(tmp_path):
    require_root()
    require_tool("nft", "sipp", "dnsmasq")
    with Netns("sbc") as sbc, Netns("twilio") as tw, Netns("attacker") as at, Netns("svc") as svc:
        link(sbc, tw, f"{SBC_T}/24", f"{TWILIO}/24")
        link(sbc, at, f"{SBC_A}/24", f"{ATTACKER}/24")
        link(sbc, svc, f"{SBC_S}/24", f"{SERVICES}/24")
        www = tmp_path / "www"
        www.mkdir()
        (www / "index.html").write_text("hello from services\n")
        procs = [
            svc.popen("dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                      f"--listen-address={SERVICES}", "--bind-interfaces", "--port=53",
                      "--host-record=pstn.example.test,192.0.2.20", "--pid-file=", "--user=root",
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
            svc.popen(sys.executable, "-m", "http.server", "8080", "--bind", SERVICES, "--directory",
                      str(www), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        ]
        ssh = sbc.popen(sys.executable, "-c", SSH_LIKE, SBC_A, stdout=subprocess.PIPE, text=True)
        procs.append(ssh)
        try:
            assert ssh.stdout.readline().strip() == "ready"
            # readiness: the services answer before any firewall exists
            _wait("dnsmasq", lambda: _dns(sbc, "udp") == "192.0.2.20")
            _wait("http.server", lambda: _http(sbc) == "hello from services")
            yield sbc, tw, at, svc
        finally:
            for p in procs:
                _stop(p)


def _dns(sbc: Netns, proto: str) -> str:
    return sbc.exec(sys.executable, "-c", DNS_QUERY, SERVICES, proto, check=False, timeout=10).stdout.strip()


def _http(sbc: Netns) -> str:
    return sbc.exec(sys.executable, "-c", HTTP_GET, f"http://{SERVICES}:8080/index.html", check=False,
                    timeout=10).stdout.strip()


@pytest.mark.parametrize("backend", ["nft", "ipset"])
def test_a_whole_sbc_host_keeps_working_under_enforce(host, tmp_path, backend):
    if backend == "ipset":
        require_tool("ipset", "iptables", "ip6tables", "iptables-restore", "ip6tables-restore")
    sbc, tw, at, _svc = host
    al_path = tmp_path / "lab.toml"
    al_path.write_text(allowlist_toml(["192.0.2.0/24"], ["192.0.2.0/24"]))
    al = Allowlist.load(str(al_path))
    d = desired_state(al, mode="enforce", sbc=sbc_ports(al))
    opts = ops.Options(netns=sbc.name, backend=backend, lock_file=str(tmp_path / "lock"),
                       state_dir=str(tmp_path / "st"))
    assert ops.apply(d, opts)["action"] == "create"
    st = ops.status(d, opts)
    assert st["drift"] is False

    # the host's own clients: DNS over UDP and TCP, outbound HTTP (many queries, new ports each)
    for _ in range(5):
        assert _dns(sbc, "udp") == "192.0.2.20"
        assert _dns(sbc, "tcp") == "192.0.2.20"
    assert _http(sbc) == "hello from services"
    # administration: SSH from an address the allowlist does not know still connects
    out = at.exec(sys.executable, "-c", TCP_BANNER, SBC_A, check=False, timeout=10)
    assert out.stdout.startswith("SSH-2.0-"), out.stderr

    scenario = tmp_path / "uac_pcap.xml"
    scenario.write_text(UAC_PCAP.replace("{pcap}", G711))
    before = ops.status(d, opts)
    # Twilio: two calls with RTP to the SBC's SIP port and to a port of its RTP range
    uas = _sipp_uas(sbc, SBC_T, 2)
    try:
        r = _sipp_uac(tw, str(scenario), TWILIO, SBC_T, 2, "30s")
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    finally:
        _stop(uas)
    assert uas.returncode == 0
    mid = ops.status(d, opts)
    assert _counter(mid, "ip saddr @media_v4 udp dport 10000-20000 counter accept") > \
        _counter(before, "ip saddr @media_v4 udp dport 10000-20000 counter accept")  # RTP arrived
    assert _counter(mid, "ip saddr @signaling_v4 udp dport 5060 counter accept") > \
        _counter(before, "ip saddr @signaling_v4 udp dport 5060 counter accept")
    assert udp_burst(sbc, tw, SBC_T, TWILIO, RTP_PORT, 200, 500) == 200  # every RTP packet
    # no trusted packet met a drop rule
    assert _counter(mid, "udp dport 5060 counter drop") == 0
    assert _counter(mid, "udp dport 10000-20000 counter drop") == 0

    # the attacker: the same call gets no answer, its RTP is dropped, the counters rise
    uas = _sipp_uas(sbc, SBC_A, 1)
    try:
        r = _sipp_uac(at, str(scenario), ATTACKER, SBC_A, 1, "5s")
        assert r.returncode != 0
    finally:
        _stop(uas)
    assert udp_burst(sbc, at, SBC_A, ATTACKER, RTP_PORT, 50, 500, max_s=2.0) == 0
    after = ops.status(d, opts)
    assert _counter(after, "udp dport 5060 counter drop") >= 2  # the INVITE and its retransmissions
    assert _counter(after, "udp dport 10000-20000 counter drop") >= 50
    # and the host's own traffic still works after all that
    assert _dns(sbc, "udp") == "192.0.2.20" and _dns(sbc, "tcp") == "192.0.2.20"
    assert ops.status(d, opts)["drift"] is False
