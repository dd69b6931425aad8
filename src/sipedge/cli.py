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
