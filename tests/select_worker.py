"""A worker process for the shared-health-table tests (tests/test_select_shared.py).

Run as ``python tests/select_worker.py TABLE [SPEC]`` (independent start; set
``SIPEDGE_NO_EXTENSIONS=1`` for the twin) or call :func:`serve` in a forked
child. It reads one JSON command a line and answers one JSON line:

  {"op": "impl"}                          -> "native" | "python"
  {"op": "picks", "n": N, "key": bool}    -> {uri: count, "limited": k, "dr": k}
  {"op": "fail"|"ok"|"drain"|"undrain"|"state", "uri": U} -> the method's result
  {"op": "korder", "key": K}  /  {"op": "kpick", "key": K, "exclude": S} -> URIs
  {"op": "rated", "n": N, "budget": S}    -> {"calls": [[t_after, target index], ...]
        of the picks that went through, "picks": how many were made} (at most N
        picks in at most S seconds)
  {"op": "churn"}                         -> prints "started", then updates the
        table in a loop until killed
  {"op": "quit"}
"""
from __future__ import annotations

import json
import sys
import time

from sipedge import errors
from sipedge.select import Target, TargetSet

SPECS = {
    "twilio": [("sip:sbc1.example.com", 10, 60), ("sip:sbc2.example.com", 10, 20),
               ("sip:sbc3.example.com", 10, 20), ("sip:sbc4.example.com", 20, 10)],
    "rated": [("sip:192.0.2.1", 10, 1, 30.0), ("sip:192.0.2.2", 10, 1, 30.0),
              ("sip:192.0.2.3", 10, 1, 30.0)],
}


def make(table: str, spec: str = "twilio", **kw) -> TargetSet:
    targets = []
    for item in SPECS[spec]:
        cps = item[3] if len(item) > 3 else None
        targets.append(Target(item[0], item[1], item[2], cps=cps))
    kw.setdefault("cooldown", 1e9)
    return TargetSet(targets, table=table, **kw)


def handle(ts: TargetSet, cmd: dict, out) -> object:
    op = cmd["op"]
    if op == "impl":
        from sipedge import select
        return "native" if select._core.__name__ == "sipedge._select" else "python"
    if op == "picks":
        counts: dict[str, int] = {}
        for i in range(cmd["n"]):
            try:
                t = ts.pick(key=f"k{i}") if cmd.get("key") else ts.pick()
                name = str(t)
            except errors.RateLimited:
                name = "limited"
            except errors.DisasterRecovery:
                name = "dr"
            except errors.SelectionError:
                name = "none"
            counts[name] = counts.get(name, 0) + 1
        return counts
    if op == "korder":
        return [str(t) for t in ts.order(key=cmd["key"])]
    if op == "kpick":
        return str(ts.pick(key=cmd["key"], exclude=cmd.get("exclude")))
    if op in ("fail", "ok", "drain", "undrain", "state"):
        fn = {"fail": ts.mark_failed, "ok": ts.mark_ok, "drain": ts.drain,
              "undrain": ts.undrain, "state": ts.state}[op]
        return fn(cmd["uri"])
    if op == "rated":
        got = []
        end = time.monotonic() + cmd["budget"]
        pick, index, mono = ts.pick, ts.index, time.monotonic
        done = 0
        for done in range(1, cmd["n"] + 1):
            try:
                t = pick()
            except errors.RateLimited:
                if mono() > end:
                    break
                continue
            got.append([mono(), index(t)])
        return {"calls": got, "picks": done}
    if op == "churn":
        out.write("\"started\"\n")
        out.flush()
        targets = ts.targets
        k = 0
        while True:
            t = targets[k % len(targets)]
            (ts.mark_failed, ts.mark_ok, ts.drain, ts.undrain)[k % 4](t)
            k += 1
    raise ValueError(f"unknown op {op!r}")


def serve(ts: TargetSet, rfile, wfile) -> None:
    for line in rfile:
        cmd = json.loads(line)
        if cmd["op"] == "quit":
            return
        res = handle(ts, cmd, wfile)
        wfile.write(json.dumps(res) + "\n")
        wfile.flush()


if __name__ == "__main__":
    serve(make(sys.argv[1], *sys.argv[2:3]), sys.stdin, sys.stdout)
