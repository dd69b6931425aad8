"""Render the desired nftables state of an Allowlist as ``nft -f`` text.

sipedge owns one table (``inet sipedge`` by default) and nothing else; its
rules match only the SBC's SIP and media ports.
"""
from __future__ import annotations

from ..allowlist import Allowlist

SET_FOR_ROLE = {"signaling": "signaling", "media": "media"}


def _elements(nets) -> str:
    return ", ".join(str(n) for n in nets)


def render(al: Allowlist, table: str = "sipedge", mode: str = "enforce",
           priority: int = -10) -> str:
    """nft(8) script text that creates sipedge's table for *al*."""
    lines = [f"table inet {table} {{"]
    for role in al.roles:
        for fam, typ in ((4, "ipv4_addr"), (6, "ipv6_addr")):
            nets = al.networks(role, fam)
            lines.append(f"\tset {role}_v{fam} {{")
            lines.append(f"\t\ttype {typ}")
            lines.append("\t\tflags interval")
            if nets:
                lines.append(f"\t\telements = {{ {_elements(nets)} }}")
            lines.append("\t}")
    lines.append("\tchain input {")
    lines.append(f"\t\ttype filter hook input priority {priority}; policy accept;")
    verdict = "drop" if mode == "enforce" else "continue"
    for role in al.roles:
        for pr in al.ports[role]:
            ports = str(pr.low) if pr.low == pr.high else f"{pr.low}-{pr.high}"
            for fam, key in ((4, "ip"), (6, "ip6")):
                lines.append(f"\t\t{key} saddr @{role}_v{fam} {pr.proto} dport {ports} counter accept")
    for role in al.roles:
        for pr in al.ports[role]:
            ports = str(pr.low) if pr.low == pr.high else f"{pr.low}-{pr.high}"
            lines.append(f"\t\t{pr.proto} dport {ports} counter {verdict}")
    lines.append("\t}")
    lines.append("}")
    return "\n".join(lines) + "\n"
