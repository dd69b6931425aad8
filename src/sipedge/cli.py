"""The ``sipedge`` command: argument parsing and printing, thin over the library.

Each sub-command has one ``_add_NAME`` function that declares its arguments and
one ``_cmd_NAME`` function that runs it; both only call the library and print.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, Optional, Sequence

from . import errors
from ._version import __version__

EPILOG = "exit codes:\n" + "".join(f"  {code}  {text}\n" for code, text in errors.EXIT_CODES.items())

Handler = Callable[[argparse.Namespace], int]


def _print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


# --------------------------------------------------------------------------- edges
def _add_edges(sub) -> None:
    p = sub.add_parser("edges", help="list Twilio's edges",
                       description="List Twilio's edge locations: name, location, legacy id, kind.")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_edges)


def _cmd_edges(args: argparse.Namespace) -> int:
    from .twilio.catalog import EDGES

    rows = [{"edge": e.name, "location": e.location, "legacy_id": e.legacy_id,
             "kind": e.kind, "sip_trunking": e.sip_trunking, "note": e.note}
            for e in EDGES.values()]
    if args.json:
        _print_json(rows)
    else:
        for r in rows:
            print(f"{r['edge']:<14} {r['legacy_id']:<8} {r['kind']:<8} {r['location']}"
                  + (f"  ({r['note']})" if r["note"] else ""))
    return 0


# ----------------------------------------------------------------------- allowlist
def _add_allowlist(sub) -> None:
    p = sub.add_parser(
        "allowlist", help="show, check, select or compile the allowlist",
        description="Show the allowlist: the embedded Twilio dataset (with its source and the "
                    "date it was read), or a TOML file that extends it ([dataset] extends = "
                    "\"twilio\"), replaces it, or adds other carriers. Loading validates the "
                    "file; errors name the file, line, value and fix.")
    p.add_argument("--file", metavar="F", help="allowlist TOML file or compiled snapshot "
                   "(default: the embedded Twilio dataset)")
    p.add_argument("--edges", metavar="E1,E2", help="keep only these edges' ranges (and the "
                   "ranges of every edge, e.g. media); Twilio asks you to allow ALL edges")
    p.add_argument("--match", metavar="IP", action="append", default=[],
                   help="print the role, edge and prefix of IP instead (repeatable)")
    p.add_argument("--snapshot", metavar="OUT", help="also write a compiled snapshot (msgpack) "
                   "that `--file OUT` loads fast; refused later if --file changes")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_allowlist)


def _load_allowlist(path: Optional[str]):
    from .allowlist import Allowlist

    return Allowlist.load(path) if path else Allowlist.twilio()


def _cmd_allowlist(args: argparse.Namespace) -> int:
    import warnings

    al = _load_allowlist(args.file)
    if args.edges is not None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            al = al.select(args.edges.split(","))
        for w in caught:
            print(f"sipedge: warning: {w.message}", file=sys.stderr)
    if args.snapshot:
        src = args.file if args.file and not _is_snapshot(args.file) else None
        al.save_snapshot(args.snapshot, src)
    if args.match:
        rows = []
        for ip in args.match:
            m = al.match(ip)
            rows.append({"address": ip, "role": m and m.role, "edge": m and m.edge,
                         "prefix": m and m.prefix})
        if args.json:
            _print_json(rows)
        else:
            for r in rows:
                print(f"{r['address']:<40} " + (f"{r['role']:<10} {r['edge'] or '*':<14} {r['prefix']}"
                                               if r["role"] else "no match"))
        return 0
    if args.json:
        _print_json(al.to_dict())
    else:
        for e in al:
            print(f"{e.role:<10} {e.edge or '*':<14} {e.network}")
    return 0


def _is_snapshot(path: str) -> bool:
    from .allowlist.snapshot import MAGIC

    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


# --------------------------------------------------------------------------- hosts
def _add_hosts(sub) -> None:
    p = sub.add_parser(
        "hosts", help="print Twilio host names for an edge/region/domain",
        description="Print the host names Twilio's helper libraries would use: the REST API "
                    "host for --product/--edge/--region (TWILIO_EDGE and TWILIO_REGION are "
                    "honoured when not given; region without edge is deprecated and processed "
                    "in US1), and with --domain the Elastic SIP Trunking termination host "
                    "({domain}.pstn[.{edge}].twilio.com), the SIP registration host "
                    "({domain}.sip.{edge}.twilio.com, needs --edge) and the SIP domain host.")
    p.add_argument("--edge", help="edge name or legacy id (see `sipedge edges`)")
    p.add_argument("--region", help="processing region: us1, ie1 or au1")
    p.add_argument("--product", default="api", help="REST product host label (default: api)")
    p.add_argument("--domain", help="trunk or SIP domain name, e.g. acme for acme.pstn.twilio.com")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_hosts)


def _cmd_hosts(args: argparse.Namespace) -> int:
    import warnings

    from .twilio import catalog

    out = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out["api"] = catalog.api_host(args.product, edge=args.edge, region=args.region)
    for w in caught:
        print(f"sipedge: warning: {w.message}", file=sys.stderr)
    if args.domain:
        out["termination"] = catalog.termination_host(args.domain, args.edge)
        if args.edge:
            out["sip_registration"] = catalog.sip_registration_host(args.domain, args.edge)
        out["sip_domain"] = catalog.sip_domain_host(args.domain)
    if args.json:
        _print_json(out)
    else:
        for k, v in out.items():
            print(f"{k:<17} {v}")
    return 0


# ------------------------------------------------------------------------ firewall
def _lock_timeout(text: str) -> float:
    from .firewall.state import check_lock_timeout

    try:
        return check_lock_timeout(text)
    except errors.InputError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _firewall_defaults() -> dict:
    """The library's defaults of the firewall options (imported only when needed:
    the firewall modules are not loaded for other commands)."""
    import inspect

    from .firewall.desired import desired_state
    from .firewall.ops import Options

    o = Options()
    d = inspect.signature(desired_state).parameters
    return {"table": d["table"].default, "priority": d["priority"].default,
            "mode": d["mode"].default, "backend": o.backend, "lock_file": o.lock_file,
            "lock_timeout": o.lock_timeout, "state_dir": o.state_dir}


class _LibraryDefaultsHelp(argparse.HelpFormatter):
    """Shows ``{default}`` in an option's help as the library's default."""

    def _expand_help(self, action: argparse.Action) -> str:
        text = super()._expand_help(action)
        if "{default}" in text:
            text = text.replace("{default}", str(_firewall_defaults()[action.dest]))
        return text


def _add_firewall(sub) -> None:
    from .firewall.desired import DEFAULT_RTP_PORTS, DEFAULT_SIP_PORTS

    p = sub.add_parser("firewall", help="program the firewall from the allowlist",
                       description="Keep the kernel firewall equal to the allowlist: sipedge's own "
                                   "table only (marked as sipedge's). Established/related and "
                                   "loopback traffic is accepted first; then the carrier's "
                                   "addresses may reach the SBC's own SIP and RTP ports, and the "
                                   "rest of the traffic to those ports is dropped (enforce) or "
                                   "counted (monitor). Nothing else is matched. See docs/firewall.md.")
    fsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    helps = {
        "plan": ("print the nft ruleset (no root needed); with root, the change against the kernel",
                 _cmd_firewall_plan),
        "apply": ("create or sync the firewall; exit 0 also when nothing changed",
                  _cmd_firewall_apply),
        "status": ("live state vs desired: drift, per-rule counters (exit 7 on drift)",
                   _cmd_firewall_status),
        "remove": ("delete sipedge's table (nothing else; a table sipedge did not create is refused)",
                   _cmd_firewall_remove),
    }
    for name, (text, func) in helps.items():
        # option defaults are None here: the library's apply (shown by {default} in help)
        a = fsub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".",
                            formatter_class=_LibraryDefaultsHelp)
        if name != "remove":
            a.add_argument("--allowlist", metavar="F",
                           help="allowlist TOML file (default: embedded Twilio dataset); an [sbc] "
                                "section in it may set the SBC's ports")
            a.add_argument("--edges", metavar="LIST",
                           help="comma list of edges whose ranges to allow (default: all; Twilio asks "
                                "you to allow ALL edges); ranges without an edge, like Twilio's "
                                "media range, are always kept")
            a.add_argument("--mode", choices=("enforce", "monitor"),
                           help="enforce: drop untrusted traffic to the SBC ports; monitor: only count "
                                "it (default: {default})")
            a.add_argument("--priority", type=int,
                           help="input hook priority (nft backend; default: {default})")
            a.add_argument("--sip-ports", metavar="LIST",
                           help="the SBC's own SIP listening ports, reached by role signaling "
                                f"(default: [sbc] sip_ports, else {DEFAULT_SIP_PORTS}); e.g. "
                                "5080/udp,5080/tcp for a FreeSWITCH external profile")
            a.add_argument("--rtp-ports", metavar="LIST",
                           help="the SBC's own RTP port range, reached by role media (default: [sbc] "
                                f"rtp_ports, else {DEFAULT_RTP_PORTS}, Asterisk's default and below "
                                "Linux's ephemeral ports); FreeSWITCH: 16384-32768/udp")
            a.add_argument("--iif", metavar="NAME[,NAME]",
                           help="apply the port rules only to packets arriving on these interfaces")
            a.add_argument("--force", action="store_true",
                           help="apply even a configuration sipedge refuses as unsafe: drops on the "
                                "namespace's ephemeral ports or SSH, a prefix that is every address")
        a.add_argument("--table",
                       help="nft table name (default: {default}); with ipset: the set-name prefix "
                            "(TABLE-ROLE-v4), and the iptables chain SIPEDGE (default table) or SIPEDGE-TABLE")
        a.add_argument("--backend", choices=("nft", "ipset"),
                       help="nft (netlink) or ipset (+ iptables rules) (default: {default})")
        a.add_argument("--netns", metavar="NAME", help="network namespace (ip netns name)")
        if name in ("apply", "remove"):
            a.add_argument("--lock-file", metavar="F",
                           help="lock file so two runs never interleave (default: {default})")
            a.add_argument("--lock-timeout", type=_lock_timeout, metavar="S",
                           help="seconds to wait for the lock, 0-86400 (default: {default})")
        if name != "plan":
            a.add_argument("--state-dir", metavar="DIR",
                           help="where the applied state of the last apply is kept (default: {default})")
        a.add_argument("--json", action="store_true", help="print JSON")
        if name == "apply":
            a.add_argument("--metrics-file", metavar="F",
                           help="write Prometheus textfile metrics (last sync time, prefixes, changes); "
                                "the directory must exist; the file is mode 0644")
        if name == "plan":
            a.add_argument("--no-live", action="store_true",
                           help="do not read the live state even when running as root")
        a.set_defaults(func=func)


def _warn(msg) -> None:
    print(f"sipedge: warning: {msg}", file=sys.stderr)


def _firewall_options(args: argparse.Namespace):
    """ops.Options from the options given; the rest are the library's defaults."""
    from .firewall.ops import Options

    given = {k: getattr(args, k, None) for k in ("backend", "lock_file", "lock_timeout", "state_dir")}
    return Options(netns=args.netns, metrics_file=getattr(args, "metrics_file", None),
                   **{k: v for k, v in given.items() if v is not None})


