"""The nft backend: reads and changes sipedge's table over netlink.

Every step is one ``NFNL_MSG_BATCH_BEGIN ... BATCH_END`` transaction sent in
one ``sendmsg`` (the kernel applies all of it or none), carrying the ruleset
generation the decision was based on (NFNL_BATCH_GENID: if anything changed
the ruleset in between, the kernel refuses it) and asking for the generation
id the commit creates (NLM_F_ECHO), which the applied-state file records.

Why a structural change is several transactions (measured, docs/firewall.md):
a set created *and* filled in the same transaction as a chain whose drop rule
looks it up dropped trusted packets (41 of 8000 at 1000 pps, 100k elements,
kernel 6.18): the new chain is live from the commit's generation flip, while
the new set's elements are published while that commit walks its 100k
element transactions. A chain swap over sets that already exist lost none. So:

1. new sets are created and filled (and existing ones synced) first - no rule
   uses them yet;
2. the new base chain (``input`` or ``input_b``, whichever is free) is added
   beside the old one: both run, a packet passes only if both accept it, and
   both accept the trusted sources;
3. the old chain and the sets nothing uses any more are deleted.

A run killed between steps leaves a state the next apply finishes (it reads
the live table and continues from whatever it finds).
"""
from __future__ import annotations

import errno
import struct
from typing import Dict, List, Optional, Tuple

from ....errors import OwnershipError
from ...desired import OWNER_COMMENT, Desired, diff_packed, pack_intervals
from ...netlink import (NLM_F_ACK, NLM_F_APPEND, NLM_F_ECHO, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
                        NLM_F_REQUEST, NetlinkError, NfSocket)
from .decode import _pr, canon_rule, elements_to_intervals, parse_elements, rule_counter
from .encode import (_parse_attrs, KEY_LEN, KEY_TYPE, NF_ACCEPT, NF_INET_LOCAL_IN, NFNL_MSG_BATCH_BEGIN,
                     NFNL_MSG_BATCH_END, NFNL_SUBSYS_NFTABLES, NFT_MSG_DELCHAIN, NFT_MSG_DELSET,
                     NFT_MSG_DELSETELEM, NFT_MSG_DELTABLE, NFT_MSG_GETCHAIN, NFT_MSG_GETRULE,
                     NFT_MSG_GETSET, NFT_MSG_GETSETELEM, NFT_MSG_GETTABLE, NFT_MSG_NEWCHAIN,
                     NFT_MSG_NEWGEN, NFT_MSG_NEWRULE, NFT_MSG_NEWSET, NFT_MSG_NEWSETELEM,
                     NFT_MSG_NEWTABLE, NFT_SET_INTERVAL, batch_marker, genid_request,
                     interval_keys, message, pack_elements, pack_interval_elements, parse_genid,
                     rule_exprs, rule_message, table_comment, table_userdata, elem_message)
from .live import Live, LiveChain, LiveSet

_NEWGEN = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN


def chain_names(d: Desired) -> Tuple[str, str]:
    """The two names sipedge's base chain alternates between on structural changes."""
    return d.chain, f"{d.chain}_b"


