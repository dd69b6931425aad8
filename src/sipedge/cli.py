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
    from .catalog import EDGES

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
    p = sub.add_parser("allowlist", help="show the allowlist",
                       description="Show the allowlist (embedded Twilio dataset by default).")
    p.add_argument("--file", metavar="F", help="allowlist TOML file")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_allowlist)


def _load_allowlist(path: Optional[str]):
    from .allowlist import Allowlist

    return Allowlist.load(path) if path else Allowlist.twilio()


def _cmd_allowlist(args: argparse.Namespace) -> int:
    al = _load_allowlist(args.file)
    rows = [{"role": e.role, "edge": e.edge, "prefix": str(e.network)} for e in al]
    if args.json:
        _print_json({"meta": al.meta, "ports": {r: [str(p) for p in ps] for r, ps in al.ports.items()},
                     "ranges": rows})
    else:
        for r in rows:
            print(f"{r['role']:<10} {r['edge'] or '*':<14} {r['prefix']}")
    return 0


# ------------------------------------------------------------------------ firewall
def _add_firewall(sub) -> None:
    p = sub.add_parser("firewall", help="program the firewall from the allowlist",
                       description="Keep the kernel firewall equal to the allowlist: sipedge's own "
                                   "table only, rules matching only the SBC's SIP and media ports.")
    fsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    helps = {
        "plan": ("print the nft ruleset (no root needed); with root, the change against the kernel",
                 _cmd_firewall_plan),
        "apply": ("create or sync the firewall; exit 0 also when nothing changed",
                  _cmd_firewall_apply),
        "status": ("live state vs desired: drift, per-rule counters (exit 7 on drift)",
                   _cmd_firewall_status),
        "remove": ("delete sipedge's table (nothing else)", _cmd_firewall_remove),
    }
    for name, (text, func) in helps.items():
        a = fsub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        a.add_argument("--allowlist", metavar="F", help="allowlist TOML file (default: embedded Twilio dataset)")
        a.add_argument("--edges", metavar="LIST",
                       help="comma list of edges whose ranges to allow (default: all); ranges "
                            "without an edge, like Twilio's media range, are always kept")
        a.add_argument("--table", default="sipedge",
                       help="nft table name (default: sipedge); with ipset: set-name prefix, and "
                            "upper-cased, the iptables chain")
        a.add_argument("--backend", choices=("nft", "ipset"), default="nft",
                       help="nft (netlink, default) or ipset (+ iptables rules)")
        a.add_argument("--netns", metavar="NAME", help="network namespace (ip netns name)")
        a.add_argument("--mode", choices=("enforce", "monitor"), default="enforce",
                       help="enforce: drop untrusted traffic to the SBC ports; monitor: only count it")
        a.add_argument("--priority", type=int, default=-10, help="input hook priority (nft backend; default: -10)")
        a.add_argument("--signaling-ports", metavar="LIST",
                       help="override signaling ports, e.g. 5060/udp,5060/tcp,5061/tcp")
        a.add_argument("--media-ports", metavar="LIST", help="override media ports, e.g. 10000-60000/udp")
        a.add_argument("--lock-file", default="/run/sipedge/firewall.lock", metavar="F",
                       help="lock file so two runs never interleave (default: %(default)s)")
        a.add_argument("--lock-timeout", type=float, default=30.0, metavar="S",
                       help="seconds to wait for the lock (default: 30)")
        a.add_argument("--state-dir", default="/var/lib/sipedge", metavar="DIR",
                       help="where the snapshot of the last apply is kept (default: %(default)s)")
        a.add_argument("--json", action="store_true", help="print JSON")
        if name == "apply":
            a.add_argument("--metrics-file", metavar="F",
                           help="write Prometheus textfile metrics (last sync time, prefixes, changes)")
        if name == "plan":
            a.add_argument("--no-live", action="store_true",
                           help="do not read the live state even when running as root")
        a.set_defaults(func=func)