def _firewall_setup(args: argparse.Namespace):
    import warnings

    from .allowlist import Allowlist
    from .firewall.desired import desired_state, sbc_ports

    al = Allowlist.load(args.allowlist, allow_world=args.force) if args.allowlist else Allowlist.twilio()
    if args.edges:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            al = al.select(args.edges.split(","))
        for w in caught:
            _warn(w.message)
    sbc = sbc_ports(al, sip=args.sip_ports, rtp=args.rtp_ports)
    iif = [n.strip() for n in args.iif.split(",") if n.strip()] if args.iif else []
    if args.iif is not None and not iif:
        raise errors.InputError("--iif: no interface named; write e.g. --iif eth0,eth1")
    given = {k: getattr(args, k) for k in ("table", "mode", "priority") if getattr(args, k) is not None}
    d = desired_state(al, sbc=sbc, iif=iif, force=args.force, **given)
    return d, _firewall_options(args)


def _cmd_firewall_plan(args: argparse.Namespace) -> int:
    from .firewall import ops

    d, opts = _firewall_setup(args)
    out = ops.plan(d, opts, live=False if args.no_live else None)
    if args.json:
        _print_json(out)
        return 0
    sys.stdout.write(out["ruleset"])
    if "action" in out:
        what = {"create": f"would create table inet {d.table}",
                "replace": f"would change the structure of table inet {d.table} (its chain, rules "
                           "or sets differ), gaplessly",
                "none": f"no change: table inet {d.table} equals the allowlist"}.get(out["action"])
        if what is None:
            adds = sum(len(v["add"]) for v in out["sets"].values())
            dels = sum(len(v["delete"]) for v in out["sets"].values())
            what = f"would add {adds} and delete {dels} set intervals"
        print(f"# live{' in netns ' + args.netns if args.netns else ''}: {what}")
        for name, v in out.get("sets", {}).items():
            for x in v["add"]:
                print(f"# + {name} {x}")
            for x in v["delete"]:
                print(f"# - {name} {x}")
    return 0


