"""plan / apply / status / remove: the operations behind ``sipedge firewall``.

Each operation takes a :class:`~sipedge.firewall.desired.Desired` state and
an :class:`Options` (namespace, backend, lock, snapshot directory, metrics
file) and returns a plain dict the CLI prints (as text or ``--json``).
"""
from __future__ import annotations

import errno
import hashlib
import time
from dataclasses import dataclass
from typing import Optional

from ..errors import InputError
from . import nsutil, state
from .desired import Desired, interval_text, pack_intervals
from .nl import NetlinkError, has_net_admin, require_net_admin
from .ruleset import render_desired

BACKENDS = ("nft", "ipset")


@dataclass
class Options:
    netns: Optional[str] = None
    backend: str = "nft"
    lock_file: str = state.DEFAULT_LOCK
    lock_timeout: float = 30.0
    state_dir: str = state.DEFAULT_STATE_DIR
    metrics_file: Optional[str] = None
    use_snapshot: bool = True


def structure_key(d: Desired) -> str:
    """A digest of everything but the set contents (chain, priority, rules, set names)."""
    text = repr((d.table, d.chain, d.priority, d.mode, sorted((s.name, s.family) for s in d.sets.values()),
                 [r.describe() for r in d.rules]))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _backend(opts: Options):
    if opts.backend == "nft":
        from .nft import NftBackend
        return NftBackend(opts.netns)
    if opts.backend == "ipset":
        from .backends.ipset import IpsetBackend
        return IpsetBackend(opts.netns)
    raise InputError(f"unknown backend {opts.backend!r}: use nft or ipset")


def _set_diff(d: Desired, live_sets: dict) -> dict:
    out = {}
    for name, st in d.sets.items():
        cur = set(live_sets.get(name, ()))
        want = set(st.intervals)
        out[name] = {"family": st.family, "desired": len(want), "live": len(cur),
                     "add": sorted(want - cur), "delete": sorted(cur - want)}
    for name in live_sets:
        if name not in d.sets:
            out[name] = {"family": 0, "desired": 0, "live": len(live_sets[name]),
                         "add": [], "delete": sorted(live_sets[name])}
    return out