class NftBackend:
    """Reads and changes sipedge's table in one network namespace."""

    name = "nft"

    def __init__(self, netns: Optional[str] = None) -> None:
        self.sock = NfSocket(netns)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "NftBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def netns_cookie(self) -> Optional[int]:
        return self.sock.netns_cookie()

    # -- reading ------------------------------------------------------------------
    def genid(self) -> int:
        s = self.sock
        msgs = s.request(genid_request(s.next_seq()), "read the ruleset generation")
        for m in msgs:
            return parse_genid(m) or 0
        return 0

    def _dump(self, msg_type: int, attrs: list, what: str) -> List[bytes]:
        s = self.sock
        return s.request(message(msg_type, NLM_F_REQUEST | NLM_F_DUMP, s.next_seq(), attrs), what)

    def _get(self, msg_type: int, attrs: list, what: str) -> Optional[List[bytes]]:
        """A GET of one object; None when it does not exist."""
        s = self.sock
        try:
            return s.request(message(msg_type, NLM_F_REQUEST | NLM_F_ACK, s.next_seq(), attrs), what)
        except NetlinkError as e:
            if e.code == errno.ENOENT:
                return None
            raise

    def table_owner(self, table: str) -> Tuple[bool, Optional[str]]:
        """(exists, comment) of table inet *table*."""
        msgs = self._get(NFT_MSG_GETTABLE, [("NFTA_TABLE_NAME", table)], f"read table {table}")
        if msgs is None:
            return False, None
        for m in msgs:
            a = _parse_attrs(m, 20, len(m))
            if 6 in a:
                s, e = a[6]
                return True, table_comment(m[s:e])
        return True, None

    def table_exists(self, table: str) -> bool:
        return self.table_owner(table)[0]

    def set_intervals(self, table: str, name: str, family: int) -> tuple:
        msgs = self._dump(NFT_MSG_GETSETELEM, [("NFTA_SET_ELEM_LIST_TABLE", table),
                                               ("NFTA_SET_ELEM_LIST_SET", name)], f"read set {name}")
        return elements_to_intervals(parse_elements(msgs), family)

    def read(self, table: str, with_elements: bool = True) -> Live:
        live = Live(genid=self.genid())
        live.exists, live.owner = self.table_owner(table)
        if not live.exists:
            return live
        for m in self._dump(NFT_MSG_GETCHAIN, [("NFTA_CHAIN_TABLE", table)], "read chains"):
            c = _pr().nft_chain_msg(m)
            c.decode()
            if c.get_attr("NFTA_CHAIN_TABLE") != table:
                continue
            hook = c.get_attr("NFTA_CHAIN_HOOK")
            name = c.get_attr("NFTA_CHAIN_NAME")
            live.chains[name] = LiveChain(name, hook.get_attr("NFTA_HOOK_HOOKNUM") if hook else None,
                                          hook.get_attr("NFTA_HOOK_PRIORITY") if hook else None,
                                          c.get_attr("NFTA_CHAIN_TYPE"), c.get_attr("NFTA_CHAIN_POLICY"))
        for m in self._dump(NFT_MSG_GETSET, [("NFTA_SET_TABLE", table)], "read sets"):
            a = _parse_attrs(m, 20, len(m))
            if 1 not in a or m[a[1][0]:a[1][1]].rstrip(b"\0").decode() != table:
                continue
            name = m[a[2][0]:a[2][1]].rstrip(b"\0").decode()
            flags = struct.unpack_from(">I", m, a[3][0])[0] if 3 in a else 0
            ktype = struct.unpack_from(">I", m, a[4][0])[0] if 4 in a else 0
            fam = 4 if ktype == KEY_TYPE[4] else 6
            ivs = self.set_intervals(table, name, fam) if with_elements else ()
            live.sets[name] = LiveSet(name, ktype, flags, ivs)
        for m in self._dump(NFT_MSG_GETRULE, [("NFTA_RULE_TABLE", table)], "read rules"):
            r = _pr().nft_rule_msg(m)
            r.decode()
            if r.get_attr("NFTA_RULE_TABLE") != table:
                continue
            pk, by = rule_counter(m)
            chain = r.get_attr("NFTA_RULE_CHAIN")
            canon = canon_rule(m)
            live.rules.append((chain, canon, pk, by, r.get_attr("NFTA_RULE_HANDLE")))
            if chain in live.chains:
                live.chains[chain].rules.append(canon)
        return live

    def read_with_contents(self, table: str, packed: Dict[str, bytes], genid: int) -> Optional[Live]:
        """The live table without dumping set elements, their contents taken from
        *packed* (the applied-state cache, valid for generation *genid*); None when the
        generation moved or a set is not in *packed* (then read everything)."""
        live = self.read(table, with_elements=False)
        if live.genid != genid or any(n not in packed for n in live.sets):
            return None
        for n, ls in live.sets.items():
            ls.packed = packed[n]
        return live

    def verify(self, d: Desired, chain: str) -> bool:
        """Cheap check that sipedge's table, its chain *chain* and every desired set
        exist (no element dump): what the fast path asks before trusting a cache."""
        exists, owner = self.table_owner(d.table)
        if not exists or owner != OWNER_COMMENT:
            return False
        if self._get(NFT_MSG_GETCHAIN, [("NFTA_CHAIN_TABLE", d.table), ("NFTA_CHAIN_NAME", chain)],
                     f"read chain {chain}") is None:
            return False
        for name in d.sets:
            if self._get(NFT_MSG_GETSET, [("NFTA_SET_TABLE", d.table), ("NFTA_SET_NAME", name)],
                         f"read set {name}") is None:
                return False
        return True

    # -- comparing ----------------------------------------------------------------
    @staticmethod
    def desired_rules(d: Desired) -> list:
        ids = {name: i + 1 for i, name in enumerate(d.sets)}
        return [canon_rule(rule_message(0, 0, d.table, d.chain, rule_exprs(r, ids))) for r in d.rules]

    def desired_signature(self, d: Desired) -> tuple:
        return (NF_INET_LOCAL_IN, d.priority, "filter", NF_ACCEPT, tuple(self.desired_rules(d)))

    def _sets_fit(self, d: Desired, live: Live) -> bool:
        for name, s in d.sets.items():
            ls = live.sets.get(name)
            if ls is not None and (ls.key_type != KEY_TYPE[s.family] or ls.flags != NFT_SET_INTERVAL):
                return False
        return True

    def good_chain(self, d: Desired, live: Live) -> Optional[str]:
        """The live chain (``input`` or ``input_b``) that equals the desired one, if any."""
        sig = self.desired_signature(d)
        for name in chain_names(d):
            c = live.chains.get(name)
            if c is not None and c.signature() == sig:
                return name
        return None

    def structure_matches(self, d: Desired, live: Live) -> bool:
        """True when the live table is sipedge's with exactly the desired chain and sets."""
        if not live.exists or not live.owned:
            return False
        good = self.good_chain(d, live)
        return (good is not None and set(live.chains) == {good} and set(live.sets) == set(d.sets)
                and self._sets_fit(d, live))

    def check_owner(self, table: str, live: Live) -> None:
        if live.exists and not live.owned:
            raise OwnershipError(
                f"table inet {table} exists but is not sipedge's (owner check: its comment is "
                f"{'missing' if live.owner is None else repr(live.owner)}, not {OWNER_COMMENT!r}); sipedge changes only tables it created: "
                "choose another --table, or delete that table yourself if it is a leftover")

    def rule_report(self, d: Desired, live: Live) -> list:
        """Per-rule counters, named by the desired rule they match."""
        want = {c: r.describe() for c, r in zip(self.desired_rules(d), d.rules)}
        return [{"handle": h, "chain": chain, "rule": want.get(c, "(not a sipedge rule)"),
                 "packets": pk, "bytes": by} for chain, c, pk, by, h in live.rules]

    # -- changing -----------------------------------------------------------------
    def _batch(self, body: List[Tuple[str, bytes]], genid: Optional[int] = None,
               table: Optional[str] = None) -> Optional[int]:
        """Send one transaction; the generation id its commit created (None: unknown).

        The kernel reports the new generation (NEWGEN) to the sender when the
        batch's *first* message carries NLM_F_ECHO (nf_tables_gen_notify looks at
        the header after the batch begin). A NEWTABLE first gets the flag; else a
        no-op NEWTABLE of *table* (no flags attribute: no transaction, and ENOENT
        if the table vanished) is put first, so that no element message is echoed.
        """
        s = self.sock
        msgs = [batch_marker(NFNL_MSG_BATCH_BEGIN, s.next_seq(), genid)]
        kinds = ["batch begin"]
        if body and struct.unpack_from("=H", body[0][1], 4)[0] != (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE \
                and table is not None:
            body = [("check table", message(NFT_MSG_NEWTABLE, NLM_F_REQUEST | NLM_F_ACK, s.next_seq(),
                                            [("NFTA_TABLE_NAME", table)]))] + list(body)
        for i, (kind, m) in enumerate(body):
            if i == 0:
                flags = struct.unpack_from("=H", m, 6)[0] | NLM_F_ECHO
                m = m[:6] + struct.pack("=H", flags) + m[8:]
            msgs.append(m)
            kinds.append(kind)
        msgs.append(batch_marker(NFNL_MSG_BATCH_END, s.next_seq()))
        kinds.append("batch end")

        def what(i: int) -> str:
            k = kinds[i] if 0 <= i < len(kinds) else "the batch"
            return f"message {i} ({k}) of a {len(msgs)}-message transaction"

        new = None
        for m in s.send_batch(msgs, what):
            if struct.unpack_from("=H", m, 4)[0] == _NEWGEN:
                new = parse_genid(m)
        return new

    def _table_msg(self, d: Desired) -> Tuple[str, bytes]:
        f = NLM_F_REQUEST | NLM_F_ACK
        return ("new table", message(NFT_MSG_NEWTABLE, f | NLM_F_CREATE | NLM_F_EXCL, self.sock.next_seq(),
                                     [("NFTA_TABLE_NAME", d.table),
                                      ("NFTA_TABLE_USERDATA", table_userdata())]))

    def _set_msgs(self, d: Desired, name: str) -> List[Tuple[str, bytes]]:
        st = d.sets[name]
        f = NLM_F_REQUEST | NLM_F_ACK
        out = [(f"new set {name}", message(
            NFT_MSG_NEWSET, f | NLM_F_CREATE | NLM_F_EXCL, self.sock.next_seq(),
            [("NFTA_SET_TABLE", d.table), ("NFTA_SET_NAME", name),
             ("NFTA_SET_FLAGS", NFT_SET_INTERVAL), ("NFTA_SET_KEY_TYPE", KEY_TYPE[st.family]),
             ("NFTA_SET_KEY_LEN", KEY_LEN[st.family]),
             ("NFTA_SET_ID", list(d.sets).index(name) + 1)]))]
        out += self._elem_msgs(NFT_MSG_NEWSETELEM, d.table, name,
                               payloads=pack_interval_elements(st.packed, st.family))
        return out

    def _chain_msgs(self, d: Desired, name: str) -> List[Tuple[str, bytes]]:
        f = NLM_F_REQUEST | NLM_F_ACK
        s = self.sock
        out = [(f"new chain {name}", message(
            NFT_MSG_NEWCHAIN, f | NLM_F_CREATE | NLM_F_EXCL, s.next_seq(),
            [("NFTA_CHAIN_TABLE", d.table), ("NFTA_CHAIN_NAME", name),
             ("NFTA_CHAIN_HOOK", {"attrs": [("NFTA_HOOK_HOOKNUM", NF_INET_LOCAL_IN),
                                            ("NFTA_HOOK_PRIORITY", d.priority)]}),
             ("NFTA_CHAIN_POLICY", NF_ACCEPT), ("NFTA_CHAIN_TYPE", "filter")]))]
        ids: Dict[str, int] = {}  # sets already exist: rules look them up by name
        for r in d.rules:
            out.append((f"new rule `{r.describe()}`", rule_message(
                f | NLM_F_CREATE | NLM_F_APPEND, s.next_seq(), d.table, name, rule_exprs(r, ids))))
        return out

    def create_messages(self, d: Desired, replace: bool = False) -> List[Tuple[str, bytes]]:
        """Table, sets, elements, chain and rules as one list (``plan`` and tests; apply
        sends the chain in a transaction after the sets, see the module docstring)."""
        f = NLM_F_REQUEST | NLM_F_ACK
        out: List[Tuple[str, bytes]] = []
        if replace:
            out.append(("delete table", message(NFT_MSG_DELTABLE, f, self.sock.next_seq(),
                                                [("NFTA_TABLE_NAME", d.table)])))
        out.append(self._table_msg(d))
        for name in d.sets:
            out += self._set_msgs(d, name)
        out += self._chain_msgs(d, d.chain)
        return out

    def _elem_msgs(self, msg_type, table, name, keys=None, family=4, payloads=None):
        s = self.sock
        if payloads is None:
            payloads = pack_elements(keys, family)
        flags = NLM_F_REQUEST | NLM_F_ACK | (NLM_F_CREATE | NLM_F_EXCL if msg_type == NFT_MSG_NEWSETELEM else 0)
        kind = ("add" if msg_type == NFT_MSG_NEWSETELEM else "delete") + f" elements of set {name}"
        return [(kind, elem_message(msg_type, flags, s.next_seq(), table, name, p))
                for p in payloads]

    def sync_messages(self, d: Desired, live_packed: Dict[str, bytes],
                      names: Optional[List[str]] = None) -> Tuple[list, int, int]:
        """Element deletes then adds turning the live sets into *d*'s sets.

        *live_packed* maps set name -> :func:`~sipedge.firewall.desired.pack_intervals`
        of its live intervals; *names* limits the diff to those sets.
        """
        dels, adds, nd, na = [], [], 0, 0
        for name, st in d.sets.items():
            if names is not None and name not in names:
                continue
            new, gone = diff_packed(st.packed, live_packed.get(name, b""), st.family)
            nd += len(gone)
            na += len(new)
            if gone:
                dels += self._elem_msgs(NFT_MSG_DELSETELEM, d.table, name,
                                        interval_keys(gone, st.family), st.family)
            if new:
                adds += self._elem_msgs(NFT_MSG_NEWSETELEM, d.table, name,
                                        interval_keys(new, st.family), st.family)
        return dels + adds, na, nd

    def sync(self, d: Desired, live_packed: Dict[str, bytes],
             genid: Optional[int] = None) -> Tuple[int, int, Optional[int]]:
        """Change only the elements that differ, in one transaction:
        (added, deleted, generation id of the commit or None when nothing was sent)."""
        msgs, na, nd = self.sync_messages(d, live_packed)
        new = self._batch(msgs, genid, d.table) if msgs else None
        return na, nd, new

    def converge(self, d: Desired, live: Live) -> dict:
        """Turn the live table into *d*, gaplessly (module docstring); returns
        ``{"action", "added", "deleted", "genid", "chain"}``. Raises NetlinkError
        ERESTART when something else changed the ruleset meanwhile (read again)."""
        self.check_owner(d.table, live)
        f = NLM_F_REQUEST | NLM_F_ACK
        s = self.sock
        genid: Optional[int] = live.genid
        total = sum(st.interval_count for st in d.sets.values())
        if not live.exists:
            genid = self._batch([self._table_msg(d)] + [m for n in d.sets for m in self._set_msgs(d, n)],
                                genid)
            genid = self._batch(self._chain_msgs(d, d.chain), genid, d.table)
            return {"action": "create", "added": total, "deleted": 0, "genid": genid, "chain": d.chain}
        if not self._sets_fit(d, live):
            # a set of the right name but the wrong type: only a foreign edit makes one.
            # Rebuild the table (not gapless: between the two steps nothing filters).
            genid = self._batch([("delete table", message(NFT_MSG_DELTABLE, f, s.next_seq(),
                                                          [("NFTA_TABLE_NAME", d.table)])),
                                 self._table_msg(d)]
                                + [m for n in d.sets for m in self._set_msgs(d, n)], genid)
            genid = self._batch(self._chain_msgs(d, d.chain), genid, d.table)
            return {"action": "replace", "added": total, "deleted": 0, "genid": genid, "chain": d.chain}
        # step 1: new sets created and filled, existing ones synced
        step1: List[Tuple[str, bytes]] = []
        for name in d.sets:
            if name not in live.sets:
                step1 += self._set_msgs(d, name)
        existing = {n: ls.packed if ls.packed is not None else pack_intervals(ls.intervals, d.sets[n].family)
                    for n, ls in live.sets.items() if n in d.sets}
        sync_msgs, na, nd = self.sync_messages(d, existing, names=list(existing))
        step1 += sync_msgs
        added = na + sum(d.sets[n].interval_count for n in d.sets if n not in live.sets)
        good = self.good_chain(d, live)
        stale_chains = [n for n in live.chains if n != good]
        stale_sets = [n for n in live.sets if n not in d.sets]
        structural = good is None or stale_chains or stale_sets or any(n not in live.sets for n in d.sets)
        if step1:
            genid = self._batch(step1, genid, d.table)
        chain = good
        if good is None:
            free = [n for n in chain_names(d) if n not in live.chains]
            if not free:  # both names taken by stale chains (a run killed mid-change)
                victim = stale_chains.pop()
                genid = self._batch([(f"delete chain {victim}", message(
                    NFT_MSG_DELCHAIN, f, s.next_seq(), [("NFTA_CHAIN_TABLE", d.table),
                                                         ("NFTA_CHAIN_NAME", victim)]))], genid, d.table)
                free = [victim]
            chain = free[0]
            genid = self._batch(self._chain_msgs(d, chain), genid, d.table)  # step 2: beside the old one
        step3 = [(f"delete chain {n}", message(NFT_MSG_DELCHAIN, f, s.next_seq(),
                                               [("NFTA_CHAIN_TABLE", d.table), ("NFTA_CHAIN_NAME", n)]))
                 for n in stale_chains]
        step3 += [(f"delete set {n}", message(NFT_MSG_DELSET, f, s.next_seq(),
                                              [("NFTA_SET_TABLE", d.table), ("NFTA_SET_NAME", n)]))
                  for n in stale_sets]
        if step3:
            genid = self._batch(step3, genid, d.table)
        if structural:
            action = "replace"
        else:
            action = "sync" if (na or nd) else "none"
            if action == "none":
                genid = live.genid
        return {"action": action, "added": added, "deleted": nd, "genid": genid, "chain": chain}

    def remove(self, table: str) -> bool:
        exists, owner = self.table_owner(table)
        if not exists:
            return False
        live = Live(exists=True, owner=owner)
        self.check_owner(table, live)
        s = self.sock
        self._batch([("delete table", message(NFT_MSG_DELTABLE, NLM_F_REQUEST | NLM_F_ACK,
                                              s.next_seq(), [("NFTA_TABLE_NAME", table)]))])
        return True