def _print_apply(args, d, r) -> None:
    if args.json:
        _print_json(r)
    elif r["action"] == "none":
        print(f"no change: table inet {d.table} already equals the allowlist "
              f"({r['prefixes']} prefixes, {d.mode})")
    else:
        print(f"applied ({r['action']}): table inet {d.table}, {r['prefixes']} prefixes, {d.mode}; "
              f"+{r['added']} -{r['deleted']} set intervals in {r['seconds'] * 1000:.1f} ms")


def _cmd_firewall_apply(args: argparse.Namespace) -> int:
    from .firewall import ops

    d, opts = _firewall_setup(args)
    try:
        r = ops.apply(d, opts)
    except errors.AppliedButUnrecorded as e:
        for w in e.result.get("warnings", []):
            _warn(w)
        _print_apply(args, d, e.result)
        raise
    for w in r.get("warnings", []):
        _warn(w)
    _print_apply(args, d, r)
    return 0


def _cmd_firewall_status(args: argparse.Namespace) -> int:
    import time

    from .firewall import ops

    d, opts = _firewall_setup(args)
    st = ops.status(d, opts)
    args.exit_code = errors.EXIT_DRIFT if st["drift"] else 0  # also when stdout closes early
    if args.json:
        _print_json(st)
    else:
        if not st["exists"]:
            print(f"table inet {d.table}: missing (run `sipedge firewall apply`)")
        elif not st["owned"]:
            print(f"table inet {d.table}: exists but is NOT sipedge's (no \"managed by sipedge\" "
                  "comment); sipedge will not change it")
        else:
            print(f"table inet {d.table}: {'DRIFT' if st['drift'] else 'in sync'}"
                  f"{'' if st['structure_ok'] else ' (chain, rules or sets differ from desired)'}")
            for name, v in st["sets"].items():
                print(f"  set {name}: {v['live']} live / {v['desired']} desired intervals"
                      + (f", missing {len(v['add'])}, extra {len(v['delete'])}"
                         if v["add"] or v["delete"] else ""))
            for r in st["rules"]:
                # None: a model rule without a kernel rule of its own (ipset backend's --iif)
                pk, by = ("-" if r[k] is None else r[k] for k in ("packets", "bytes"))
                print(f"  {pk:>10} pkts {by:>12} bytes  {r['rule']}")
        if "last_apply" in st:
            la = st["last_apply"]
            print(f"last apply: {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(la['time']))} UTC, "
                  f"{la['prefixes']} prefixes, {la['mode']}")
    return args.exit_code


