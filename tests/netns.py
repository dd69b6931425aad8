"""Test hosts in network namespaces this test run creates, and removes.

Only documentation addresses are used (192.0.2.0/24, 198.51.100.0/24,
203.0.113.0/24, 2001:db8::/32). Namespaces are named ``sxt-<pid>-<n>`` so
parallel runs never collide, and are deleted even when the test fails.
"""
from __future__ import annotations

import itertools
import os
import subprocess
from typing import Optional

_counter = itertools.count()


def run(*args: str, ns: Optional[str] = None, check: bool = True, **kw) -> subprocess.CompletedProcess:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    return subprocess.run(cmd, check=check, capture_output=True, text=True, **kw)


class Netns:
    """One network namespace with loopback up; ``with Netns() as ns: ...``."""

    def __init__(self, tag: str = "h") -> None:
        self.name = f"sxt-{os.getpid()}-{tag}{next(_counter)}"
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True)
        self.exec("ip", "link", "set", "lo", "up")

    def exec(self, *args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
        return run(*args, ns=self.name, check=check, **kw)

    def popen(self, *args: str, **kw) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", self.name, *args], **kw)

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], check=False, capture_output=True)

    def __enter__(self) -> "Netns":
        return self

    def __exit__(self, *exc) -> None:
        self.delete()


def link(a: Netns, b: Netns, addr_a: str, addr_b: str, v6: Optional[tuple[str, str]] = None) -> None:
    """A veth pair between *a* and *b* with addresses like ``192.0.2.1/24``."""
    n = next(_counter)
    va, vb = f"sxa{os.getpid() % 100000}x{n}", f"sxb{os.getpid() % 100000}x{n}"
    subprocess.run(["ip", "link", "add", va[:15], "netns", a.name, "type", "veth",
                    "peer", "name", vb[:15], "netns", b.name], check=True, capture_output=True)
    for ns, dev, addr in ((a, va[:15], addr_a), (b, vb[:15], addr_b)):
        ns.exec("ip", "addr", "add", addr, "dev", dev)
        if v6 is not None:
            ns.exec("ip", "-6", "addr", "add", v6[0] if ns is a else v6[1], "dev", dev, "nodad")
        ns.exec("ip", "link", "set", dev, "up")
