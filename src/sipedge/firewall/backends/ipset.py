"""ipset backend for iptables hosts: the model of :mod:`..desired` as ipset sets + iptables rules.

What it keeps in the kernel (``TABLE`` is ``--table``, ``sipedge`` by default):

* per role and IP version one ``hash:net`` set ``TABLE-ROLE-vN`` (``sipedge-signaling-v4``,
  ``sipedge-media-v6``, any role of the allowlist), created with the hash seed
  ``initval`` :data:`OWNER_INITVAL` (0x53495045, "SIPE"): that is sipedge's mark on a
  set (``ipset list -t`` shows it). A set with sipedge's name but without the mark
  is somebody else's, and sipedge refuses to touch it;
* in iptables and ip6tables (table ``filter``) one chain, ``SIPEDGE`` for the default
  table, ``SIPEDGE-TABLE`` for any other (so ``--table input`` can never name the
  built-in ``INPUT``), whose first rule carries the comment ``managed by sipedge``
  (the chain's mark), and one jump to it at the top of ``INPUT`` with the same comment.

The chain holds the model's rules in the model's order: conntrack
established/related accept, loopback accept, then per role and family the
role's set to the SBC's own ports -> ACCEPT, then the rest to those ports ->
DROP (``enforce``) or no target (``monitor``: counted only). With ``--iif``
each port rule is written once per interface (``-i NAME``): iptables cannot
say "none of these interfaces" in one rule, so the model's ``iif`` return rule
has no iptables rule of its own (its counter is reported as ``None``). The hook
priority does not apply: iptables' ``INPUT`` has its own.

How a change is made, and what the kernel guarantees:

1. leftovers of a killed run (owned ``*-new`` sets) are destroyed;
2. every changed set is filled as ``NAME-new`` (many entries per netlink message),
   every new set is created under its own name and filled; nothing refers to them yet;
3. the filled ``-new`` sets are swapped in, one ``IPSET_CMD_SWAP`` each, back to back:
   each swap is atomic (a packet meets the old set or the new one, both full);
4. when the rules differ, ``iptables-restore --noflush`` then ``ip6tables-restore
   --noflush`` replace the chain's rules (each one atomic commit for its family);
5. the swapped-out sets and the sets of roles no longer wanted are destroyed.

**Limits (the kernel's):** ipset has no transaction across sets, and iptables and
ip6tables are separate commits. A run killed between two swaps of step 3, or between
the two commits of step 4, leaves some sets (or one family's rules) new and the rest
old. Every set is always complete, so no trusted packet meets a half-filled set,
and the next run reads the live state (this backend never trusts a cache: it
has no generation id) and finishes the change. Step 2 and 5 leftovers are
destroyed by the next run.

The tools are run by absolute path from the system directories (never ``PATH``),
with a fixed environment, inside the namespace entered with ``setns(2)`` (no ``ip
netns exec``); sets are created, filled, swapped, listed and destroyed over netlink.
"""
from __future__ import annotations

import errno
import os
import re
import socket
import struct
import subprocess
from dataclasses import dataclass, field
from itertools import repeat
from operator import add, and_, lshift, or_, rshift, sub
from typing import Dict, List, Optional, Tuple

from ...errors import FirewallError, KernelSupportError, OwnershipError
from ...intervals import cidrs, merge_sorted
from .. import nsutil
from ..desired import OWNER_COMMENT, Desired, diff_packed, pack_intervals
from ..netlink import NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkError, NfSocket

NFNL_SUBSYS_IPSET = 6
IPSET_CMD_CREATE, IPSET_CMD_DESTROY, IPSET_CMD_SWAP, IPSET_CMD_LIST, IPSET_CMD_ADD = 2, 3, 6, 7, 9
IPSET_PROTOCOL = 7
NLA_F_NESTED, NLA_F_NET_BYTEORDER = 0x8000, 0x4000
A_PROTOCOL, A_SETNAME, A_TYPENAME, A_REVISION, A_FAMILY, A_FLAGS, A_DATA, A_ADT, A_LINENO = \
    1, 2, 3, 4, 5, 6, 7, 8, 9
A_IP, A_CIDR = 1, 3
A_INITVAL, A_HASHSIZE, A_MAXELEM = 17, 18, 19
A_IPV4, A_IPV6 = 1, 2
FLAG_LIST_HEADER = 1 << 2
MAX_ADT_BYTES = 60000
HASH_NET_REVISION = 7  # hash:net revision 7 brought bucketsize and initval (Linux 5.11)

