"""ipset backend for iptables hosts.

Per role and IP version one ``hash:net`` set (``sipedge-signaling-v4`` ...),
and a chain ``SIPEDGE`` (the table name upper-cased) jumped to from
``INPUT`` in iptables and ip6tables, with the same rules as the nft backend:
the role's ports from the role's set accepted, the rest of the traffic to
those ports dropped (``enforce``) or only counted (``monitor``). The hook
priority option does not apply: iptables' INPUT chain has its own.

Sets are created and swapped with pyroute2's :class:`~pyroute2.IPSet`; a
changed set is filled as a temporary set (many entries per netlink message)
and swapped in atomically, so a trusted packet always meets a full set.
The iptables rules are loaded with ``iptables-restore --noflush`` (one
atomic commit per table) only when they differ.
"""
from __future__ import annotations

import errno
import socket
import struct
import subprocess
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from ...errors import FirewallError, KernelSupportError
from ...intervals import cidrs
from .. import nsutil
from ..desired import Desired, diff_packed
from ..netlink import NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkError, NfSocket

NFNL_SUBSYS_IPSET = 6
IPSET_CMD_ADD, IPSET_CMD_LIST = 9, 7
IPSET_PROTOCOL = 7
NLA_F_NESTED, NLA_F_NET_BYTEORDER = 0x8000, 0x4000
A_PROTOCOL, A_SETNAME, A_DATA, A_ADT, A_LINENO = 1, 2, 7, 8, 9
A_IP, A_CIDR = 1, 3
A_IPV4, A_IPV6 = 1, 2
MAX_ADT_BYTES = 60000


def set_name(table: str, role: str, family: int) -> str:
    name = f"{table}-{role}-v{family}"
    if len(name) + 4 > 31:
        raise FirewallError(f"ipset name {name!r} is too long (ipset allows 31 characters with "
                            "sipedge's '-new' suffix): choose a shorter --table")
    return name


def _attr(typ: int, payload: bytes) -> bytes:
    n = 4 + len(payload)
    return struct.pack("=HH", n, typ) + payload + b"\0" * ((4 - n % 4) % 4)


@dataclass
class LiveSet:
    name: str
    intervals: tuple


@dataclass
class Live:
    exists: bool = False
    genid: Optional[int] = None
    sets: dict = field(default_factory=dict)  # desired set key -> LiveSet
    rules: dict = field(default_factory=dict)  # "iptables"/"ip6tables" -> [(rule, pk, bytes)]