def _fmt_diff(diff: dict) -> dict:
    return {name: {"desired": v["desired"], "live": v["live"],
                   "add": [interval_text(a, b, v["family"] or 4) for a, b in v["add"]],
                   "delete": [interval_text(a, b, v["family"] or 4) for a, b in v["delete"]]}
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
        if not cur.exists:
            out["action"] = "create"
        elif not be.structure_matches(d, cur):
            out["action"] = "replace"
        else:
            diff = _set_diff(d, {n: s.intervals for n, s in cur.sets.items()})
            changed = any(v["add"] or v["delete"] for v in diff.values())
            out["action"] = "sync" if changed else "none"
            out["sets"] = _fmt_diff(diff)
    return out


# -- apply --------------------------------------------------------------------------------
def apply(d: Desired, opts: Options) -> dict:
    """Create or sync sipedge's table so the kernel equals *d*; one transaction."""
    t0 = time.monotonic()
    require_net_admin("sipedge firewall apply")
    nsid = nsutil.netns_id(opts.netns)
    snap_path = state.snapshot_path(opts.state_dir, opts.netns, d.table, opts.backend)
    skey = structure_key(d)
    result = None
    ok = False
    try:
        with state.Lock(opts.lock_file, opts.lock_timeout), _backend(opts) as be:
            result = _apply_locked(be, d, opts, nsid, snap_path, skey)
            ok = True
    finally:
        if opts.metrics_file:
            r = result or {"added": 0, "deleted": 0, "changed": False}
            state.write_metrics(opts.metrics_file, table=d.table, netns=opts.netns,
                                backend=opts.backend, ok=ok, when=time.time(),
                                duration=time.monotonic() - t0,
                                prefixes={n: s.prefix_count for n, s in d.sets.items()},
                                added=r["added"], deleted=r["deleted"], changed=r["changed"])
    result["seconds"] = round(time.monotonic() - t0, 6)
    return result


def _apply_locked(be, d: Desired, opts: Options, nsid: str, snap_path: str, skey: str) -> dict:
    res = {"table": d.table, "netns": opts.netns, "backend": opts.backend, "mode": d.mode,
           "prefixes": d.prefix_count, "added": 0, "deleted": 0}
    snap = None
    if opts.use_snapshot:
        try:
            snap = state.load_snapshot(snap_path)
        except Exception:  # noqa: BLE001 - a bad snapshot only disables the fast path
            snap = None
    done = False
    if snap and snap["netns"] == nsid and snap["structure"] == skey and snap["table"] == d.table:
        genid = be.genid()  # None: the backend has no generation counter (ipset)
        if genid is not None and genid == snap["genid"]:
            live_sets = {n: packed for n, (fam, packed) in snap["sets"].items()}
            try:
                na, nd = be.sync(d, live_sets, genid=genid)
                res.update(action="sync" if na or nd else "none", added=na, deleted=nd, fast=True)
                done = True
            except NetlinkError as e:
                if e.code not in (errno.ERESTART, errno.EBUSY):
                    raise
    attempt = 0
    while not done:
        # the batch carries the generation read here: if anything changed the
        # ruleset in between, the kernel refuses it (ERESTART) and we read again
        attempt += 1
        cur = be.read(d.table)
        try:
            if not cur.exists:
                be.create(d, genid=cur.genid)
                res.update(action="create", added=sum(s.interval_count for s in d.sets.values()))
            elif not be.structure_matches(d, cur):
                be.create(d, replace=True, genid=cur.genid)
                res.update(action="replace", added=sum(s.interval_count for s in d.sets.values()))
            else:
                na, nd = be.sync(d, {n: pack_intervals(s.intervals, d.sets[n].family)
                                     for n, s in cur.sets.items()}, genid=cur.genid)
                res.update(action="sync" if na or nd else "none", added=na, deleted=nd)
        except NetlinkError as e:
            if e.code == errno.ERESTART and attempt < 3:
                continue
            raise
        res["fast"] = False
        done = True
    res["changed"] = res["action"] != "none"
    if res["changed"] or not res["fast"]:  # a snapshot that did not validate is refreshed
        state.save_snapshot(snap_path, netns_id=nsid, table=d.table, backend=opts.backend,
                            structure=skey, genid=be.genid(),
                            sets={n: (s.family, s.packed) for n, s in d.sets.items()},
                            mode=d.mode, prefixes=d.prefix_count,
                            changes={"added": res["added"], "deleted": res["deleted"]})
    return res


# -- status -------------------------------------------------------------------------------
def status(d: Desired, opts: Options) -> dict:
    """Live state against the desired one: drift, per-set differences, rule counters."""
    require_net_admin("sipedge firewall status")
    snap_path = state.snapshot_path(opts.state_dir, opts.netns, d.table, opts.backend)
    with _backend(opts) as be:
        cur = be.read(d.table)
        out = {"table": d.table, "netns": opts.netns, "backend": opts.backend,
               "exists": cur.exists, "structure_ok": cur.exists and be.structure_matches(d, cur)}
        diff = _set_diff(d, {n: s.intervals for n, s in cur.sets.items()})
        out["sets"] = _fmt_diff(diff)
        out["drift"] = (not out["structure_ok"]) or any(v["add"] or v["delete"] for v in diff.values())
        out["rules"] = be.rule_report(d, cur)
    try:
        snap = state.load_snapshot(snap_path)
    except Exception as e:  # noqa: BLE001
        snap, out["snapshot_error"] = None, str(e)
    if snap:
        out["last_apply"] = {"time": snap["time"], "prefixes": snap["prefixes"],
                             "mode": snap["mode"], "changes": snap["changes"],
                             "matches_desired": snap["structure"] == structure_key(d) and all(
                                 snap["sets"].get(n, (0, b""))[1] == s.packed
                                 for n, s in d.sets.items())}
    return out


# -- remove -------------------------------------------------------------------------------
def remove(table: str, opts: Options) -> dict:
    """Delete sipedge's table (and nothing else) and its snapshot."""
    require_net_admin("sipedge firewall remove")
    snap_path = state.snapshot_path(opts.state_dir, opts.netns, table, opts.backend)
    with state.Lock(opts.lock_file, opts.lock_timeout), _backend(opts) as be:
        removed = be.remove(table)
    state.remove_snapshot(snap_path)
    return {"table": table, "netns": opts.netns, "backend": opts.backend, "removed": removed}
