"""Refuse firewall configurations that would break the host they run on.

Before an apply in ``enforce`` mode, sipedge reads, inside the target network
namespace, the range Linux picks local ports from
(``net.ipv4.ip_local_port_range``, usually 32768-60999) and the SSH port(s)
(22, plus ``Port`` lines of /etc/ssh/sshd_config and sshd_config.d/*.conf),
and refuses (:class:`~sipedge.errors.UnsafeConfigError`, exit 8) a drop rule
that covers any of them: replies to the host's own DNS/NTP/HTTP clients come
back to those ports, and an administrator's SSH must keep working. The
conntrack accept in front of the drops already lets replies through; the
refusal is the second line, so a wrong ``--rtp-ports`` is caught before it
matters. ``--force`` (``Desired.force``) skips the checks.
"""
from __future__ import annotations

import glob
import os
from typing import Iterable, List, Optional, Tuple

from ..errors import UnsafeConfigError
from . import nsutil
from .desired import Desired

SSHD_CONFIGS = ("/etc/ssh/sshd_config", "/etc/ssh/sshd_config.d/*.conf")


def ephemeral_range(netns: Optional[str]) -> Optional[Tuple[int, int]]:
    """``net.ipv4.ip_local_port_range`` as read inside *netns* (None: unreadable)."""
    with nsutil.entered(netns):
        try:
            with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
                lo, hi = (int(x) for x in f.read().split()[:2])
        except (OSError, ValueError):
            return None
    return lo, hi


def ssh_ports(paths: Iterable[str] = SSHD_CONFIGS) -> List[int]:
    """22 and every ``Port N`` of the sshd configuration files that exist."""
    ports = {22}
    for pattern in paths:
        for path in sorted(glob.glob(pattern)):
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    for line in f:
                        words = line.split("#", 1)[0].split()
                        if len(words) == 2 and words[0].lower() == "port" and words[1].isdigit():
                            p = int(words[1])
                            if 1 <= p <= 65535:
                                ports.add(p)
            except OSError:
                continue
    return sorted(ports)


def problems(d: Desired, ephemeral: Optional[Tuple[int, int]], ssh: Iterable[int]) -> List[str]:
    """One line per drop rule that would break the host (empty: safe)."""
    out = []
    for proto, low, high in d.drop_ranges():
        span = str(low) if low == high else f"{low}-{high}"
        if ephemeral and low <= ephemeral[1] and high >= ephemeral[0]:
            out.append(f"the drop rule `{proto} dport {span} drop` covers the namespace's "
                       f"ephemeral ports {ephemeral[0]}-{ephemeral[1]} "
                       "(net.ipv4.ip_local_port_range), where replies to the host's own clients "
                       "arrive; give the ports the SBC really listens on ("
                       + ("--rtp-ports, e.g. 10000-20000/udp" if proto == "udp" and high - low > 100
                          else "--sip-ports / --rtp-ports or [sbc]")
                       + ") or narrow ip_local_port_range, or pass --force")
        for p in ssh:
            if proto == "tcp" and low <= p <= high:
                out.append(f"the drop rule `tcp dport {span} drop` covers SSH port {p}: untrusted "
                           "SSH would time out; take the port out of --sip-ports/[sbc], or pass --force")
    return out


def check(d: Desired, netns: Optional[str]) -> None:
    """Raise UnsafeConfigError naming the first problem, unless ``d.force``."""
    if d.force or d.mode != "enforce":
        return
    found = problems(d, ephemeral_range(netns), ssh_ports())
    if found:
        raise UnsafeConfigError(f"refusing to apply: {found[0]}")