#: the hash seed sipedge creates its sets with: its owner mark ("SIPE")
OWNER_INITVAL = 0x53495045
TMP_SUFFIX = "-new"
#: the directories the iptables tools are taken from, in order; never PATH
TOOL_DIRS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")
TOOL_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
MARK = f'-m comment --comment "{OWNER_COMMENT}"'


def tool_path(name: str) -> str:
    """The absolute path of system tool *name* from :data:`TOOL_DIRS` (never from PATH)."""
    for d in TOOL_DIRS:
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    raise KernelSupportError(f"{name} is not installed (looked in {', '.join(TOOL_DIRS)}): "
                             "install iptables, or use --backend nft")


def chain_name(table: str) -> str:
    """``SIPEDGE`` for the default table, ``SIPEDGE-TABLE`` for any other: never a
    built-in chain (``--table input`` is ``SIPEDGE-INPUT``, not ``INPUT``)."""
    name = "SIPEDGE" if table == "sipedge" else "SIPEDGE-" + table.upper()
    if len(name) > 28:
        raise FirewallError(f"--table {table!r} is too long for the ipset backend (its chain "
                            f"{name} would exceed iptables' 28 characters): use at most 20")
    return name


def set_name(table: str, role: str, family: int) -> str:
    name = f"{table}-{role}-v{family}"
    if len(name) + len(TMP_SUFFIX) > 31:
        raise FirewallError(f"ipset name {name!r} is too long (ipset allows 31 characters with "
                            f"sipedge's {TMP_SUFFIX!r} suffix): choose a shorter --table")
    return name


def _attr(typ: int, payload: bytes) -> bytes:
    n = 4 + len(payload)
    return struct.pack("=HH", n, typ) + payload + b"\0" * ((4 - n % 4) % 4)


def _attrs(m: bytes, off: int, end: int):
    while off + 4 <= end:
        alen, atyp = struct.unpack_from("=HH", m, off)
        if alen < 4:
            break
        yield atyp & 0x3FFF, off + 4, off + alen
        off += (alen + 3) & ~3


@dataclass
class LiveSet:
    name: str
    family: int
    intervals: tuple


@dataclass
class SetHead:
    name: str
    typename: str
    family: int
    initval: Optional[int]

    @property
    def owned(self) -> bool:
        return self.typename == "hash:net" and self.initval == OWNER_INITVAL


@dataclass
class Live:
    exists: bool = False
    owned: bool = True
    owner: Optional[str] = None  # what failed the owner check, for the message
    genid: Optional[int] = None
    sets: dict = field(default_factory=dict)  # desired set key ("signaling_v4") -> LiveSet
    stray: list = field(default_factory=list)  # owned "-new" sets left by a killed run
    rules: dict = field(default_factory=dict)  # "iptables"/"ip6tables" -> ([(rule, pk, bytes)], jump)