def _cmd_firewall_remove(args: argparse.Namespace) -> int:
    from .firewall import ops

    table = args.table if args.table is not None else _firewall_defaults()["table"]
    r = ops.remove(table, _firewall_options(args))
    if args.json:
        _print_json(r)
    else:
        print(f"removed table inet {table}" if r["removed"]
              else f"nothing to remove: no table inet {table}")
    return 0


# -------------------------------------------------------------------------- select
_SELECT_RULE = (
    "Shares as Twilio documents them: inside a priority a usable target comes first with "
    "probability weight / sum of the usable positive weights (equal weights split equally; "
    "60/20/20 with the 60 out or drained is 50/50). The draw is an exact integer in [0, S): "
    "RFC 2782's prose draws in [0, S] inclusive, which gives the first-listed target an extra "
    "1/(S+1) (20/20 would be 51.2/48.8), unlike Twilio, Go's net package and dnspython. "
    "Weight-0 targets come after every positive weight of their priority, in random order.")


def _add_select(sub) -> None:
    p = sub.add_parser(
        "select", help="simulate target selection; drain/undrain in a shared health table",
        description="Build a target set, optionally mark targets failed or drained, make N "
                    "picks and print each target's expected share of first place beside the "
                    "observed share. " + _SELECT_RULE + " With --table the health (failures, "
                    "drain) lives in a shared table that every worker process opening it sees: "
                    "--drain/--undrain there take a target out of (or back into) service for "
                    "all of them.")
    p.add_argument("--target", metavar="URI,PRIORITY,WEIGHT[,CPS]", action="append", required=True,
                   help="a SIP URI with priority 0-65535, weight 0-65535 and an optional "
                        "call-rate limit in calls per second (repeat for each target)")
    p.add_argument("--picks", type=int, default=10000, metavar="N",
                   help="number of picks to make, 0-100000000 (default: 10000; 0: just show "
                        "the state)")
    p.add_argument("--fail", metavar="URI", action="append", default=[],
                   help="mark this target out of service before picking (repeatable)")
    p.add_argument("--drain", metavar="URI", action="append", default=[],
                   help="drain this target: no new calls (repeatable)")
    p.add_argument("--undrain", metavar="URI", action="append", default=[],
                   help="bring a drained target back (repeatable)")
    p.add_argument("--key", action="store_true",
                   help="sticky picks: pick(key=...) with a different key for each pick")
    p.add_argument("--table", metavar="NAME",
                   help="shared health table: a name (/dev/shm/sipedge-NAME) or a path; "
                        "default: private to this run")
    p.add_argument("--cooldown", type=float, metavar="SECONDS",
                   help="cool-down of an out target (default: 30 with --table, the library's "
                        "default; without --table no cool-down ends during the run)")
    p.add_argument("--fail-threshold", type=int, default=1, metavar="N",
                   help="consecutive failures that put a target out (default: 1)")
    p.add_argument("--ok-threshold", type=int, default=1, metavar="N",
                   help="consecutive successes that bring it back (default: 1); with --table, "
                        "targets, cps and these settings must be the workers' own")
    p.add_argument("--seed", type=int, metavar="S",
                   help="seed 0..2**64-1 for reproducible picks (default: random, printed)")
    p.add_argument("--dr-url", metavar="URL", help="disaster-recovery URL used when every target is out")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_select)