def _firewall_setup(args: argparse.Namespace):
    from .allowlist import Allowlist
    from .firewall.desired import desired_state, parse_port_list
    from .firewall.ops import Options

    al = _load_allowlist(args.allowlist)
    if args.edges:
        wanted = {e.strip() for e in args.edges.split(",") if e.strip()}
        known = {e.edge for e in al if e.edge}
        unknown = sorted(wanted - known)
        if unknown:
            raise errors.InputError(f"--edges: unknown edge(s) {', '.join(unknown)}; the allowlist "
                                    f"has {', '.join(sorted(known)) or 'no named edges'}")
        al = Allowlist([e for e in al if e.edge is None or e.edge in wanted], al.ports, al.meta)
    ports = {}
    if args.signaling_ports:
        ports["signaling"] = parse_port_list(args.signaling_ports, "--signaling-ports")
    if args.media_ports:
        ports["media"] = parse_port_list(args.media_ports, "--media-ports")
    d = desired_state(al, table=args.table, mode=args.mode, priority=args.priority, ports=ports)
    opts = Options(netns=args.netns, backend=args.backend, lock_file=args.lock_file,
                   lock_timeout=args.lock_timeout, state_dir=args.state_dir,
                   metrics_file=getattr(args, "metrics_file", None))
    return d, opts


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
                "replace": f"would replace table inet {d.table} (its chain, rules or sets differ)",
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


def _cmd_firewall_apply(args: argparse.Namespace) -> int:
    from .firewall import ops

    d, opts = _firewall_setup(args)
    r = ops.apply(d, opts)
    if args.json:
        _print_json(r)
    elif r["action"] == "none":
        print(f"no change: table inet {d.table} already equals the allowlist "
              f"({r['prefixes']} prefixes, {d.mode})")
    else:
        print(f"applied ({r['action']}): table inet {d.table}, {r['prefixes']} prefixes, {d.mode}; "
              f"+{r['added']} -{r['deleted']} set intervals in {r['seconds'] * 1000:.1f} ms")
    return 0


def _cmd_firewall_status(args: argparse.Namespace) -> int:
    import time

    from .firewall import ops

    d, opts = _firewall_setup(args)
    st = ops.status(d, opts)
    if args.json:
        _print_json(st)
    else:
        if not st["exists"]:
            print(f"table inet {d.table}: missing (run `sipedge firewall apply`)")
        else:
            print(f"table inet {d.table}: {'DRIFT' if st['drift'] else 'in sync'}"
                  f"{'' if st['structure_ok'] else ' (chain, rules or sets differ from desired)'}")
            for name, v in st["sets"].items():
                print(f"  set {name}: {v['live']} live / {v['desired']} desired intervals"
                      + (f", missing {len(v['add'])}, extra {len(v['delete'])}"
                         if v["add"] or v["delete"] else ""))
            for r in st["rules"]:
                print(f"  {r['packets']:>10} pkts {r['bytes']:>12} bytes  {r['rule']}")
        if "last_apply" in st:
            la = st["last_apply"]
            print(f"last apply: {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(la['time']))} UTC, "
                  f"{la['prefixes']} prefixes, {la['mode']}")
    return errors.EXIT_DRIFT if st["drift"] else 0


def _cmd_firewall_remove(args: argparse.Namespace) -> int:
    from .firewall import ops

    d, opts = _firewall_setup(args)
    r = ops.remove(d.table, opts)
    if args.json:
        _print_json(r)
    else:
        print(f"removed table inet {d.table}" if r["removed"]
              else f"nothing to remove: no table inet {d.table}")
    return 0


# ------------------------------------------------------------------------ the rest
ADDERS = [_add_edges, _add_allowlist, _add_firewall]


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
        return int(args.func(args) or 0)
    except errors.SipedgeError as e:
        print(f"sipedge: error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print("sipedge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
