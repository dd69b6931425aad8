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

EPILOG = """\
exit codes:
  0  success (firewall apply: applied, or nothing to change)
  1  unexpected internal error (a bug: please report it)
  2  usage error (bad command-line arguments)
  3  bad input: allowlist, URI, capture file, address, snapshot
  4  permission: not root / no CAP_NET_ADMIN
  5  the system cannot do it: kernel support, namespace, netlink, lock held
  6  no usable target (every target out, no disaster-recovery URL)
  7  drift: the live firewall differs from the desired state (firewall status)
  8  refused: the firewall change would break the host (drops on its ephemeral
     ports or SSH, a world-open prefix; --force overrides) or touch a table
     sipedge did not create
  9  applied, but writing the applied-state or metrics file failed afterwards
"""

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
        a = fsub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        if name != "remove":
            a.add_argument("--allowlist", metavar="F",
                           help="allowlist TOML file (default: embedded Twilio dataset); an [sbc] "
                                "section in it may set the SBC's ports")
            a.add_argument("--edges", metavar="LIST",
                           help="comma list of edges whose ranges to allow (default: all; Twilio asks "
                                "you to allow ALL edges); ranges without an edge, like Twilio's "
                                "media range, are always kept")
            a.add_argument("--mode", choices=("enforce", "monitor"), default="enforce",
                           help="enforce: drop untrusted traffic to the SBC ports; monitor: only count it")
            a.add_argument("--priority", type=int, default=-10,
                           help="input hook priority (nft backend; default: -10)")
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
        a.add_argument("--table", default="sipedge",
                       help="nft table name (default: sipedge); with ipset: the set-name prefix "
                            "(TABLE-ROLE-v4), and the iptables chain SIPEDGE (default) or SIPEDGE-TABLE")
        a.add_argument("--backend", choices=("nft", "ipset"), default="nft",
                       help="nft (netlink, default) or ipset (+ iptables rules)")
        a.add_argument("--netns", metavar="NAME", help="network namespace (ip netns name)")
        if name in ("apply", "remove"):
            a.add_argument("--lock-file", default="/run/sipedge/firewall.lock", metavar="F",
                           help="lock file so two runs never interleave (default: %(default)s)")
            a.add_argument("--lock-timeout", type=_lock_timeout, default=30.0, metavar="S",
                           help="seconds to wait for the lock, 0-86400 (default: 30)")
        if name != "plan":
            a.add_argument("--state-dir", default="/var/lib/sipedge", metavar="DIR",
                           help="where the applied state of the last apply is kept (default: %(default)s)")
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
    from .firewall.ops import Options

    return Options(netns=args.netns, backend=args.backend,
                   lock_file=getattr(args, "lock_file", Options.lock_file),
                   lock_timeout=getattr(args, "lock_timeout", Options.lock_timeout),
                   state_dir=getattr(args, "state_dir", Options.state_dir),
                   metrics_file=getattr(args, "metrics_file", None))


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
    d = desired_state(al, table=args.table, mode=args.mode, priority=args.priority, sbc=sbc,
                      iif=iif, force=args.force)
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

    r = ops.remove(args.table, _firewall_options(args))
    if args.json:
        _print_json(r)
    else:
        print(f"removed table inet {args.table}" if r["removed"]
              else f"nothing to remove: no table inet {args.table}")
    return 0