def _cmd_select(args: argparse.Namespace) -> int:
    import os

    from .select import Target, TargetSet

    targets = []
    for spec in args.target:
        parts = spec.rsplit(",", 3)
        if len(parts) == 4 and not parts[1].strip().isdigit():
            parts = [parts[0] + "," + parts[1], *parts[2:]]  # a comma inside the URI
        if len(parts) not in (3, 4):
            raise errors.InputError(f"--target {spec!r}: write URI,PRIORITY,WEIGHT[,CPS], "
                                    "e.g. sip:sbc1.example.com,10,60 or sip:sbc1.example.com,10,60,30")
        cps = None
        if len(parts) == 4:
            try:
                cps = float(parts[3])
            except ValueError:
                raise errors.InputError(f"--target {spec!r}: CPS {parts[3]!r} is not a number of "
                                        "calls per second") from None
        targets.append(Target(parts[0], parts[1], parts[2], cps=cps))
    if not 0 <= args.picks <= 100_000_000:
        raise errors.InputError(f"--picks {args.picks} is out of range 0-100000000")
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(8), "little")
    cooldown = args.cooldown
    if cooldown is None:
        cooldown = 30.0 if args.table else float("inf")
    ts = TargetSet(targets, dr_url=args.dr_url, seed=seed, cooldown=cooldown,
                   fail_threshold=args.fail_threshold, ok_threshold=args.ok_threshold,
                   table=args.table)
    for uri in args.fail:
        for _ in range(args.fail_threshold):  # out at once
            ts.mark_failed(uri)
    for uri in args.drain:
        ts.drain(uri)
    for uri in args.undrain:
        ts.undrain(uri)
    expected = ts.expected_shares()
    counts = {t: 0 for t in targets}
    dr = limited = 0
    pick = ts.pick
    for n in range(args.picks):
        try:
            got = pick(f"{n:x}@sipedge-select") if args.key else pick()
        except errors.RateLimited:
            limited += 1
        except errors.DisasterRecovery:
            dr += 1
        else:
            counts[got] += 1
    picks = max(args.picks, 1)
    rows = [{"uri": str(t.uri), "priority": t.priority, "weight": t.weight, "cps": t.cps,
             "state": ts.state(t), "expected": expected[t], "observed": counts[t] / picks}
            for t in targets]
    if args.json:
        _print_json({"picks": args.picks, "seed": seed, "dr_url": ts.dr_url,
                     "table": ts.table.path, "dr_share": dr / picks,
                     "limited_share": limited / picks, "targets": rows})
        return 0
    width = max([len(r["uri"]) for r in rows] + [3])
    print(f"{'uri':<{width}} {'prio':>5} {'weight':>6} {'state':<8} {'expected':>9} {'observed':>9}")
    for r in rows:
        print(f"{r['uri']:<{width}} {r['priority']:>5} {r['weight']:>6} {r['state']:<8} "
              f"{100 * r['expected']:>8.2f}% {100 * r['observed']:>8.2f}%")
    if ts.dr_url:
        print(f"disaster recovery {ts.dr_url}: {100 * dr / picks:.2f}%")
    if limited:
        print(f"at the call-rate limit (RateLimited): {100 * limited / picks:.2f}%")
    if ts.table.path:
        print(f"health table {ts.table.path}")
    print(f"{args.picks} picks, seed {seed}; expected = weight / sum of the usable positive "
          "weights of the first usable priority (not RFC 2782's inclusive draw)")
    return 0

