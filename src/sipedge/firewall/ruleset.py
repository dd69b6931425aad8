"""Render the desired nftables state as ``nft -f`` text, for people to review.

sipedge owns one table (``inet sipedge`` by default, with the comment
"managed by sipedge") and nothing else; after the conntrack and loopback
accepts its rules match only the SBC's own SIP and RTP ports (see
:mod:`.desired`). The same state is what the netlink backend programs, so
``nft -f`` of this text and ``sipedge firewall apply`` give the same ``nft
list ruleset``.
"""
from __future__ import annotations

from typing import Optional

from ..allowlist import Allowlist
from .desired import DEFAULT_PRIORITY, OWNER_COMMENT, Desired, SbcPorts, desired_state, interval_text


def render_desired(d: Desired) -> str:
    """nft(8) script text that creates the table of *d*."""
    lines = [f"table inet {d.table} {{", f'\tcomment "{OWNER_COMMENT}"']
    for s in d.sets.values():
        lines.append(f"\tset {s.name} {{")
        lines.append(f"\t\ttype {'ipv4_addr' if s.family == 4 else 'ipv6_addr'}")
        lines.append("\t\tflags interval")
        if s.intervals:
            elems = ", ".join(interval_text(a, b, s.family) for a, b in s.intervals)
            lines.append(f"\t\telements = {{ {elems} }}")
        lines.append("\t}")
    lines.append(f"\tchain {d.chain} {{")
    lines.append(f"\t\ttype filter hook input priority {d.priority}; policy accept;")
    for r in d.rules:
        lines.append(f"\t\t{r.describe()}")
    lines.append("\t}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(al: Allowlist, table: str = "sipedge", mode: str = "enforce",
           priority: int = DEFAULT_PRIORITY, sbc: Optional[SbcPorts] = None,
           iif: tuple = (), force: bool = False) -> str:
    """nft(8) script text that creates sipedge's table for *al*."""
    return render_desired(desired_state(al, table=table, mode=mode, priority=priority,
                                        sbc=sbc, iif=iif, force=force))