# -------------------------------------------------------------------------- select
def _add_select(sub) -> None:
    p = sub.add_parser(
        "select", help="simulate RFC 2782 target selection",
        description="Build a target set, optionally mark targets failed, make N picks and "
                    "print each target's expected share of first place (exact RFC 2782 "
                    "probability) beside the observed share.")
    p.add_argument("--target", metavar="URI,PRIORITY,WEIGHT", action="append", required=True,
                   help="an origination URI with priority 0-65535 and weight 0-65535 "
                        "(repeat for each target)")
    p.add_argument("--picks", type=int, default=10000, metavar="N",
                   help="number of picks to make (default: 10000)")
    p.add_argument("--fail", metavar="URI", action="append", default=[],
                   help="mark this target out of service before picking (repeatable)")
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
        parts = spec.rsplit(",", 2)
        if len(parts) != 3:
            raise errors.InputError(f"--target {spec!r}: write URI,PRIORITY,WEIGHT, "
                                    "e.g. sip:sbc1.example.com,10,60")
        targets.append(Target(parts[0], parts[1], parts[2]))
    if not 1 <= args.picks <= 100_000_000:
        raise errors.InputError(f"--picks {args.picks} is out of range 1-100000000")
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(8), "little")
    ts = TargetSet(targets, dr_url=args.dr_url, seed=seed, cooldown=float("inf"))
    for uri in args.fail:
        ts.mark_failed(uri)  # fail_threshold is 1: out at once, and no cool-down in this run
    expected = ts.expected_shares()
    counts = {t: 0 for t in targets}
    dr = 0
    pick = ts.pick
    for _ in range(args.picks):
        got = pick()
        if isinstance(got, Target):
            counts[got] += 1
        else:
            dr += 1
    rows = [{"uri": str(t.uri), "priority": t.priority, "weight": t.weight,
             "state": ts.state(t), "expected": expected[t], "observed": counts[t] / args.picks}
            for t in targets]
    if args.json:
        _print_json({"picks": args.picks, "seed": seed, "dr_url": ts.dr_url,
                     "dr_share": dr / args.picks, "targets": rows})
        return 0
    width = max([len(r["uri"]) for r in rows] + [3])
    print(f"{'uri':<{width}} {'prio':>5} {'weight':>6} {'state':<8} {'expected':>9} {'observed':>9}")
    for r in rows:
        print(f"{r['uri']:<{width}} {r['priority']:>5} {r['weight']:>6} {r['state']:<8} "
              f"{100 * r['expected']:>8.2f}% {100 * r['observed']:>8.2f}%")
    if ts.dr_url:
        print(f"disaster recovery {ts.dr_url}: {100 * dr / args.picks:.2f}%")
    print(f"{args.picks} picks, seed {seed}")

# ------------------------------------------------------------------------ classify
def _add_classify(sub) -> None:
    p = sub.add_parser(
        "classify", help="classify the frames of a pcap/pcapng capture",
        description="Say what each frame of a capture is (sip, rtp, rtcp, stun, tls, other) and "
                    "whether its source is trusted by the allowlist (embedded Twilio dataset by "
                    "default): a summary by kind, trust and edge; --frames for one line per "
                    "frame (number, kind, trusted/untrusted, edge or -).")
    p.add_argument("capture", metavar="CAPTURE", help="pcap or pcapng file")
    p.add_argument("--allowlist", metavar="F", help="allowlist TOML file or compiled snapshot "
                                                     "(default: embedded Twilio dataset)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--frames", action="store_true", help="one line (or JSON object) per frame")
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
    try:
        rep = clf.classify_pcap(args.capture, frames=args.frames, progress=progress)
    finally:
        if progress is not None:
            progress.close()
    if args.json:
        doc = rep.to_dict()
        if args.frames:
            doc["frame_list"] = [{"frame": f.number, "kind": f.kind, "trusted": f.trusted,
                                  "role": f.role, "edge": f.edge, "fragment": f.fragment}
                                 for f in rep.iter_frames()]
        _print_json(doc)
        return 0
    if args.frames:
        out = sys.stdout
        for f in rep.iter_frames():
            out.write(f"{f.number}\t{f.kind}\t{'trusted' if f.trusted else 'untrusted'}"
                      f"\t{f.edge or '-'}\n")
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
    edges = {}
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


# ------------------------------------------------------------------------ the rest
ADDERS = [_add_edges, _add_allowlist, _add_hosts, _add_firewall, _add_select, _add_classify]


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