class IpsetBackend:
    """ipset sets + iptables rules in one network namespace."""

    name = "ipset"

    def __init__(self, netns: Optional[str] = None) -> None:
        self.netns = netns
        self.sock = NfSocket(netns)
        self._tools: Dict[str, str] = {}
        try:
            self._heads()
        except NetlinkError as e:
            self.sock.close()
            if e.code in (errno.EPROTONOSUPPORT, errno.EOPNOTSUPP, errno.ENOENT, errno.EINVAL):
                raise KernelSupportError(f"the kernel has no ip_set support ({e}): load the ip_set "
                                         "module or use --backend nft") from None
            raise

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "IpsetBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def genid(self) -> None:
        return None  # no generation counter: every run reads the live state

    # -- tools --------------------------------------------------------------------
    def _run(self, tool: str, *args: str, stdin: Optional[str] = None,
             check: bool = True) -> subprocess.CompletedProcess:
        path = self._tools.get(tool) or self._tools.setdefault(tool, tool_path(tool))
        with nsutil.entered(self.netns):  # the child is forked from this thread: same netns
            try:
                r = subprocess.run([path, *args], input=stdin, capture_output=True, text=True,
                                   timeout=60, env=TOOL_ENV)
            except subprocess.TimeoutExpired:
                raise FirewallError(f"{path} did not finish within 60 s") from None
        if check and r.returncode != 0:
            last = ((r.stderr or r.stdout).strip().splitlines() or ["(no message)"])[-1]
            raise FirewallError(f"{path} failed: {last}; the previous rules are in place")
        return r

    # -- netlink ------------------------------------------------------------------
    def _msg(self, cmd: int, body: bytes, flags: int = NLM_F_REQUEST | NLM_F_ACK,
             family: int = socket.AF_INET) -> bytes:
        body = struct.pack("=BBH", family, 0, 0) + _attr(A_PROTOCOL, bytes([IPSET_PROTOCOL])) + body
        return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_IPSET << 8) | cmd, flags,
                           self.sock.next_seq(), 0) + body

    @staticmethod
    def _name(name: str) -> bytes:
        return _attr(A_SETNAME, name.encode() + b"\0")

    def _heads(self) -> List[SetHead]:
        """Name, type, family and hash seed of every set in the namespace (one dump)."""
        msg = self._msg(IPSET_CMD_LIST, _attr(A_FLAGS | NLA_F_NET_BYTEORDER, struct.pack(">I", FLAG_LIST_HEADER)),
                        NLM_F_REQUEST | NLM_F_ACK | NLM_F_DUMP)
        out = []
        for m in self.sock.request(msg, "list ipset headers"):
            name = typename = None
            fam, initval = 0, None
            for t, a, b in _attrs(m, 20, len(m)):
                if t == A_SETNAME:
                    name = m[a:b].split(b"\0", 1)[0].decode(errors="replace")
                elif t == A_TYPENAME:
                    typename = m[a:b].split(b"\0", 1)[0].decode(errors="replace")
                elif t == A_FAMILY:
                    fam = {socket.AF_INET: 4, socket.AF_INET6: 6}.get(m[a], 0)
                elif t == A_DATA:
                    for t2, a2, b2 in _attrs(m, a, b):
                        if t2 == A_INITVAL and b2 - a2 >= 4:
                            initval = struct.unpack_from(">I", m, a2)[0]
            if name is not None:
                out.append(SetHead(name, typename or "", fam, initval))
        return out

    def _list(self, name: str, family: int) -> Optional[tuple]:
        """The merged intervals in set *name*, or None when there is no such set."""
        msg = self._msg(IPSET_CMD_LIST, self._name(name), NLM_F_REQUEST | NLM_F_ACK | NLM_F_DUMP)
        try:
            msgs = self.sock.request(msg, f"list ipset {name}")
        except NetlinkError as e:
            if e.code == errno.ENOENT:
                return None
            raise
        bits = 32 if family == 4 else 128
        klen = bits // 8
        # the entry as hash:net dumps it (no counters or comments on sipedge's sets):
        # DATA{ IP{ IPADDR(addr) }, CIDR(c) }, unpacked in bulk; anything else parsed one by one
        plain = 4 + (8 + klen) + 8
        # per entry: 12 header bytes, the address, CIDR's 4-byte header, the length, 3 pad
        one = "12xI4xB3x" if family == 4 else "12xQQ4xB3x"
        sizes = [1 << (bits - c) for c in range(bits + 1)]  # addresses in a /c
        keys = []  # address << 8 | prefix length: one int each, so the sort is cheap
        for m in msgs:
            for t, a, b in _attrs(m, 20, len(m)):
                if t != A_ADT:
                    continue
                blob = m[a:b]
                n, rest = divmod(len(blob), plain)
                # every entry plain: its DATA, IP and CIDR lengths say so (checked in C)
                if (not rest and blob[0::plain] == bytes([plain]) * n
                        and blob[8::plain] == bytes([4 + klen]) * n
                        and blob[plain - 8::plain] == b"\x05" * n
                        and blob[plain - 6::plain] == bytes([A_CIDR]) * n):
                    flat = struct.unpack(">" + one * n, blob)
                    if family == 4:
                        keys += map(or_, map(lshift, flat[0::2], repeat(8)), flat[1::2])
                    else:
                        keys += [(hi << 64 | lo) << 8 | c for hi, lo, c in zip(flat[0::3], flat[1::3], flat[2::3])]
                    continue
                for _t, da, db in _attrs(m, a, b):  # one DATA per entry
                    addr, cidr = None, bits
                    for t3, a3, b3 in _attrs(m, da, db):
                        if t3 == A_IP:
                            for _t4, a4, b4 in _attrs(m, a3, b3):
                                addr = int.from_bytes(m[a4:b4], "big")
                        elif t3 == A_CIDR:
                            cidr = m[a3]
                    if addr is not None:
                        keys.append(addr << 8 | cidr)
        keys.sort()
        lo = list(map(rshift, keys, repeat(8)))
        last = list(map(add, lo, map(sizes.__getitem__, map(and_, keys, repeat(0xFF)))))
        starts, ends = merge_sorted(lo, list(map(sub, last, repeat(1))))
        return tuple(zip(starts, ends))

    def _create(self, name: str, family: int, count: int) -> None:
        data = (_attr(A_INITVAL | NLA_F_NET_BYTEORDER, struct.pack(">I", OWNER_INITVAL))
                + _attr(A_MAXELEM | NLA_F_NET_BYTEORDER, struct.pack(">I", max(65536, 2 * count))))
        body = (self._name(name) + _attr(A_TYPENAME, b"hash:net\0")
                + _attr(A_REVISION, bytes([HASH_NET_REVISION]))
                + _attr(A_FAMILY, bytes([socket.AF_INET if family == 4 else socket.AF_INET6]))
                + _attr(A_DATA | NLA_F_NESTED, data))
        self.sock.request(self._msg(IPSET_CMD_CREATE, body), f"create ipset {name}")

    def _destroy(self, name: str) -> None:
        try:
            self.sock.request(self._msg(IPSET_CMD_DESTROY, self._name(name)), f"destroy ipset {name}")
        except NetlinkError as e:
            if e.code != errno.ENOENT:
                raise

    def _swap(self, a: str, b: str) -> None:
        self.sock.request(self._msg(IPSET_CMD_SWAP, self._name(a) + _attr(A_TYPENAME, b.encode() + b"\0")),
                          f"swap ipset {a} with {b}")

    def _adt_messages(self, name: str, blocks: List[Tuple[int, int]], family: int) -> List[bytes]:
        """IPSET_CMD_ADD messages with many entries each (hash:net: address + CIDR)."""
        klen = 4 if family == 4 else 16
        atyp = (A_IPV4 if family == 4 else A_IPV6) | NLA_F_NET_BYTEORDER
        # DATA{ IP{ IPADDR_IPVx(addr) }, CIDR(c) } with its constant parts packed once
        head = struct.pack("=HHHHHH", 4 + (8 + klen) + 8, A_DATA | NLA_F_NESTED,
                           8 + klen, A_IP | NLA_F_NESTED, 4 + klen, atyp)
        tails = [struct.pack("=HHB3x", 5, A_CIDR, c) for c in range(8 * klen + 1)]
        datas = [head + a.to_bytes(klen, "big") + tails[c] for a, c in blocks]
        # a multi-entry ADT needs IPSET_ATTR_LINENO beside it (the kernel says so)
        top = self._name(name) + _attr(A_LINENO, struct.pack("=I", 0))
        per = MAX_ADT_BYTES // (len(head) + klen + len(tails[0]))
        fam = socket.AF_INET if family == 4 else socket.AF_INET6
        return [self._msg(IPSET_CMD_ADD, top + _attr(A_ADT | NLA_F_NESTED, b"".join(datas[i:i + per])),
                          family=fam)
                for i in range(0, len(datas), per)]

    def _make(self, name: str, intervals, family: int) -> None:
        """Create set *name* (sipedge's mark) and fill it; destroyed again on failure."""
        blocks = [b for s, e in intervals for b in cidrs(s, e, family)]
        self._create(name, family, len(blocks))
        try:
            for m in self._adt_messages(name, blocks, family):
                self.sock.request(m, f"fill ipset {name}")
        except BaseException:
            self._destroy(name)
            raise

    # -- the model as iptables rules -----------------------------------------------
    @staticmethod
    def chain(d_or_table) -> str:
        return chain_name(d_or_table.table if isinstance(d_or_table, Desired) else d_or_table)

    def _rule_lines(self, d: Desired, tool: str) -> List[Tuple[int, str]]:
        """(index of the model rule, ``iptables -S`` line) in chain order."""
        fam = 4 if tool == "iptables" else 6
        ch = self.chain(d)
        out = []
        for i, r in enumerate(d.rules):
            if r.kind == "ct":
                out.append((i, f"-A {ch} -m conntrack --ctstate RELATED,ESTABLISHED {MARK} -j ACCEPT"))
                continue
            if r.kind == "lo":
                out.append((i, f"-A {ch} -i lo -j ACCEPT"))
                continue
            if r.kind == "iif":
                continue  # written into every port rule below (-i NAME)
            if r.family not in (None, fam):
                continue
            ports = str(r.low) if r.low == r.high else f"{r.low}:{r.high}"
            match = f"-p {r.proto} -m {r.proto} --dport {ports}"
            if r.set:
                match += f" -m set --match-set {set_name(d.table, r.role, fam)} src"
            target = {"accept": " -j ACCEPT", "drop": " -j DROP"}.get(r.verdict, "")
            for iface in (d.iif or (None,)):
                where = f" -i {iface}" if iface else ""
                out.append((i, f"-A {ch}{where} {match}{target}"))
        return out

    def rule_lines(self, d: Desired, tool: str) -> List[str]:
        return [line for _i, line in self._rule_lines(d, tool)]

    def _jump(self, ch: str) -> List[str]:
        return ["-m", "comment", "--comment", OWNER_COMMENT, "-j", ch]

    # -- reading ------------------------------------------------------------------
    def _rules(self, tool: str, ch: str) -> Optional[list]:
        r = self._run(tool, "-w", "-S", ch, "-v", check=False)
        if r.returncode != 0:
            return None
        out = []
        for line in r.stdout.splitlines():
            if not line.startswith("-A "):
                continue
            parts = line.split(" ")
            pk = by = 0
            if "-c" in parts:
                i = parts.index("-c")
                pk, by = int(parts[i + 1]), int(parts[i + 2])
                del parts[i:i + 3]
            out.append((" ".join(parts), pk, by))
        return out

    def _jump_present(self, tool: str, ch: str) -> bool:
        return self._run(tool, "-w", "-C", "INPUT", *self._jump(ch), check=False).returncode == 0

    def read(self, table: str, with_elements: bool = True) -> Live:
        """The live sets (any role: found by the naming scheme), the chain, the marks."""
        live = Live()
        ch = self.chain(table)
        pat = re.compile(re.escape(table) + r"-([a-z][a-z0-9_]{0,31})-v([46])(" + re.escape(TMP_SUFFIX) + ")?$")
        foreign = []
        for h in self._heads():
            m = pat.match(h.name)
            if not m:
                continue
            if not h.owned or h.family != int(m.group(2)):
                foreign.append(h)
                continue
            if m.group(3):
                live.stray.append(h.name)
                continue
            fam = int(m.group(2))
            ivs = self._list(h.name, fam) if with_elements else ()
            if ivs is not None:
                live.sets[f"{m.group(1)}_v{fam}"] = LiveSet(h.name, fam, ivs)
        for tool in ("iptables", "ip6tables"):
            rules = self._rules(tool, ch)
            if rules is not None:
                live.rules[tool] = (rules, self._jump_present(tool, ch))
                if not rules or MARK not in rules[0][0]:
                    live.owned = False
                    live.owner = (f"{tool} chain {ch} has no rule marked {OWNER_COMMENT!r} at its top")
        if foreign:
            h = foreign[0]
            live.owned = False
            live.owner = (f"ipset {h.name} ({h.typename}, initval "
                          f"{'none' if h.initval is None else hex(h.initval)}) lacks sipedge's mark "
                          f"(hash:net, initval {hex(OWNER_INITVAL)})")
        live.exists = bool(live.sets or live.rules or live.stray or foreign)
        return live

    def check_owner(self, table: str, live: Live) -> None:
        if live.exists and not live.owned:
            raise OwnershipError(
                f"owner check failed: {live.owner}, so it is not sipedge's; sipedge changes only "
                "sets and chains it created: choose another --table, or remove that one yourself "
                "if it is a leftover")

    def structure_matches(self, d: Desired, live: Live) -> bool:
        if set(live.sets) != set(d.sets) or any(live.sets[k].family != s.family for k, s in d.sets.items()):
            return False
        for tool in ("iptables", "ip6tables"):
            got = live.rules.get(tool)
            if got is None or not got[1] or [r for r, _, _ in got[0]] != self.rule_lines(d, tool):
                return False
        return True

    def verify(self, d: Desired, chain=None) -> bool:
        return False  # no cache to verify: the live state is always read

    def rule_report(self, d: Desired, live: Live) -> list:
        """Per model rule (named as the nft backend names it), the counters of its
        iptables and ip6tables rules added up; ``tools`` has each iptables rule."""
        out = [{"chain": self.chain(d), "rule": r.describe(), "packets": 0, "bytes": 0, "tools": []}
               for r in d.rules]
        for tool, (rules, _jump) in live.rules.items():
            counters = {rule: (pk, by) for rule, pk, by in rules}
            for i, line in self._rule_lines(d, tool):
                if line in counters:
                    pk, by = counters[line]
                    out[i]["packets"] += pk
                    out[i]["bytes"] += by
                    out[i]["tools"].append({"tool": tool, "rule": line, "packets": pk, "bytes": by})
        for i, r in enumerate(d.rules):
            if r.kind == "iif":  # no iptables rule of its own (see the module docstring)
                out[i]["packets"] = out[i]["bytes"] = None
        return out

    # -- changing -----------------------------------------------------------------
    def _restore_rules(self, d: Desired, live: Live) -> None:
        ch = self.chain(d)
        for tool in ("iptables", "ip6tables"):
            lines = ["*filter", f":{ch} - [0:0]"] + self.rule_lines(d, tool)
            if not (live.rules.get(tool) or (None, False))[1]:
                lines.append(f'-I INPUT 1 -m comment --comment "{OWNER_COMMENT}" -j {ch}')
            lines.append("COMMIT")
            self._run(f"{tool}-restore", "-w", "--noflush", stdin="\n".join(lines) + "\n")

    def converge(self, d: Desired, live: Live) -> dict:
        """Make the kernel equal *d* in the steps of the module docstring."""
        self.check_owner(d.table, live)
        for name in live.stray:  # a killed run's temporary sets
            self._destroy(name)
        made: List[str] = []
        swaps: List[Tuple[str, str]] = []
        na = nd = 0
        try:
            for key, st in d.sets.items():
                name = set_name(d.table, st.role, st.family)
                cur = live.sets.get(key)
                if cur is None:
                    self._make(name, st.intervals, st.family)
                    made.append(name)
                    na += st.interval_count
                    continue
                add, delete = diff_packed(st.packed, pack_intervals(cur.intervals, st.family), st.family)
                if add or delete:
                    self._make(name + TMP_SUFFIX, st.intervals, st.family)
                    swaps.append((name + TMP_SUFFIX, name))
                    na += len(add)
                    nd += len(delete)
        except BaseException:
            for name in made + [tmp for tmp, _ in swaps]:
                self._destroy(name)
            raise
        for tmp, name in swaps:  # back to back: each atomic, together as close as ipset allows
            self._swap(tmp, name)
        rules_changed = any(live.rules.get(t) is None or not live.rules[t][1]
                            or [r for r, _, _ in live.rules[t][0]] != self.rule_lines(d, t)
                            for t in ("iptables", "ip6tables"))
        if rules_changed:
            self._restore_rules(d, live)
        for tmp, _name in swaps:
            self._destroy(tmp)
        for key, cur in live.sets.items():
            if key not in d.sets:  # a role no longer wanted: unreferenced since step 4
                self._destroy(cur.name)
                nd += len(cur.intervals)
        if not live.exists or not (live.sets or live.rules):
            action = "create"
        elif rules_changed or set(live.sets) != set(d.sets):
            action = "replace"
        else:
            action = "sync" if na or nd else "none"
        return {"action": action, "added": na, "deleted": nd, "genid": None, "chain": None}

    def create(self, d: Desired, replace: bool = False, genid=None) -> None:
        self.converge(d, self.read(d.table) if replace else Live())

    def sync(self, d: Desired, live_packed: Dict[str, bytes], genid=None) -> Tuple[int, int, None]:
        r = self.converge(d, self.read(d.table))
        return r["added"], r["deleted"], None

    def remove(self, table: str) -> bool:
        """Remove sipedge's jumps, chains and every set of its naming scheme that carries
        its mark; refuse (nothing removed) when a set or chain of that name is not sipedge's."""
        live = self.read(table, with_elements=False)
        if not live.exists:
            return False
        self.check_owner(table, live)
        ch = self.chain(table)
        for tool, (_rules, jump) in live.rules.items():
            lines = ["*filter"]
            while jump:
                self._run(tool, "-w", "-D", "INPUT", *self._jump(ch))
                jump = self._jump_present(tool, ch)
            lines += [f"-F {ch}", f"-X {ch}", "COMMIT"]
            self._run(f"{tool}-restore", "-w", "--noflush", stdin="\n".join(lines) + "\n")
        for ls in live.sets.values():
            self._destroy(ls.name)
        for name in live.stray:
            self._destroy(name)
        return True
