"""plan / apply / status / remove: the operations behind ``sipedge firewall``.

Each operation takes a :class:`~sipedge.firewall.desired.Desired` state and
an :class:`Options` (namespace, backend, lock, state directory, metrics
file) and returns a plain dict the CLI prints (as text or ``--json``).
"""
from __future__ import annotations

import errno
import hashlib
import time
from dataclasses import dataclass
from typing import Optional

from ..errors import AppliedButUnrecorded, AppliedStateError, FirewallError, InputError
from . import nsutil, safety, state
from .desired import Desired, interval_text, pack_intervals
from .netlink import NetlinkError, has_net_admin, require_net_admin
from .ruleset import render_desired


@dataclass
class Options:
    netns: Optional[str] = None
    backend: str = "nft"
    lock_file: str = state.DEFAULT_LOCK
    lock_timeout: float = 30.0
    state_dir: str = state.DEFAULT_STATE_DIR
    metrics_file: Optional[str] = None
    use_snapshot: bool = True  # trust the applied-state cache when it verifies


def structure_key(d: Desired) -> str:
    """A digest of everything but the set contents (chain, priority, rules, set names)."""
    text = repr((d.table, d.chain, d.priority, d.mode, sorted((s.name, s.family) for s in d.sets.values()),
                 [r.describe() for r in d.rules]))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _backend(opts: Options):
    if opts.backend == "nft":
        from .backends.nft import NftBackend
        return NftBackend(opts.netns)
    if opts.backend == "ipset":
        from .backends.ipset import IpsetBackend
        return IpsetBackend(opts.netns)
    raise InputError(f"unknown backend {opts.backend!r}: use nft or ipset")


def _set_diff(d: Desired, live_sets: dict) -> dict:
    """Per set: desired/live counts and the intervals to add/delete. *live_sets* maps a
    name to ``(family, intervals)``; a live set the allowlist lacks keeps its own family."""
    out = {}
    for name, st in d.sets.items():
        cur = set(live_sets.get(name, (st.family, ()))[1])
        want = set(st.intervals)
        out[name] = {"family": st.family, "desired": len(want), "live": len(cur),
                     "add": sorted(want - cur), "delete": sorted(cur - want)}
    for name, (fam, ivs) in live_sets.items():
        if name not in d.sets:
            out[name] = {"family": fam, "desired": 0, "live": len(ivs), "add": [],
                         "delete": sorted(ivs)}
    return out


def _live_sets(cur) -> dict:
    out = {}
    for n, s in cur.sets.items():
        fam = getattr(s, "family", None) or (4 if getattr(s, "key_type", 7) == 7 else 6)
        out[n] = (fam, s.intervals)
    return out


def _fmt_diff(diff: dict) -> dict:
    return {name: {"desired": v["desired"], "live": v["live"],
                   "add": [interval_text(a, b, v["family"]) for a, b in v["add"]],
                   "delete": [interval_text(a, b, v["family"]) for a, b in v["delete"]]}
            for name, v in diff.items()}


# -- plan ---------------------------------------------------------------------------------
def plan(d: Desired, opts: Options, live: Optional[bool] = None) -> dict:
    """The ruleset text; with root (or *live* True) also the change against the kernel."""
    out = {"ruleset": render_desired(d), "table": d.table, "backend": opts.backend}
    if live is None:
        live = has_net_admin()
    if not live:
        return out
    require_net_admin("comparing with the live firewall")
    with _backend(opts) as be:
        cur = be.read(d.table)
        if hasattr(be, "check_owner"):
            be.check_owner(d.table, cur)
        if not cur.exists:
            out["action"] = "create"
        elif not be.structure_matches(d, cur):
            out["action"] = "replace"
        else:
            diff = _set_diff(d, _live_sets(cur))
            changed = any(v["add"] or v["delete"] for v in diff.values())
            out["action"] = "sync" if changed else "none"
            out["sets"] = _fmt_diff(diff)
    return out


