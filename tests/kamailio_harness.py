"""A real Kamailio with contrib/kamailio/kamailio.cfg, sipp backends and a sipp
UAC load, all inside one network namespace this process creates (its own
loopback, so ports never collide with anything else on the host).

Used by tests/test_kamailio.py and bench/bench_kamailio.py. Everything is
started by PID and stopped by PID; the namespace is deleted on close, even
when a test fails. Readiness is polled with bounded deadlines.

    with Lab(tmp_path, mode="sipedge", backends=["ok", "ok", "ok"]) as lab:
        res = lab.load(rate=100, calls=1000)
        res.completed, res.failed, res.waited, lab.invites()
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Optional, Sequence

from netns import Netns

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CONTRIB = os.path.join(ROOT, "contrib", "kamailio")
CFG = os.path.join(CONTRIB, "kamailio.cfg")
KEMI = os.path.join(CONTRIB, "sipedge_kemi.py")
SIPP_DIR = os.path.join(HERE, "sipp")
#: the interpreter app_python3 embeds (Debian's), not the one running pytest
KAMAILIO_PYTHON = "/usr/bin/python3"

PROXY_PORT = 5060
UAC_PORT = 5090
BACKEND_PORT0 = 5081
#: a call whose INVITE took this long to get its 200 waited for a failover timeout
WAITED_MS = 3500


def kamailio_env(extra: Optional[dict] = None) -> dict:
    """The environment Kamailio runs with: a system PATH and no PYTHON*
    variables, as under systemd. (An embedded interpreter finds its standard
    library from the python3 on PATH: with a pyenv or venv python first on
    PATH, Debian's libpython would load that one's stdlib and extensions.)"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    env.update(extra or {})
    return env


KAMAILIO_VENV = os.path.join(ROOT, "build", "kamailio-venv")


def venv_site_packages(venv: str = KAMAILIO_VENV) -> Optional[str]:
    lib = os.path.join(venv, "lib")
    for d in sorted(os.listdir(lib)) if os.path.isdir(lib) else ():
        sp = os.path.join(lib, d, "site-packages")
        if d.startswith("python") and os.path.isdir(sp):
            return sp
    return None


def sipedge_path() -> str:
    """What SIPEDGE_PATH gets: $SIPEDGE_KAMAILIO_PATH if set, else the source
    tree in front of build/kamailio-venv's site-packages (a venv of
    /usr/bin/python3 with sipedge's runtime dependencies, made by
    .ci/install-deps), so the tree under test is what Kamailio runs."""
    if os.environ.get("SIPEDGE_KAMAILIO_PATH"):
        return os.environ["SIPEDGE_KAMAILIO_PATH"]
    parts = [os.path.join(ROOT, "src")]
    sp = venv_site_packages()
    if sp:
        parts.append(sp)
    return ":".join(parts)


def kamailio_impl() -> str:
    """Which selection core Kamailio's Python will load ("native"/"python"),
    or an error text when sipedge or its dependencies do not import there."""
    env = kamailio_env({"PYTHONPATH": sipedge_path()})
    r = subprocess.run([KAMAILIO_PYTHON, "-c",
                        "import sipedge, sipedge.locate.probe, dns.resolver; "
                        "print(sipedge.implementation()['select'])"],
                       capture_output=True, text=True, env=env, timeout=60)
    if r.returncode:
        return "error: " + (r.stderr.strip().splitlines() or ["?"])[-1]
    return r.stdout.strip()


@dataclass
class LoadResult:
    rate: float
    calls: int
    completed: int
    failed: int
    waited: int            # calls whose 200 came >= WAITED_MS after the INVITE
    elapsed: float         # seconds the UAC ran
    cpu_ms: float          # Kamailio CPU (all its processes) during the run
    end: float             # time.time() when the UAC finished
    errors: str = ""       # the last lines of sipp's error log (why calls failed)

    @property
    def cpu_per_call_ms(self) -> float:
        return self.cpu_ms / self.completed if self.completed else float("nan")

    @property
    def failed_ratio(self) -> float:
        return self.failed / self.calls if self.calls else 0.0