# ------------------------------------------------------------------------ classify
def _add_classify(sub) -> None:
    p = sub.add_parser(
        "classify", help="classify the frames of a pcap/pcapng capture",
        description="Say what each frame of a capture is (sip, rtp, rtcp, stun, tls, udptl, "
                    "other) and whether its source is trusted by the allowlist (embedded Twilio "
                    "dataset by default): a summary by kind, trust and edge; --frames for one "
                    "line per frame (number, kind, trusted/untrusted, edge or -), streamed with "
                    "constant memory. Flow mode by default: SDP (in SIP and Megaco) sets up "
                    "RTP/RTCP/UDPTL (T.38 fax) flows, RTP elsewhere is confirmed by sequence "
                    "progression, SIP split over TCP/SCTP segments is labelled on the last one "
                    "(see docs/classify.md). --stateless judges every frame alone.")
    p.add_argument("capture", metavar="CAPTURE", help="pcap or pcapng file")
    p.add_argument("--allowlist", metavar="F", help="allowlist TOML file or compiled snapshot "
                                                     "(default: embedded Twilio dataset)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--frames", action="store_true", help="one line (or JSON object) per frame")
    p.add_argument("--stateless", action="store_true",
                   help="classify every frame alone (no flows, no SDP)")
    p.set_defaults(func=_cmd_classify)