# -- apply --------------------------------------------------------------------------------
def apply(d: Desired, opts: Options) -> dict:
    """Make the kernel equal *d*: create, sync the elements, or change the structure
    gaplessly (see :mod:`.backends.nft.backend`).

    Refuses unsafe configurations (:mod:`.safety`) and tables sipedge does not
    own before changing anything. When the change was committed but writing
    the applied-state or metrics file failed afterwards, raises
    :class:`~sipedge.errors.AppliedButUnrecorded` carrying the result.
    """
    t0 = time.monotonic()
    require_net_admin("sipedge firewall apply")
    state.check_lock_timeout(opts.lock_timeout)
    path = state.applied_path(opts.state_dir, opts.netns, d.table, opts.backend)
    result = None
    ok = False
    try:
        with state.Lock(opts.lock_file, opts.lock_timeout):
            safety.check(d, opts.netns)
            with _backend(opts) as be:
                result = _apply_locked(be, d, opts, path)
            ok = True
    finally:
        if opts.metrics_file:
            r = result or {"added": 0, "deleted": 0, "changed": False}
            try:
                state.write_metrics(opts.metrics_file, table=d.table, netns=opts.netns,
                                    backend=opts.backend, ok=ok, when=time.time(),
                                    duration=time.monotonic() - t0,
                                    prefixes={n: s.prefix_count for n, s in d.sets.items()},
                                    added=r["added"], deleted=r["deleted"], changed=r["changed"])
            except FirewallError as e:
                if ok:  # an error already on its way (lock, netlink) is not hidden by this one
                    result.setdefault("errors", []).append(str(e))
    result["seconds"] = round(time.monotonic() - t0, 6)
    if result.get("errors"):
        what = "changed" if result["changed"] else "checked (no change was needed)"
        raise AppliedButUnrecorded(f"the firewall WAS {what} (action {result['action']}), but "
                                   + "; ".join(result["errors"]), result)
    return result


def _namespace_key(be, opts: Options, d: Desired) -> dict:
    cookie = be.netns_cookie() if hasattr(be, "netns_cookie") else None
    ns = f"cookie:{cookie}" if cookie is not None else nsutil.netns_id(opts.netns)
    return {"boot": state.boot_id(), "netns": ns, "table": d.table, "backend": opts.backend,
            "structure": structure_key(d)}


def _apply_locked(be, d: Desired, opts: Options, path: str) -> dict:
    res = {"table": d.table, "netns": opts.netns, "backend": opts.backend, "mode": d.mode,
           "prefixes": d.prefix_count, "added": 0, "deleted": 0, "warnings": []}
    key = _namespace_key(be, opts, d)
    cached = None
    if opts.use_snapshot:
        try:
            cached = state.load_applied(path)
        except AppliedStateError as e:
            res["warnings"].append(f"{e}; ignored it and read the live table instead")
    done = False
    genid = None
    chain = None
    hint = None  # set contents the cache vouches for (the structure may differ)
    same_place = cached is not None and all(cached["key"].get(k) == key[k] for k in key if k != "structure")
    if same_place and cached.get("genid") is not None:
        g = be.genid()
        if g is not None and g == cached["genid"]:
            hint = {n: packed for n, (fam, packed) in cached["sets"].items()}
            if cached["key"] == key and be.verify(d, cached.get("chain")):
                try:
                    na, nd, new = be.sync(d, hint, genid=g)
                    res.update(action="sync" if na or nd else "none", added=na, deleted=nd, fast=True)
                    genid, chain, done = (new if new is not None else g), cached.get("chain"), True
                except NetlinkError as e:
                    if e.code not in (errno.ERESTART, errno.EBUSY):
                        raise
    attempt = 0
    while not done:
        # every batch carries the generation it was decided on: if anything changed
        # the ruleset in between, the kernel refuses it (ERESTART) and we read again
        attempt += 1
        cur = None
        if hint is not None and attempt == 1 and hasattr(be, "read_with_contents"):
            # nothing changed the ruleset since sipedge's own commit: the cached set
            # contents are the live ones, so only the structure is read (no element dump)
            cur = be.read_with_contents(d.table, hint, cached["genid"])
        if cur is None:
            cur = be.read(d.table)
        try:
            if hasattr(be, "converge"):
                r = be.converge(d, cur)
            else:  # a backend without the converge step (create / replace / sync)
                r = _converge_simple(be, d, cur)
        except NetlinkError as e:
            if e.code in (errno.ERESTART, errno.EBUSY) and attempt < 5:
                continue
            raise
        res.update(action=r["action"], added=r["added"], deleted=r["deleted"], fast=False)
        genid = r.get("genid") if r["action"] != "none" else cur.genid
        chain = r.get("chain")
        done = True
    res["changed"] = res["action"] != "none"
    if res["changed"] or not res["fast"]:  # a cache that did not verify is refreshed
        try:
            state.save_applied(path, key=key, genid=genid, chain=chain,
                               sets={n: (s.family, s.packed) for n, s in d.sets.items()},
                               mode=d.mode, prefixes=d.prefix_count,
                               changes={"added": res["added"], "deleted": res["deleted"]})
        except FirewallError as e:
            res.setdefault("errors", []).append(str(e))
    return res


