"""Kamailio with sipedge (KEMI Python) beside Kamailio with its dispatcher
module, under the same sipp load, in the same run (`make bench-kamailio`).

Both are contrib/kamailio/kamailio.cfg (the dispatcher with -A WITH_DISPATCHER),
2 workers, three sipp backends weighted 60/20/20, a sipp UAC, all inside a
network namespace of this run (tests/kamailio_harness.py). Reported:

- the scenario table: config x scenario (healthy, 503, no answer, drain) x
  (completed, failed, share per backend, calls that waited for the 4 s
  timeout, Kamailio CPU per call);
- Kamailio CPU per call at a fixed rate, repeated, configs interleaved;
- the highest rate with < 1 % failed calls (rates stepped up until a step
  fails or the UAC cannot reach the rate asked for; sipp runs on the same
  machine, so the figure is a floor when sipp is the limit, and the same
  floor for both configs).

A script, not a pytest benchmark: one row is a whole Kamailio run.
    python3 bench/bench_kamailio.py [--rate 200] [--calls 3000] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

CONFIGS = ("dispatcher", "sipedge")
SCENARIOS = ("healthy", "503", "no answer", "drain")


def run_scenario(tmp, mode, scenario, rate, calls):
    from kamailio_harness import Lab
    backends = {"healthy": ["ok"] * 3, "503": ["503", "ok", "ok"],
                "no answer": ["silent", "ok", "ok"], "drain": ["ok"] * 3}[scenario]
    hold = 2000 if scenario == "drain" else 100
    with Lab(os.path.join(tmp, f"{mode}-{scenario.replace(' ', '')}"), mode=mode,
             backends=backends) as lab:
        if scenario == "drain":
            run = lab.load(rate=rate, calls=calls, hold_ms=hold, background=True)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                rows = lab.count_lines(0)
                if rows and rows[-1].get("1_INVITE_Recv", 0) >= calls * 0.6 * 0.3:
                    break
                time.sleep(0.1)
            t_drain = time.time()
            lab.drain(0)
            res = run.result()
            final = lab.counts(0, res.end)
            at = lab.counts_at(0, t_drain + 1.0)
            extra = {"invites_to_drained_after_1s": final.get("1_INVITE_Recv", 0) - at.get("1_INVITE_Recv", 0),
                     "drained_calls_finished": final.get("4_BYE_Recv", 0) == final.get("1_INVITE_Recv", 0)}
        else:
            res = lab.load(rate=rate, calls=calls, hold_ms=hold)
            extra = {}
        # a silent backend has no sipp to count what reached it: None
        inv = [lab.invites(i, res.end) if i in lab.uas else None for i in range(3)]
        total = sum(x for x in inv if x) or 1
        return {"config": mode, "scenario": scenario, "rate": rate, "calls": calls,
                "completed": res.completed, "failed": res.failed,
                "invites": inv, "share": [None if x is None else round(x / total, 3) for x in inv],
                "waited": res.waited, "cpu_per_call_ms": round(res.cpu_per_call_ms, 4),
                "achieved_rate": round(res.completed / res.elapsed, 1), **extra}


def cpu_at_rate(tmp, mode, rate, seconds):
    from kamailio_harness import Lab
    with Lab(os.path.join(tmp, f"cpu-{mode}-{time.monotonic_ns()}"), mode=mode) as lab:
        lab.load(rate=min(rate, 100), calls=min(rate, 100))        # warm-up
        res = lab.load(rate=rate, calls=int(rate * seconds))
        return res


def max_rates(tmp, rates, seconds):
    """Step the rate up for both configs, interleaved at each step (both
    Kamailios stay up, loaded one after the other), so a change in the
    machine's load hits both alike. A config stops at its first step with
    >= 1 % failed calls or an achieved rate under 90 % of the one asked."""
    from kamailio_harness import Lab
    labs = {m: Lab(os.path.join(tmp, f"max-{m}"), mode=m) for m in CONFIGS}
    best = {m: 0.0 for m in CONFIGS}
    steps = {m: [] for m in CONFIGS}
    going = set(CONFIGS)
    try:
        for lab in labs.values():
            lab.start()
        for r in rates:
            for m in CONFIGS:
                if m not in going:
                    continue
                res = labs[m].load(rate=r, calls=int(r * seconds), max_seconds=seconds * 3 + 10)
                achieved = res.completed / res.elapsed
                ok = res.failed_ratio < 0.01 and achieved >= 0.9 * r
                steps[m].append({"rate": r, "completed": res.completed, "failed": res.failed,
                                 "achieved_rate": round(achieved, 1),
                                 "cpu_per_call_ms": round(res.cpu_per_call_ms, 4), "ok": ok})
                print(m, "step", steps[m][-1], flush=True)
                if ok:
                    best[m] = r
                else:
                    going.discard(m)
            if not going:
                break
    finally:
        for lab in labs.values():
            lab.close()
    return best, steps


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=200, help="scenario rate, calls/s (200)")
    ap.add_argument("--calls", type=int, default=3000, help="calls per scenario (3000)")
    ap.add_argument("--cpu-rate", type=float, default=300, help="rate of the CPU-per-call runs (300)")
    ap.add_argument("--cpu-seconds", type=float, default=10, help="length of each CPU run (10 s)")
    ap.add_argument("--repeats", type=int, default=3, help="CPU runs per config (3)")
    ap.add_argument("--rates", default="200,300,400,500,600,800,1000,1250,1500,2000,2500,3000",
                    help="rates stepped for the max rate (calls/s)")
    ap.add_argument("--step-seconds", type=float, default=6, help="seconds per max-rate step (6)")
    ap.add_argument("--json", default="bench-kamailio.json", help="where the figures go")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: scenarios,cpu,max")
    a = ap.parse_args(argv)
    skip = set(filter(None, a.skip.split(",")))
    from kamailio_harness import kamailio_impl
    out = {"kamailio_python_impl": kamailio_impl(), "scenarios": [], "cpu": {}, "max_rate": {}}
    print(f"sipedge in Kamailio's python: {out['kamailio_python_impl']}", flush=True)
    tmp = tempfile.mkdtemp(prefix="bench-kamailio-")
    try:
        if "scenarios" not in skip:
            for sc in SCENARIOS:
                for mode in CONFIGS:
                    row = run_scenario(tmp, mode, sc, a.rate, a.calls)
                    out["scenarios"].append(row)
                    print(json.dumps(row), flush=True)
        if "cpu" not in skip:
            for rep in range(a.repeats):
                for mode in (CONFIGS if rep % 2 == 0 else CONFIGS[::-1]):
                    res = cpu_at_rate(tmp, mode, a.cpu_rate, a.cpu_seconds)
                    out["cpu"].setdefault(mode, []).append(
                        {"cpu_per_call_ms": round(res.cpu_per_call_ms, 4), "completed": res.completed,
                         "failed": res.failed, "achieved_rate": round(res.completed / res.elapsed, 1)})
                    print(mode, "cpu", out["cpu"][mode][-1], flush=True)
        if "max" not in skip:
            rates = [float(x) for x in a.rates.split(",")]
            best, steps = max_rates(tmp, rates, a.step_seconds)
            for mode in CONFIGS:
                out["max_rate"][mode] = {"max_rate": best[mode], "steps": steps[mode]}
                print(mode, "max rate", best[mode], flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    with open(a.json, "w") as f:
        json.dump(out, f, indent=1)
    print(table(out))
    return 0


def table(out) -> str:
    cpu = {m: sorted(r["cpu_per_call_ms"] for r in rows) for m, rows in out["cpu"].items()}
    mx = {m: v["max_rate"] for m, v in out["max_rate"].items()}
    lines = ["| config | scenario | completed | failed | share per backend | waited for timeout "
             "| CPU/call ms (scenario) | CPU/call ms (fixed rate, min-max) | max rate <1% failed |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in out["scenarios"]:
        c = cpu.get(r["config"])
        crange = f"{c[0]:.3f}-{c[-1]:.3f}" if c else "-"
        share = "/".join("-" if x is None else f"{x * 100:.1f}" for x in r["share"])
        note = ""
        if r["scenario"] == "drain":
            note = f" ({r['invites_to_drained_after_1s']} INVITEs to the drained one >1 s after)"
        lines.append(f"| {r['config']} | {r['scenario']} | {r['completed']} | {r['failed']} | "
                     f"{share}{note} | {r['waited']} | {r['cpu_per_call_ms']:.3f} | {crange} | "
                     f"{mx.get(r['config'], '-')} |")
    if not out["scenarios"]:
        for m in cpu:
            lines.append(f"| {m} | - | - | - | - | - | - | {cpu[m][0]:.3f}-{cpu[m][-1]:.3f} | "
                         f"{mx.get(m, '-')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