class IpsetBackend:
    """ipset sets + iptables rules in one network namespace."""

    name = "ipset"

    def __init__(self, netns: Optional[str] = None) -> None:
        from pyroute2 import IPSet

        self.netns = netns
        self.sock = NfSocket(netns)
        try:
            with nsutil.entered(netns):
                self.ipset = IPSet()
        except OSError as e:
            self.sock.close()
            raise KernelSupportError(f"the kernel has no ip_set support ({e}): load ip_set or "
                                     "use --backend nft") from None

    def close(self) -> None:
        self.sock.close()
        self.ipset.close()

    def __enter__(self) -> "IpsetBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def genid(self) -> None:
        return None  # no generation counter: every run reads the live state

    # -- tools --------------------------------------------------------------------
    def _run(self, *cmd: str, stdin: Optional[str] = None, check: bool = True) -> subprocess.CompletedProcess:
        full = (["ip", "netns", "exec", self.netns] if self.netns else []) + list(cmd)
        try:
            r = subprocess.run(full, input=stdin, capture_output=True, text=True, timeout=60)
        except FileNotFoundError:
            raise KernelSupportError(f"{cmd[0]} is not installed: install iptables or use "
                                     "--backend nft") from None
        if check and r.returncode != 0:
            raise FirewallError(f"{cmd[0]} failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}"
                                "; the previous rules are in place")
        return r

    @staticmethod
    def chain(d_or_table) -> str:
        table = d_or_table.table if isinstance(d_or_table, Desired) else d_or_table
        return table.upper().replace("-", "_")[:28]

    def rule_lines(self, d: Desired, tool: str) -> List[str]:
        fam = 4 if tool == "iptables" else 6
        ch = self.chain(d)
        out = []
        for r in d.rules:
            if r.family not in (None, fam):
                continue
            ports = str(r.low) if r.low == r.high else f"{r.low}:{r.high}"
            line = f"-A {ch} -p {r.proto} -m {r.proto} --dport {ports}"
            if r.set:
                line += f" -m set --match-set {set_name(d.table, r.role, fam)} src"
            if r.verdict == "accept":
                line += " -j ACCEPT"
            elif r.verdict == "drop":
                line += " -j DROP"
            out.append(line)
        return out

    # -- reading ------------------------------------------------------------------
    def _list(self, name: str, family: int) -> Optional[tuple]:
        body = (struct.pack("=BBH", 2, 0, 0) + _attr(A_PROTOCOL, bytes([IPSET_PROTOCOL]))
                + _attr(A_SETNAME, name.encode() + b"\0"))
        seq = self.sock.next_seq()
        msg = struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_IPSET << 8) | IPSET_CMD_LIST,
                          NLM_F_REQUEST | NLM_F_ACK | NLM_F_DUMP, seq, 0) + body
        try:
            msgs = self.sock.request(msg, f"list ipset {name}")
        except NetlinkError as e:
            if e.code == errno.ENOENT:  # no such set
                return None
            raise
        nets = []
        for m in msgs:
            off = 20
            while off + 4 <= len(m):
                alen, atyp = struct.unpack_from("=HH", m, off)
                if alen < 4:
                    break
                if atyp & 0x3FFF == A_ADT:
                    nets += self._parse_adt(m, off + 4, off + alen, family)
                off += (alen + 3) & ~3
        spans = sorted((a, a + (1 << ((32 if family == 4 else 128) - c))) for a, c in nets)
        out: list = []
        for s, e in spans:
            if out and s <= out[-1][1]:
                out[-1] = (out[-1][0], max(e, out[-1][1]))
            else:
                out.append((s, e))
        return tuple(out)

    @staticmethod
    def _parse_adt(m: bytes, off: int, end: int, family: int) -> list:
        out = []
        while off + 4 <= end:
            dlen, _ = struct.unpack_from("=HH", m, off)
            if dlen < 4:
                break
            p, pend, addr, cidr = off + 4, off + dlen, None, 32 if family == 4 else 128
            while p + 4 <= pend:
                alen, atyp = struct.unpack_from("=HH", m, p)
                if alen < 4:
                    break
                t = atyp & 0x3FFF
                if t == A_IP:
                    q = p + 4
                    ilen = struct.unpack_from("=H", m, q)[0]
                    addr = int.from_bytes(m[q + 4:q + ilen], "big")
                elif t == A_CIDR:
                    cidr = m[p + 4]
                p += (alen + 3) & ~3
            if addr is not None:
                out.append((addr, cidr))
            off += (dlen + 3) & ~3
        return out

    def _rules(self, tool: str, ch: str) -> Optional[list]:
        r = self._run(tool, "-w", "-S", ch, "-v", check=False)
        if r.returncode != 0:
            return None
        out = []
        for line in r.stdout.splitlines():
            if not line.startswith("-A "):
                continue
            parts = line.split()
            pk = by = 0
            if "-c" in parts:
                i = parts.index("-c")
                pk, by = int(parts[i + 1]), int(parts[i + 2])
                del parts[i:i + 3]
            out.append((" ".join(parts), pk, by))
        return out

    def _jump_present(self, tool: str, ch: str) -> bool:
        return self._run(tool, "-w", "-C", "INPUT", "-j", ch, check=False).returncode == 0

    def read(self, table: str, with_elements: bool = True) -> Live:
        live = Live()
        ch = self.chain(table)
        for key, fam, name in self._set_names(table):
            ivs = self._list(name, fam)
            if ivs is not None:
                live.sets[key] = LiveSet(name, ivs)
        for tool in ("iptables", "ip6tables"):
            rules = self._rules(tool, ch)
            if rules is not None:
                live.rules[tool] = (rules, self._jump_present(tool, ch))
        live.exists = bool(live.sets or live.rules)
        return live

    def _set_names(self, table: str, d: Optional[Desired] = None):
        roles = sorted({s.role for s in d.sets.values()}) if d else ["signaling", "media"]
        return [(f"{role}_v{fam}", fam, set_name(table, role, fam)) for role in roles for fam in (4, 6)]

    def structure_matches(self, d: Desired, live: Live) -> bool:
        if set(live.sets) != set(d.sets):
            return False
        for tool in ("iptables", "ip6tables"):
            got = live.rules.get(tool)
            if got is None or not got[1] or [r for r, _, _ in got[0]] != self.rule_lines(d, tool):
                return False
        return True

    def rule_report(self, d: Desired, live: Live) -> list:
        out = []
        for tool, (rules, _jump) in live.rules.items():
            for r, pk, by in rules:
                out.append({"tool": tool, "chain": self.chain(d), "rule": r, "packets": pk, "bytes": by})
        return out

    # -- changing -----------------------------------------------------------------
    @staticmethod
    def _blocks(intervals, family: int) -> List[Tuple[int, int]]:
        return [b for s, e in intervals for b in cidrs(s, e, family)]

    def _adt_messages(self, name: str, blocks: List[Tuple[int, int]], family: int) -> List[bytes]:
        """IPSET_CMD_ADD messages with many entries each (hash:net: address + CIDR)."""
        klen = 4 if family == 4 else 16
        atyp = (A_IPV4 if family == 4 else A_IPV6) | NLA_F_NET_BYTEORDER
        # DATA{ IP{ IPADDR_IPVx(addr) }, CIDR(c) } with its constant parts packed once
        head = struct.pack("=HHHHHH", 4 + (8 + klen) + 8, A_DATA | NLA_F_NESTED,
                           8 + klen, A_IP | NLA_F_NESTED, 4 + klen, atyp)
        tails = [struct.pack("=HHB3x", 5, A_CIDR, c) for c in range(8 * klen + 1)]
        datas = [head + a.to_bytes(klen, "big") + tails[c] for a, c in blocks]
        msgs = []
        top = (struct.pack("=BBH", 2 if family == 4 else 10, 0, 0)
               + _attr(A_PROTOCOL, bytes([IPSET_PROTOCOL])) + _attr(A_SETNAME, name.encode() + b"\0")
               # a multi-entry ADT needs IPSET_ATTR_LINENO beside it (the kernel says so)
               + _attr(A_LINENO, struct.pack("=I", 0)))
        per = MAX_ADT_BYTES // (len(head) + klen + len(tails[0]))
        for i in range(0, len(datas), per):
            body = top + _attr(A_ADT | NLA_F_NESTED, b"".join(datas[i:i + per]))
            msgs.append(struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_IPSET << 8) | IPSET_CMD_ADD,
                                    NLM_F_REQUEST | NLM_F_ACK, self.sock.next_seq(), 0) + body)
        return msgs

    def _fill(self, name: str, blocks, family: int) -> None:
        for m in self._adt_messages(name, blocks, family):
            self.sock.request(m, f"fill ipset {name}")

    def _create(self, name: str, family: int, count: int) -> None:
        self.ipset.create(name, stype="hash:net", family=socket.AF_INET if family == 4 else socket.AF_INET6,
                          maxelem=max(65536, 2 * count), exclusive=True)

    def _destroy(self, name: str) -> None:
        try:
            self.ipset.destroy(name)
        except Exception:  # noqa: BLE001 - best effort cleanup of our own temporary set
            pass

    def _replace_set(self, name: str, intervals, family: int, exists: bool) -> None:
        """Fill a temporary set and swap it in (or create the set when it is new)."""
        blocks = self._blocks(intervals, family)
        count = len(blocks)
        if not exists:
            self._create(name, family, count)
            try:
                self._fill(name, blocks, family)
            except Exception:
                self._destroy(name)
                raise
            return
        tmp = name + "-new"
        self._destroy(tmp)
        self._create(tmp, family, count)
        try:
            self._fill(tmp, blocks, family)
            self.ipset.swap(tmp, name)
        finally:
            self._destroy(tmp)

    def _restore_rules(self, d: Desired, live: Live) -> None:
        ch = self.chain(d)
        for tool in ("iptables", "ip6tables"):
            lines = ["*filter", f":{ch} - [0:0]"] + self.rule_lines(d, tool)
            if not (live.rules.get(tool) or (None, False))[1]:
                lines.append(f"-I INPUT 1 -j {ch}")
            lines.append("COMMIT")
            self._run(f"{tool}-restore", "-w", "--noflush", stdin="\n".join(lines) + "\n")

    def create(self, d: Desired, replace: bool = False, genid=None) -> None:
        live = self.read(d.table) if replace else Live()
        created = []
        try:
            for key, st in d.sets.items():
                name = set_name(d.table, st.role, st.family)
                exists = key in live.sets
                self._replace_set(name, st.intervals, st.family, exists)
                if not exists:
                    created.append(name)
            self._restore_rules(d, live)
        except Exception:
            if not replace:  # first apply failed: leave no half-made sets behind
                for name in created:
                    self._destroy(name)
            raise

    def sync(self, d: Desired, live_packed: Dict[str, bytes], genid=None) -> Tuple[int, int]:
        na = nd = 0
        for key, st in d.sets.items():
            add, delete = diff_packed(st.packed, live_packed.get(key, b""), st.family)
            if add or delete:
                self._replace_set(set_name(d.table, st.role, st.family), st.intervals, st.family,
                                  key in live_packed)
                na += len(add)
                nd += len(delete)
        return na, nd

    def remove(self, table: str) -> bool:
        live = self.read(table)
        if not live.exists:
            return False
        ch = self.chain(table)
        for tool, (_rules, jump) in live.rules.items():
            if jump:
                self._run(tool, "-w", "-D", "INPUT", "-j", ch)
            self._run(tool, "-w", "-F", ch)
            self._run(tool, "-w", "-X", ch)
        for ls in live.sets.values():
            self.ipset.destroy(ls.name)
        return True