def _ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


def _children(pid: int) -> list:
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            out.append(int(d))
    return out


class Lab:
    """Kamailio (``mode`` "sipedge" or "dispatcher") in front of sipp backends.

    *backends*: one entry per target, weights *weights*: ``"ok"`` (200),
    ``"503"`` (any code: answers INVITE and OPTIONS with it) or ``"silent"``
    (nothing listens: no answer at all).
    """

    def __init__(self, tmp: str, mode: str = "sipedge", backends: Sequence[str] = ("ok", "ok", "ok"),
                 weights: Sequence[int] = (60, 20, 20), children: int = 2,
                 probe_interval: float = 1.0, fr_timer_ms: int = 4000,
                 cps: Sequence[Optional[float]] = (), fallback: Optional[int] = None,
                 cooldown: float = 0, probe_mode: str = "out",
                 extra_env: Optional[dict] = None) -> None:
        self.tmp = str(tmp)
        self.cooldown = cooldown
        self.probe_mode = probe_mode
        self.cps = list(cps) + [None] * (len(weights) - len(cps))
        #: index of a backend (beyond the targets) that is the targets file's fallback
        self.fallback = fallback
        self.mode = mode
        self.kinds = list(backends)
        self.weights = list(weights)
        self.children = children
        self.probe_interval = probe_interval
        self.fr_timer_ms = fr_timer_ms
        self.extra_env = extra_env or {}
        self.ns: Optional[Netns] = None
        self.kam: Optional[subprocess.Popen] = None
        self.uas: dict = {}                # index -> Popen
        self.uas_dir: dict = {}            # index -> directory of its counts file
        self.state_file = os.path.join(self.tmp, "state.json")
        self.targets_file = os.path.join(
            self.tmp, "targets.toml" if mode == "sipedge" else "dispatcher.list")
        self.ctl = f"unix:{self.tmp}/kamailio_ctl"
        self.log = os.path.join(self.tmp, "kamailio.log")
        self._run = 0

    # ------------------------------------------------------------ set-up
    def __enter__(self) -> "Lab":
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def port(self, i: int) -> int:
        return BACKEND_PORT0 + i

    def uri(self, i: int) -> str:
        return f"sip:127.0.0.1:{self.port(i)}"

    def write_targets(self, drain: Sequence[bool] = ()) -> None:
        drain = list(drain) + [False] * (len(self.weights) - len(drain))
        if self.mode == "sipedge":
            lines = [] if self.fallback is None else [f'fallback = "{self.uri(self.fallback)}"']
            lines += ["[health]", "fail_threshold = 1", f"cooldown = {self.cooldown}", "",
                      "[probe]", f'mode = "{self.probe_mode}"', f"interval = {self.probe_interval}",
                      "timeout = 1", "ok_codes = [200]", ""]
            for i, w in enumerate(self.weights):
                lines += ["[[target]]", f'uri = "{self.uri(i)}"', "priority = 10",
                          f"weight = {w}", f"drain = {'true' if drain[i] else 'false'}"]
                if self.cps[i]:
                    lines.append(f"cps = {self.cps[i]}")
                lines.append("")
        else:
            lines = [f"1 {self.uri(i)} {1 if drain[i] else 0} 0 weight={w}"
                     for i, w in enumerate(self.weights)]
        tmp = self.targets_file + ".new"
        with open(tmp, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, self.targets_file)

    def start(self) -> None:
        os.makedirs(self.tmp, exist_ok=True)
        self.ns = Netns("kam")
        self.write_targets()
        for i, kind in enumerate(self.kinds):
            if kind != "silent":
                self.start_backend(i, kind)
        self.start_kamailio()

    def start_backend(self, i: int, kind: str = "ok") -> None:
        """Start (or restart) backend *i* answering with *kind*."""
        assert self.ns is not None
        self.stop_backend(i)
        d = os.path.join(self.tmp, f"uas{i}-{self._next()}")
        os.makedirs(d)
        if kind == "ok":
            args = ["-sf", os.path.join(SIPP_DIR, "uas_ok.xml")]
        else:
            if not (kind.isdigit() and 300 <= int(kind) <= 699):
                raise ValueError(f"backend kind {kind!r}: use ok, silent or a final code 300-699")
            with open(os.path.join(SIPP_DIR, "uas_refuse.xml")) as f:
                xml = f.read().replace("@CODE@", kind)
            with open(os.path.join(d, "uas_refuse.xml"), "w") as f:
                f.write(xml)
            args = ["-sf", os.path.join(d, "uas_refuse.xml")]
        out = open(os.path.join(d, "sipp.out"), "w")
        p = self.ns.popen("sipp", *args, "-i", "127.0.0.1", "-p", str(self.port(i)),
                          "-trace_counts", "-fd", "1", "-nostdin", "-max_socket", "4096",
                          cwd=d, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        out.close()
        self.uas[i], self.uas_dir[i] = p, d
        self._wait(lambda: self._listening("udp", self.port(i)) or p.poll() is not None,
                   10, f"sipp backend on port {self.port(i)}")
        if p.poll() is not None:
            raise RuntimeError(f"sipp backend {i} exited: {self._tail(os.path.join(d, 'sipp.out'))}")

    def stop_backend(self, i: int) -> None:
        p = self.uas.pop(i, None)
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)

    def _next(self) -> int:
        self._run += 1
        return self._run

    def start_kamailio(self) -> None:
        assert self.ns is not None
        defs = [f"LISTEN=udp:127.0.0.1:{PROXY_PORT}", f"LISTEN_TCP=tcp:127.0.0.1:{PROXY_PORT}",
                f"CHILDREN={self.children}", f"FR_TIMER={self.fr_timer_ms}",
                f'CTL_SOCKET="{self.ctl}"']
        if self.mode == "sipedge":
            defs += [f'TARGETS_FILE="{self.targets_file}"', f'KEMI_FILE="{KEMI}"',
                     f'SIPEDGE_PATH="{sipedge_path()}"', f'STATE_FILE="{self.state_file}"',
                     f'HEALTH_TABLE="{self.tmp}/health.table"']
        else:
            defs += ["WITH_DISPATCHER", f'DS_LIST="{self.targets_file}"',
                     f"DS_PING_INTERVAL={max(1, int(self.probe_interval))}"]
        args = ["kamailio", "-DD", "-E", "-f", CFG, "-Y", self.tmp, "-P",
                os.path.join(self.tmp, "kamailio.pid"), "-m", "64", "-M", "16"]
        for d in defs:
            args += ["-A", d]
        env = kamailio_env(self.extra_env)
        log = open(self.log, "w")
        self.kam = self.ns.popen(*args, stdout=log, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, env=env)
        log.close()

        def ready() -> bool:
            if self.kam.poll() is not None:
                return True
            if not self._listening("udp", PROXY_PORT):
                return False
            if len(_children(self.kam.pid)) < self.children + 2:
                return False
            if self.mode == "sipedge":
                return bool(self.state().get("targets"))
            return True
        self._wait(ready, 30, "kamailio to listen (and, with sipedge, its timer to publish)")
        if self.kam.poll() is not None:
            raise RuntimeError(f"kamailio exited with {self.kam.returncode}: {self._tail(self.log)}")

    def drain(self, i: int, on: bool = True) -> None:
        """Drain target *i* the way each config does it: sipedge, the targets
        file's ``drain = true``; the dispatcher, ``kamcmd dispatcher.set_state``."""
        if self.mode == "sipedge":
            flags = [bool(t.get("drained")) for t in self.state().get("targets", [])]
            flags = (flags + [False] * len(self.weights))[:len(self.weights)]
            flags[i] = on
            self.write_targets(drain=flags)
        else:
            subprocess.run(["kamcmd", "-s", self.ctl, "dispatcher.set_state", "i" if on else "a",
                            "1", self.uri(i)], check=True, capture_output=True, timeout=10)

    def _listening(self, proto: str, port: int) -> bool:
        assert self.ns is not None
        r = self.ns.exec("ss", "-Hln" + ("u" if proto == "udp" else "t"), f"sport = :{port}",
                         check=False)
        return bool(r.stdout.strip())

    @staticmethod
    def _wait(cond, seconds: float, what: str) -> None:
        deadline = time.monotonic() + seconds
        while not cond():
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {seconds:g} s for {what}")
            time.sleep(0.05)

    @staticmethod
    def _tail(path: str, n: int = 15) -> str:
        try:
            with open(path, errors="replace") as f:
                return " | ".join(f.read().strip().splitlines()[-n:])
        except OSError:
            return "(no log)"

    def close(self) -> None:
        for i in list(self.uas):
            self.stop_backend(i)
        if self.kam is not None and self.kam.poll() is None:
            kids = _children(self.kam.pid)
            self.kam.send_signal(signal.SIGTERM)
            try:
                self.kam.wait(10)
            except subprocess.TimeoutExpired:
                self.kam.kill()
                self.kam.wait(5)
            for k in kids:
                try:
                    os.kill(k, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self.ns is not None:
            # anything still running in our namespace is ours
            r = subprocess.run(["ip", "netns", "pids", self.ns.name], capture_output=True, text=True)
            for pid in r.stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            self.ns.delete()
            self.ns = None

    # ------------------------------------------------------------ observing
    def state(self) -> dict:
        """The sipedge state file ({} before the timer wrote it)."""
        try:
            with open(self.state_file) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def target_states(self) -> list:
        return [t["state"] for t in self.state().get("targets", [])]

    def wait_state(self, i: int, want: str, seconds: float) -> float:
        """Poll until target *i* is in state *want*; returns the seconds it took."""
        t0 = time.monotonic()
        self._wait(lambda: (self.target_states() or [None] * (i + 1))[i] == want, seconds,
                   f"target {i} to be {want} (states {self.target_states()})")
        return time.monotonic() - t0

    def kamailio_cpu_ticks(self) -> int:
        assert self.kam is not None
        pids = [self.kam.pid] + _children(self.kam.pid)
        return sum(_proc_cpu(p) for p in pids)

    def count_lines(self, i: int) -> list:
        """Every line of backend *i*'s sipp counts file (written each second)
        as {column: int, "_time": epoch seconds}."""
        d = self.uas_dir.get(i)
        if d is None:
            return []
        files = [f for f in os.listdir(d) if f.endswith("_counts.csv")]
        if not files:
            return []
        with open(os.path.join(d, files[0])) as f:
            lines = [ln for ln in f.read().splitlines() if ln.strip()]
        if len(lines) < 2:
            return []
        head = lines[0].split(";")
        rows = []
        for ln in lines[1:]:
            vals = ln.split(";")
            try:
                # the first field is "date<TAB>time<TAB>EPOCH"
                row = {"_time": float(vals[0].split("\t")[-1])}
            except ValueError:
                continue
            for k, v in zip(head[2:], vals[2:]):
                if v.strip().isdigit():
                    row[k] = int(v)
            rows.append(row)
        return rows

    def counts(self, i: int, after: Optional[float] = None, seconds: float = 5) -> dict:
        """The latest counts of backend *i*, waiting (bounded) for a line
        written after time.time() *after*."""
        if i not in self.uas_dir:
            return {}
        got: dict = {}

        def read() -> bool:
            rows = self.count_lines(i)
            if not rows:
                return False
            got.clear()
            got.update(rows[-1])
            return after is None or got["_time"] > after
        self._wait(read, seconds, f"backend {i}'s counts after the run")
        return got

    def counts_at(self, i: int, t: float) -> dict:
        """The first counts line of backend *i* written at or after time *t*."""
        for row in self.count_lines(i):
            if row["_time"] >= t:
                return row
        return {}

    def invites(self, i: int, after: Optional[float] = None) -> int:
        c = self.counts(i, after)
        return c.get("1_INVITE_Recv", 0)

    def byes(self, i: int, after: Optional[float] = None) -> int:
        return self.counts(i, after).get("4_BYE_Recv", 0)

    def options(self, i: int, after: Optional[float] = None) -> int:
        return self.counts(i, after).get("0_OPTIONS_Recv", 0)

    # ------------------------------------------------------------ load
    def load(self, rate: float, calls: int, hold_ms: int = 100, max_seconds: Optional[float] = None,
             background: bool = False):
        """Run *calls* calls at *rate* calls/s through Kamailio (a sipp UAC,
        bounded in count and time); returns a LoadResult, or with
        *background* the running UacRun (call .result())."""
        assert self.ns is not None
        d = os.path.join(self.tmp, f"uac-{self._next()}")
        os.makedirs(d)
        if max_seconds is None:
            max_seconds = calls / rate + 15 + hold_ms / 1000
        args = ["sipp", "-sf", os.path.join(SIPP_DIR, "uac.xml"), "-i", "127.0.0.1",
                "-p", str(UAC_PORT), f"127.0.0.1:{PROXY_PORT}", "-s", "sipedge",
                "-r", f"{rate:g}", "-m", str(int(calls)), "-d", str(hold_ms), "-l", str(int(max(1000, rate * 20))),
                "-trace_rtt", "-rtt_freq", "1", "-trace_err", "-nostdin", "-max_socket", "4096",
                "-timeout", f"{int(max_seconds)}s", "-timeout_error"]
        run = UacRun(self, d, args, rate, calls, max_seconds)
        return run if background else run.result()


class UacRun:
    def __init__(self, lab: Lab, d: str, args: list, rate: float, calls: int, max_seconds: float):
        self.lab, self.d, self.rate, self.calls, self.max_seconds = lab, d, rate, calls, max_seconds
        self.cpu0 = lab.kamailio_cpu_ticks()
        self.t0 = time.monotonic()
        self.out = os.path.join(d, "sipp.out")
        with open(self.out, "w") as f:
            assert lab.ns is not None
            self.p = lab.ns.popen(*args, cwd=d, stdout=f, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL)

    def result(self) -> LoadResult:
        try:
            self.p.wait(self.max_seconds + 30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(5)
        elapsed = time.monotonic() - self.t0
        cpu = (self.lab.kamailio_cpu_ticks() - self.cpu0) * 1000.0 / _ticks()
        with open(self.out, errors="replace") as f:
            text = f.read()
        ok = _stat(text, "Successful call")
        failed = _stat(text, "Failed call")
        if ok is None:
            raise RuntimeError(f"sipp UAC gave no statistics: {text[-2000:]}")
        waited = 0
        for name in os.listdir(self.d):
            if name.endswith("_rtt.csv"):
                with open(os.path.join(self.d, name)) as f:
                    for line in f:
                        parts = line.split(";")
                        if len(parts) >= 2:
                            try:
                                if float(parts[1]) >= WAITED_MS:
                                    waited += 1
                            except ValueError:
                                pass
        # calls sipp never got to start (time bound hit) count as failed
        failed = max(failed or 0, self.calls - ok)
        errors = ""
        for name in os.listdir(self.d):
            if name.endswith("_errors.log"):
                errors = Lab._tail(os.path.join(self.d, name), 6)
        return LoadResult(self.rate, self.calls, ok, failed, waited, elapsed, cpu, time.time(),
                          errors)


def _stat(text: str, name: str) -> Optional[int]:
    m = re.findall(rf"{name}\s*\|\s*\d+\s*\|\s*(\d+)", text)
    return int(m[-1]) if m else None
