"""Lab pieces for the locate tests: run Python inside a namespace, a dnsmasq test
zone, sipp OPTIONS servers. Documentation addresses only; every process is
started here and stopped here by its own PID.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from netns import Netns

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


class InNetns:
    """A worker thread that lives inside a network namespace: ``w.call(fn, *args)``
    runs *fn* there (sockets it opens belong to that namespace, as do threads it starts)."""

    def __init__(self, ns: Netns) -> None:
        path = f"/run/netns/{ns.name}"

        def enter() -> None:
            fd = os.open(path, os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns {path}: {os.strerror(err)}")
            finally:
                os.close(fd)

        self._pool = ThreadPoolExecutor(max_workers=1, initializer=enter)

    def call(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        return self._pool.submit(fn, *args, **kw).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def stop(proc: Optional[subprocess.Popen]) -> None:
    """End a process this test started (by its PID), waiting a bounded time."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, signal.SIGCONT)
    except ProcessLookupError:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


class Dnsmasq:
    """dnsmasq serving a test zone on *address* in *ns*; ``lines`` are dnsmasq
    config lines (host-record=, srv-host=, naptr-record=, ...). Unknown names
    under ``domains`` get NXDOMAIN; other names get REFUSED (no upstream)."""

    def __init__(self, ns: Netns, address: str, lines: Sequence[str], workdir: Path,
                 domains: Sequence[str] = ("example.test",), ttl: int = 60) -> None:
        self.ns, self.address = ns, address
        workdir.mkdir(parents=True, exist_ok=True)
        conf = workdir / f"dnsmasq-{address}.conf"
        base = ["no-resolv", "no-hosts", "bind-interfaces", f"listen-address={address}",
                "port=53", f"local-ttl={ttl}", "cache-size=0"]
        base += [f"local=/{d}/" for d in domains]
        conf.write_text("\n".join(base + list(lines)) + "\n")
        self.log = workdir / f"dnsmasq-{address}.log"
        self.proc: Optional[subprocess.Popen] = ns.popen(
            "dnsmasq", "--keep-in-foreground", f"--conf-file={conf}", "--pid-file=",
            "--user=root", f"--log-facility={self.log}",
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._wait_ready()

    def _wait_ready(self, limit: float = 10.0) -> None:
        import dns.message
        import dns.query

        end = time.monotonic() + limit
        q = dns.message.make_query("ready.example.test", "A")
        w = InNetns(self.ns)
        try:
            while True:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"dnsmasq exited: {self.proc.stderr.read().decode()!r}")
                try:
                    w.call(dns.query.udp, q, self.address, timeout=0.2)
                    return
                except Exception:
                    if time.monotonic() > end:
                        raise RuntimeError(f"dnsmasq on {self.address} not answering "
                                           f"after {limit} s")
                    time.sleep(0.05)
        finally:
            w.close()

    def pause(self) -> None:
        """Stop answering (SIGSTOP): queries time out."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def close(self) -> None:
        stop(self.proc)
        self.proc = None


OPTIONS_UAS = """<?xml version="1.0" encoding="UTF-8" ?>
<scenario name="sipedge options {code}">
  <recv request="OPTIONS" crlf="true"/>
  {pause}
  <send>
    <![CDATA[
      SIP/2.0 {code} {reason}
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
</scenario>
"""

OPTIONS_SILENT = """<?xml version="1.0" encoding="UTF-8" ?>
<scenario name="sipedge options silent">
  <recv request="OPTIONS"/>
</scenario>
"""


def sipp_uas(ns: Netns, address: str, workdir: Path, code: Optional[int] = 200,
             reason: str = "OK", port: int = 5060, transport: str = "u1",
             delay_ms: int = 0) -> subprocess.Popen:
    """A sipp UAS answering every OPTIONS with *code* (None: never answers),
    *delay_ms* after it arrived (sipp's own pause).
    Ready when its socket is bound (polled with ``ss``, bounded)."""
    workdir.mkdir(parents=True, exist_ok=True)
    name = f"uas-{address}-{port}-{transport}-{code}-{delay_ms}.xml".replace(":", "_")
    sf = workdir / name
    pause = f'<pause milliseconds="{delay_ms}"/>' if delay_ms else ""
    sf.write_text(OPTIONS_SILENT if code is None
                  else OPTIONS_UAS.format(code=code, reason=reason, pause=pause))
    proc = ns.popen("sipp", "-sf", str(sf), "-i", address, "-p", str(port), "-t", transport,
                    "-nostdin", "-nd",
                    cwd=str(workdir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    proto = "-u" if transport == "u1" else "-t"
    needle = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    end = time.monotonic() + 10
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"sipp on {address}:{port} exited: {proc.stderr.read().decode()!r}")
        out = ns.exec("ss", "-lnH" if transport != "u1" else "-anH", proto).stdout
        if needle in out:
            return proc
        if time.monotonic() > end:
            stop(proc)
            raise RuntimeError(f"sipp on {address}:{port} not listening after 10 s")
        time.sleep(0.05)
