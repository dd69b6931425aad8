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
        from . import snapshot

        src = args.file if args.file and not _is_snapshot(args.file) else None
        snapshot.save(al, args.snapshot, src)
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
    from .snapshot import MAGIC

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

    from . import catalog

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
def _add_firewall(sub) -> None:
    p = sub.add_parser("firewall", help="program the firewall from the allowlist",
                       description="Keep the kernel firewall equal to the allowlist.")
    fsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    plan = fsub.add_parser("plan", help="print the nftables ruleset (no root needed)",
                           description="Print the nft ruleset sipedge would apply.")
    plan.add_argument("--allowlist", metavar="F", help="allowlist TOML file")
    plan.add_argument("--table", default="sipedge", help="nft table name (default: sipedge)")
    plan.add_argument("--mode", choices=("enforce", "monitor"), default="enforce")
    plan.set_defaults(func=_cmd_firewall_plan)


def _cmd_firewall_plan(args: argparse.Namespace) -> int:
    from .firewall.ruleset import render

    sys.stdout.write(render(_load_allowlist(args.allowlist), table=args.table, mode=args.mode))
    return 0


# ------------------------------------------------------------------------ the rest
ADDERS = [_add_edges, _add_allowlist, _add_firewall, _add_hosts]


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