def _converge_simple(be, d: Desired, cur) -> dict:
    if hasattr(be, "check_owner"):
        be.check_owner(d.table, cur)
    total = sum(s.interval_count for s in d.sets.values())
    if not cur.exists:
        be.create(d, genid=cur.genid)
        return {"action": "create", "added": total, "deleted": 0}
    if not be.structure_matches(d, cur):
        be.create(d, replace=True, genid=cur.genid)
        return {"action": "replace", "added": total, "deleted": 0}
    out = be.sync(d, {n: pack_intervals(s.intervals, d.sets[n].family) for n, s in cur.sets.items()},
                  genid=cur.genid)
    na, nd = out[0], out[1]
    return {"action": "sync" if na or nd else "none", "added": na, "deleted": nd}


# -- status -------------------------------------------------------------------------------
def status(d: Desired, opts: Options) -> dict:
    """Live state against the desired one: drift, per-set differences, rule counters."""
    require_net_admin("sipedge firewall status")
    path = state.applied_path(opts.state_dir, opts.netns, d.table, opts.backend)
    with _backend(opts) as be:
        cur = be.read(d.table)
        owned = getattr(cur, "owned", True)
        out = {"table": d.table, "netns": opts.netns, "backend": opts.backend,
               "exists": cur.exists, "owned": owned,
               "structure_ok": cur.exists and owned and be.structure_matches(d, cur)}
        diff = _set_diff(d, _live_sets(cur))
        out["sets"] = _fmt_diff(diff)
        out["drift"] = (not out["structure_ok"]) or any(v["add"] or v["delete"] for v in diff.values())
        out["rules"] = be.rule_report(d, cur)
    try:
        snap = state.load_applied(path)
    except AppliedStateError as e:
        snap, out["applied_state_error"] = None, str(e)
    if snap:
        out["last_apply"] = {"time": snap["time"], "prefixes": snap.get("prefixes"),
                             "mode": snap.get("mode"), "changes": snap.get("changes"),
                             "matches_desired": snap["key"].get("structure") == structure_key(d) and all(
                                 snap["sets"].get(n, (0, b""))[1] == s.packed
                                 for n, s in d.sets.items())}
    return out


# -- remove -------------------------------------------------------------------------------
def remove(table: str, opts: Options) -> dict:
    """Delete sipedge's table (only when it carries sipedge's mark) and its applied state."""
    require_net_admin("sipedge firewall remove")
    state.check_lock_timeout(opts.lock_timeout)
    path = state.applied_path(opts.state_dir, opts.netns, table, opts.backend)
    with state.Lock(opts.lock_file, opts.lock_timeout), _backend(opts) as be:
        removed = be.remove(table)
    state.remove_applied(path)
    return {"table": table, "netns": opts.netns, "backend": opts.backend, "removed": removed}