class _ProgressBar:
    """A one-line progress bar on stderr (only used when stderr is a terminal)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        frac = done / total if total else 1.0
        bar = "#" * int(frac * 30)
        sys.stderr.write(f"\r{self.name}: [{bar:<30}] {frac:6.1%}")
        sys.stderr.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\r" + " " * (len(self.name) + 42) + "\r")
            sys.stderr.flush()


def _cmd_classify(args: argparse.Namespace) -> int:
    import os

    from .classify import KINDS, Classifier

    clf = Classifier(_load_allowlist(args.allowlist))
    progress = None
    try:
        big = os.path.getsize(args.capture) >= 64 * 1024 * 1024
    except OSError:
        big = False
    if big and sys.stderr.isatty():
        progress = _ProgressBar(os.path.basename(args.capture))
    flows = not args.stateless
    if args.frames:
        _stream_frames(clf, args.capture, flows, args.json)
        return 0
    try:
        rep = clf.classify_pcap(args.capture, progress=progress, flows=flows)
    finally:
        if progress is not None:
            progress.close()
    if args.json:
        _print_json(rep.to_dict())
        return 0
    by_kind = rep.by_kind()
    trusted = {k: 0 for k in KINDS}
    for (kind, t, _), n in rep.counts.items():
        if t:
            trusted[kind] += n
    print(f"{rep.source}: {rep.frames} frames, {rep.trusted} trusted")
    print(f"{'kind':<8} {'frames':>10} {'trusted':>10} {'untrusted':>10}")
    for k in KINDS:
        print(f"{k:<8} {by_kind[k]:>10} {trusted[k]:>10} {by_kind[k] - trusted[k]:>10}")
    edges: dict = {}
    for (kind, t, edge), n in rep.counts.items():
        if edge is not None:
            row = edges.setdefault(edge, [0, 0])
            row[0 if t else 1] += n
    if edges:
        print()
        print(f"{'edge':<14} {'trusted':>10} {'untrusted':>10}")
        for edge, (t, u) in sorted(edges.items()):
            print(f"{edge:<14} {t:>10} {u:>10}")
    return 0


def _stream_frames(clf, path: str, flows: bool, as_json: bool):
    """Print one line (or JSON object) per frame as the codes come, with
    constant memory; the JSON document ends with the summary."""
    import json

    out = sys.stdout
    stream = clf.iter_pcap(path, flows=flows)
    text: dict = {}
    n = 0
    if as_json:
        out.write('{"frame_list": [')
    first = True
    for chunk in stream:
        for c in set(chunk).difference(text):
            f = clf.frame_info(1, c)
            if as_json:
                text[c] = json.dumps({"kind": f.kind, "trusted": f.trusted, "role": f.role,
                                      "edge": f.edge, "fragment": f.fragment})[1:]
            else:
                text[c] = (f"\t{f.kind}\t{'trusted' if f.trusted else 'untrusted'}"
                           f"\t{f.edge or '-'}\n")
        get = text.__getitem__
        nums = range(n + 1, n + 1 + len(chunk))
        n += len(chunk)
        if as_json:
            out.write(("" if first else ", ")
                      + ", ".join([f'{{"frame": {i}, {get(c)}' for i, c in zip(nums, chunk)]))
            first = False
        else:
            out.write("".join([f"{i}{get(c)}" for i, c in zip(nums, chunk)]))
    rep = stream.report
    if as_json:
        doc = json.dumps(rep.to_dict())
        out.write("], " + doc[1:] + "\n")
    out.flush()
    return rep


# ---------------------------------------------------------------- resolve / probe
def _add_resolver_args(p) -> None:
    p.add_argument("--nameserver", metavar="IP[:PORT]", action="append",
                   help="DNS server to ask (repeatable; default: /etc/resolv.conf)")
    p.add_argument("--dns-timeout", type=float, default=2.0, metavar="S",
                   help="seconds for each DNS query, retries included (default: 2)")


def _resolver(args: argparse.Namespace):
    from .locate import Resolver

    return Resolver(args.nameserver, timeout=args.dns_timeout)


def _add_resolve(sub) -> None:
    p = sub.add_parser(
        "resolve", help="RFC 3263: the DNS steps and the failover order of a SIP URI",
        description="Resolve a sip:/sips: URI or a host name as RFC 3263 says (NAPTR, SRV, "
                    "A/AAAA; an explicit port or numeric host skips what it should) and print "
                    "each step and the resulting failover order: host, address, port, "
                    "transport, SRV priority and weight, TTL left. The SRV order is one draw "
                    "of sipedge's selection (run it again for another).")
    p.add_argument("uri", metavar="URI", help="sip:host[:port][;transport=...], sips:..., or a host name")
    _add_resolver_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_resolve)


def _cmd_resolve(args: argparse.Namespace) -> int:
    res = _resolver(args).resolve(args.uri)
    out = res.to_dict()
    if args.json:
        _print_json(out)
        return 0
    print(f"RFC 3263 steps for {out['uri']}:")
    for st in out["steps"]:
        note = f"   ({st['note']})" if st["note"] else ""
        print(f"  {st['query']}{note}")
        for line in st["answer"]:
            print(f"      {line}")
    rows = out["destinations"]
    print(f"failover order (transport {out['transport']}):")
    w_host = max([len(r["host"]) for r in rows] + [4])
    w_addr = max([len(r["address"]) for r in rows] + [7])
    print(f"  {'#':>2}  {'host':<{w_host}}  {'address':<{w_addr}}  {'port':>5}  {'transport':<9}  "
          f"{'prio':>5}  {'weight':>6}  {'ttl':>8}")
    for i, r in enumerate(rows, 1):
        ttl = "-" if r["ttl"] is None else f"{r['ttl']:.0f} s"
        print(f"  {i:>2}  {r['host']:<{w_host}}  {r['address']:<{w_addr}}  {r['port']:>5}  "
              f"{r['transport']:<9}  {r['priority']:>5}  {r['weight']:>6}  {ttl:>8}")
    return 0


def _add_probe(sub) -> None:
    p = sub.add_parser(
        "probe", help="SIP OPTIONS health probes: state, last code, latency per target",
        description="Send SIP OPTIONS (UDP, TCP or TLS, from the URI) to each target COUNT "
                    "times, INTERVAL seconds apart, and print each target's state, last "
                    "response and latency (EWMA and spread). Host names are resolved with "
                    "RFC 3263. Exit 0 when every target is up, 6 when one is out. Twilio "
                    "hosts refuse an interval under 10 s.")
    p.add_argument("uri", metavar="URI", nargs="+", help="sip:/sips: URI or host name")
    p.add_argument("--interval", type=float, default=10.0, metavar="S",
                   help="seconds between probes of one target (default: 10)")
    p.add_argument("--count", type=int, default=1, metavar="N",
                   help="probes per target (default: 1)")
    p.add_argument("--timeout", type=float, default=4.0, metavar="S",
                   help="seconds without a final response before a probe fails with a local "
                        "408 (default: 4, Twilio's failover time)")
    p.add_argument("--reply-codes", metavar="LIST",
                   help="codes or classes that count as alive, e.g. 200,2xx,404 "
                        "(default: any final response)")
    p.add_argument("--fail-threshold", type=int, default=1, metavar="N",
                   help="consecutive failures that put a target out (default: 1)")
    p.add_argument("--ok-threshold", type=int, default=1, metavar="N",
                   help="consecutive successes that bring it back (default: 1)")
    p.add_argument("--each-address", action="store_true",
                   help="resolve each URI and probe every address it resolves to")
    p.add_argument("--watch", action="store_true",
                   help="also print each result as it comes, before the summary (with "
                        "--json: one JSON object a line, the summary last)")
    _add_resolver_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_probe)


def _cmd_probe(args: argparse.Namespace) -> int:
    import asyncio

    from .locate import Prober

    if not 1 <= args.count <= 1_000_000:
        raise errors.InputError(f"--count {args.count} is out of range 1-1000000")
    resolver = None
    targets: list = []
    needs_dns = args.each_address or any(
        not _numeric_host(u) for u in args.uri)
    if needs_dns:
        resolver = _resolver(args)
    for u in args.uri:
        if resolver is not None and args.each_address and not _numeric_host(u):
            targets.extend(resolver.resolve(u).destinations)
        else:
            targets.append(u)
    def watch(r) -> None:
        lat = None if r.latency is None else round(r.latency * 1000, 3)
        if args.json:
            print(json.dumps({"uri": r.target.uri, "address": r.address, "ok": r.ok,
                              "code": r.code, "reason": r.reason, "latency_ms": lat,
                              "state": r.state, "changed": r.changed}), flush=True)
        else:
            ms = "-" if lat is None else f"{lat:.2f} ms"
            print(f"{r.target.uri} {r.address or '-'} {r.state}{' (changed)' if r.changed else ''}"
                  f" {ms} {r.reason}", flush=True)

    prober = Prober(targets, interval=args.interval, timeout=args.timeout,
                    reply_codes=args.reply_codes, fail_threshold=args.fail_threshold,
                    ok_threshold=args.ok_threshold, resolver=resolver, stagger=False,
                    on_result=watch if args.watch else None)
    asyncio.run(prober.run(rounds=args.count))
    rows = [s.to_dict() for s in prober.status()]
    code = 0 if all(r["state"] == "up" for r in rows) else errors.EXIT_NO_TARGET
    if args.json:
        summary = {"interval": args.interval, "count": args.count, "targets": rows}
        if args.watch:      # JSON lines throughout: the summary is the last line
            print(json.dumps(summary))
        else:
            _print_json(summary)
        return code
    w_uri = max([len(r["uri"]) for r in rows] + [3])
    w_addr = max([len(r["address"] or "-") for r in rows] + [7])
    print(f"{'uri':<{w_uri}}  {'address':<{w_addr}}  {'state':<7}  {'code':>4}  "
          f"{'latency':>10}  {'spread':>9}  {'answered':>8}  last")
    for r in rows:
        lat = "-" if r["latency_ms"] is None else f"{r['latency_ms']:.2f} ms"
        spr = "-" if r["spread_ms"] is None else f"{r['spread_ms']:.2f} ms"
        print(f"{r['uri']:<{w_uri}}  {r['address'] or '-':<{w_addr}}  {r['state']:<7}  "
              f"{r['last_code'] or '-':>4}  {lat:>10}  {spr:>9}  "
              f"{r['answered']:>3}/{r['sent']:<4}  {r['last_reason']}")
    return code


def _numeric_host(text: str) -> bool:
    from .locate.resolve import as_uri

    return as_uri(text).host_kind != "name"


# ------------------------------------------------------------------------ the rest
ADDERS = [_add_edges, _add_allowlist, _add_hosts, _add_firewall, _add_select, _add_classify,
          _add_resolve, _add_probe]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sipedge",
        description="Control plane for SIP SBCs trunking with Twilio: target selection, "
                    "traffic classification, firewall sync.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sipedge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in ADDERS:
        add(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()
        return code
    except errors.SipedgeError as e:
        print(f"sipedge: error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:
        # the reader went away (`status | head -3`): the exit code still says what was found
        import os

        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        return int(getattr(args, "exit_code", 0) or 0)
    except KeyboardInterrupt:
        print("sipedge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
