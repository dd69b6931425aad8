"""sipedge inside a real Kamailio (KEMI, app_python3), under sipp load.

Each Kamailio test starts Debian's kamailio with contrib/kamailio/kamailio.cfg
(its defines overridden with -A), three sipp backends with weights 60/20/20
and a sipp UAC, all in a network namespace of their own (tests/kamailio_harness.py).
Kamailio's Python is Debian's /usr/bin/python3; it loads the implementation
this run selects (SIPEDGE_NO_EXTENSIONS is inherited), and each test checks
which one it got.

Runtime: about 2 minutes per implementation for the 9 Kamailio tests
(marked netns and slow; measured on a loaded 2-core machine), the rest well
under a second.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from conftest import IN_CI, _missing, require_root, require_tool
from sipedge import _impl
from sipedge.errors import InputError
from sipedge.integrations import kamailio as kam

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CONTRIB = os.path.join(ROOT, "contrib", "kamailio")


# ------------------------------------------------------------ targets files
def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_contrib_targets_files_load_alike():
    toml = kam.load_targets(os.path.join(CONTRIB, "targets.toml"))
    lst = kam.load_targets(os.path.join(CONTRIB, "dispatcher.list"))
    assert [(str(t), t.weight) for t in toml.targets] == [(str(t), t.weight) for t in lst.targets]
    assert [t.weight for t in toml.targets] == [60, 20, 20]
    assert toml.probe.interval == 10 and toml.probe.ok_codes == (200,)
    assert toml.health.cooldown == 0 and toml.health.fail_threshold == 1


def test_dispatcher_list_format(tmp_path):
    p = _write(tmp_path, "d.list", "# comment\n"
               "1 sip:192.0.2.1:5060;lr 0 5 weight=50;duid=a\n"
               "1 sip:192.0.2.2 1 0 weight=50\n"
               "2 sip:192.0.2.3 0 0 weight=9\n")
    c = kam.load_targets(p)
    assert [str(t) for t in c.targets] == ["sip:192.0.2.1:5060", "sip:192.0.2.2"]
    assert c.drain == [False, True]          # dispatcher flag 1: inactive
    c2 = kam.load_targets(p, setid=2)
    assert [(str(t), t.weight) for t in c2.targets] == [("sip:192.0.2.3", 9)]
    with pytest.raises(InputError, match=r"d.list: no destinations for set 7"):
        kam.load_targets(p, setid=7)


@pytest.mark.parametrize("text, message", [
    ('[[target]]\nuri = "sip:192.0.2.1"\nwieght = 5\n', r"#1: unknown key 'wieght'"),
    ('[[target]]\nweight = 5\n', r"#1 has no uri"),
    ('[[target]]\nuri = "sip:192.0.2.1:99999"\n', r"#1: .*port '99999' is not a number 1-65535"),
    ('[[target]]\nuri = "sip:192.0.2.1"\ncps = 0\n', r"#1: cps 0 of target"),
    ('[[target]]\nuri = "sip:192.0.2.1"\n[[target]]\nuri = "sip:192.0.2.1:5060"\n',
     r"listed twice"),
    ('[probe]\nmode = "sometimes"\n[[target]]\nuri = "sip:192.0.2.1"\n', r"probe.mode"),
    ('[probe]\ninterval = 2\n[[target]]\nuri = "sip:example.pstn.twilio.com"\n',
     r"Twilio asks for one OPTIONS every 10-15 s"),
    ('[health]\nfail_threshold = 0\n[[target]]\nuri = "sip:192.0.2.1"\n',
     r"health.fail_threshold = 0 is below 1"),
    ('[[target]]\nuri = "sip:192.0.2.1"\ndrain = "yes"\n', r"drain = 'yes' is not true or false"),
    ('', r"no targets"),
    ('[[target]\n', r"not valid TOML"),
])
def test_targets_file_errors_name_file_and_fix(tmp_path, text, message):
    p = _write(tmp_path, "t.toml", text)
    with pytest.raises(InputError, match=message) as ei:
        kam.load_targets(p)
    assert str(ei.value).startswith(p + ":")
    assert "\n" not in str(ei.value)


def test_missing_targets_file_names_the_define(tmp_path):
    with pytest.raises(InputError, match=r"TARGETS_FILE"):
        kam.load_targets(str(tmp_path / "nope.toml"))


def test_termination_targets_keep_the_host_for_the_request_uri(tmp_path):
    p = _write(tmp_path, "t.toml", '[probe]\nmode = "off"\n[termination]\ndomain = "acme"\n'
               'edges = ["ashburn", "umatilla"]\n'
               '[termination.addresses]\n"acme.pstn.ashburn.twilio.com" = ["192.0.2.1", "192.0.2.2"]\n'
               '"acme.pstn.umatilla.twilio.com" = ["198.51.100.1"]\n')
    c = kam.load_targets(p)
    assert [kam.destination(t) for t in c.targets] == [
        "sip:192.0.2.1:5060;transport=udp", "sip:192.0.2.2:5060;transport=udp",
        "sip:198.51.100.1:5060;transport=udp"]
    # the R-URI keeps the termination host name; the packet goes to the address
    assert [t.uri.host for t in c.targets] == ["acme.pstn.ashburn.twilio.com"] * 2 + [
        "acme.pstn.umatilla.twilio.com"]
    r = kam.KamailioRouter(c, table=None)
    assert r._rd == [t.uri.host for t in c.targets]
    # one priority per attempt: the failover order is the termination order
    assert [r.choose("k", tried=t) for t in ("0", "0,1", "0,1,2")] == [1, 2, None]


def test_twilio_origination_records(tmp_path):
    p = _write(tmp_path, "t.toml", '[probe]\nmode = "off"\n'
               '[[origination_url]]\nsid = "OU00"\nfriendly_name = "a"\n'
               'sip_url = "sip:sbc1.example.com;edge=dublin"\npriority = 10\nweight = 60\n'
               'enabled = true\n'
               '[[origination_url]]\nsip_url = "sip:sbc2.example.com"\npriority = 10\n'
               'weight = 40\nenabled = "false"\n')
    c = kam.load_targets(p)
    assert [(str(t), t.priority, t.weight, t.enabled) for t in c.targets] == [
        ("sip:sbc1.example.com;edge=dublin", 10, 60, True), ("sip:sbc2.example.com", 10, 40, False)]
    assert kam.destination(c.targets[0]) == "sip:sbc1.example.com:5060;transport=udp"
    # Twilio's strict check: a parameter Twilio does not take is refused
    p = _write(tmp_path, "t2.toml", '[[origination_url]]\nsip_url = "sip:sbc1.example.com;lr"\n'
               'priority = 10\nweight = 1\n')
    with pytest.raises(InputError, match=r"t2.toml: \[\[origination_url\]\] #1: .*lr"):
        kam.load_targets(p)


def test_destination_drops_edge_and_fills_port_and_transport():
    t = kam.Target("sip:sbc1.example.com;edge=dublin", 10, 1)
    assert kam.destination(t) == "sip:sbc1.example.com:5060;transport=udp"
    t = kam.Target("sips:[2001:db8::1]", 10, 1)
    assert kam.destination(t) == "sip:[2001:db8::1]:5061;transport=tls"


# ------------------------------------------------------------ router logic (one process)
def _router(tmp_path, weights=(60, 20, 20), table=None, **health):
    lines = ["[health]"] + [f"{k} = {v}" for k, v in health.items()] + ['[probe]', 'mode = "off"']
    for i, w in enumerate(weights):
        lines += ["[[target]]", f'uri = "sip:192.0.2.{i + 1}"', f"weight = {w}"]
    t = [0.0]
    r = kam.KamailioRouter(kam.load_targets(_write(tmp_path, "t.toml", "\n".join(lines) + "\n")),
                           table=table, clock=lambda: t[0])
    r.publish()
    return r, t


def test_router_marks_drains_and_sticks(tmp_path):
    r, _ = _router(tmp_path)
    keys = [f"call-{n}" for n in range(3000)]
    first = [r.choose(k) for k in keys]
    share0 = first.count(0) / len(first)
    assert 0.55 < share0 < 0.65          # 60 %, 3000 keys: > 5 sd either side
    assert [r.choose(k) for k in keys[:50]] == first[:50]   # sticky
    assert r.mark_failed(0) and not r.mark_failed(0)
    moved = [r.choose(k) for k in keys]
    assert 0 not in moved
    # only the failed target's keys moved
    assert all(m == f for m, f in zip(moved, first) if f != 0)
    assert r.mark_ok(0) and [r.choose(k) for k in keys] == first
    r.drain(1)
    assert 1 not in {r.choose(k) for k in keys}
    assert r.status()[1]["state"] == "drained"
    r.drain(1, False)
    assert r.choose("k", tried="0,1") == 2 and r.choose("k", tried="0,1,2") is None


def test_router_cooldown_and_threshold(tmp_path):
    r, clock = _router(tmp_path, weights=(1, 1), fail_threshold=2, cooldown=5)
    assert not r.mark_failed(0)          # 1 of 2
    r.mark_ok(0)                         # a success resets the count
    assert not r.mark_failed(0) and r.mark_failed(0)
    assert {r.choose(f"k{n}") for n in range(200)} == {1}
    clock[0] = 7.0                       # cool-down over: ONE call is its trial
    assert [r.choose(f"k{n}") for n in range(200)].count(0) == 1
    r.mark_ok(0)                         # the trial worked
    assert [r.choose(f"k{n}") for n in range(200)].count(0) > 60


def test_router_sees_marks_of_another_process(tmp_path):
    """Two routers over one store stand for two Kamailio processes."""
    table = str(tmp_path / "health.table")
    a, _ = _router(tmp_path, table=table)
    b = kam.KamailioRouter(a.config, table=table, clock=a.clock)
    keys = [f"c{n}" for n in range(500)]
    assert 0 in {b.choose(k) for k in keys}
    a.mark_failed(0)
    assert 0 not in {b.choose(k) for k in keys}
    a.drain(2)
    assert {b.choose(k) for k in keys} == {1}


# ------------------------------------------------------------ real Kamailio
def _need_kamailio():
    require_root()
    require_tool("kamailio", "sipp", "ip", "ss")
    for mod in ("app_python3", "dispatcher", "rtimer", "kemix"):
        if not os.path.exists(f"/usr/lib/x86_64-linux-gnu/kamailio/modules/{mod}.so") and \
                not any(os.path.exists(os.path.join(d, f"{mod}.so"))
                        for d in ("/usr/lib/kamailio/modules", "/usr/local/lib64/kamailio/modules")):
            _missing(f"Kamailio module {mod} is not installed (kamailio-python3-modules)")


@pytest.fixture
def lab_factory(tmp_path):
    _need_kamailio()
    from kamailio_harness import Lab, kamailio_impl
    got = kamailio_impl()
    want = "python" if _impl.NO_EXTENSIONS else "native"
    if got != want:
        msg = (f"Kamailio's /usr/bin/python3 loads sipedge's {got!r} selection, not {want!r}: "
               "run `bash .ci/install-deps` (it makes build/kamailio-venv) and build the "
               "extension for /usr/bin/python3 (make build PYTHON=/usr/bin/python3), or set "
               "SIPEDGE_KAMAILIO_PATH to a venv's site-packages made by `make kamailio-env`")
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    labs = []

    def make(**kw):
        lab = Lab(str(tmp_path / f"lab{len(labs)}"), **kw)
        labs.append(lab)
        lab.start()
        st = lab.state()
        if kw.get("mode", "sipedge") == "sipedge":
            assert st["implementation"] == want
            # Debian's interpreter with its own standard library
            assert (st["python"], st["python_prefix"]) == (KAMAILIO_PY_VERSION, "/usr"), st
        return lab
    yield make
    for lab in labs:
        lab.close()


RATE = 100
KAMAILIO_PY_VERSION = subprocess.run(
    ["/usr/bin/python3", "-c", "import platform; print(platform.python_version())"],
    capture_output=True, text=True).stdout.strip() if os.path.exists("/usr/bin/python3") else ""


def kamailio_test(f):
    """Real Kamailio + sipp in a namespace: root, several seconds each."""
    return pytest.mark.netns(pytest.mark.slow(f))


@kamailio_test
def test_healthy_shares_60_20_20(lab_factory):
    lab = lab_factory()
    res = lab.load(rate=RATE, calls=2000)
    assert (res.completed, res.failed, res.waited) == (2000, 0, 0), res
    inv = [lab.invites(i, res.end) for i in range(3)]
    assert sum(inv) == 2000
    # sticky by Call-ID: keys spread by weight; 2000 calls: sd 1.1 points, tolerance 6 (5.5 sd)
    for got, want in zip(inv, (0.6, 0.2, 0.2)):
        assert abs(got / 2000 - want) < 0.06, inv
    assert lab.target_states() == ["up", "up", "up"]


@kamailio_test
def test_503_backend_gets_a_handful_and_stays_out(lab_factory):
    lab = lab_factory(backends=["503", "ok", "ok"])
    res = lab.load(rate=RATE, calls=1000)
    assert (res.completed, res.failed) == (1000, 0), res
    inv = [lab.invites(i, res.end) for i in range(3)]
    # the calls in flight when the first 503 came back (dispatcher: 1)
    assert inv[0] <= 5, inv
    # its share went to the two others in proportion (50/50): 1000 calls, sd 1.6 points
    assert abs(inv[1] / (inv[1] + inv[2]) - 0.5) < 0.08, inv
    st = lab.state()["targets"][0]
    assert st["state"] == "out"
    # the prober kept asking (interval 1 s) and the 503 answers kept it out
    assert st["probe_code"] == 503
    assert lab.options(0) >= 3


@kamailio_test
def test_no_answer_taken_out_for_every_worker_then_back(lab_factory):
    lab = lab_factory(backends=["silent", "ok", "ok"])
    res = lab.load(rate=RATE, calls=1000)
    assert (res.completed, res.failed) == (1000, 0), res
    # only the calls sent to it before the first 4 s timeout fired wait:
    # about rate x share x 4 s = 240 (+ 0.5 s of margin for the timer tick)
    assert 0 < res.waited <= RATE * 0.6 * 4.5, res
    assert lab.target_states()[0] == "out"
    inv_before = [lab.invites(i, res.end) for i in (1, 2)]
    # it answers again: the prober (1 s interval, 1 s timeout) brings it back
    lab.start_backend(0, "ok")
    took = lab.wait_state(0, "up", 5)
    assert took < 3.5
    res2 = lab.load(rate=RATE, calls=500)
    assert (res2.completed, res2.failed, res2.waited) == (500, 0, 0), res2
    back = lab.invites(0, res2.end)
    assert abs(back / 500 - 0.6) < 0.1, (back, inv_before)


@kamailio_test
def test_cooldown_trial_call_brings_a_target_back_without_probing(lab_factory):
    """cooldown = 2 s, probing off: after the cool-down ONE call (claimed
    through the shared table by whichever worker) is the target's trial; its
    200, seen in the reply route armed for that call, brings it back."""
    lab = lab_factory(backends=["silent", "ok", "ok"], cooldown=2, probe_mode="off")
    res = lab.load(rate=RATE, calls=300)
    assert (res.completed, res.failed) == (300, 0), res
    assert lab.target_states()[0] in ("out", "probing")
    lab.start_backend(0, "ok")
    res2 = lab.load(rate=RATE, calls=600)
    assert (res2.completed, res2.failed) == (600, 0), res2
    # at most one trial per cool-down may have gone unanswered (it was dead
    # until start_backend); then the first answered trial brought it back
    assert res2.waited <= 1
    assert lab.target_states()[0] == "up"
    assert lab.invites(0, res2.end) >= 0.6 * 600 * 0.5, lab.invites(0, res2.end)
    assert lab.state()["targets"][0]["successes"] >= 1


@kamailio_test
def test_drain_takes_no_new_calls_and_lets_calls_finish(lab_factory):
    lab = lab_factory()
    hold = 2000
    run = lab.load(rate=RATE, calls=1000, hold_ms=hold, background=True)
    lab._wait(lambda: lab.counts_at(0, 0) and lab.count_lines(0)[-1].get("1_INVITE_Recv", 0) > 150,
              10, "calls on backend 0")
    t_drain = time.time()
    lab.drain(0)                         # drain = true in the targets file
    lab.wait_state(0, "drained", 3)
    res = run.result()
    assert (res.completed, res.failed) == (1000, 0), res
    final = lab.counts(0, res.end)
    # the timer sees the file within 250 ms, every worker at its next INVITE:
    # no INVITE reaches the drained target 1 s after the change
    at = lab.counts_at(0, t_drain + 1.0)
    assert at, "no counts line after the drain"
    assert final["1_INVITE_Recv"] == at["1_INVITE_Recv"], (at, final)
    assert final["1_INVITE_Recv"] > 150
    # its calls in progress finished: every call it took got its BYE
    assert final["4_BYE_Recv"] == final["1_INVITE_Recv"]
    inv = [lab.invites(i, res.end) for i in range(3)]
    assert sum(inv) == 1000


@kamailio_test
def test_call_rate_limit_holds_over_all_workers(lab_factory):
    """cps = 20 on the 60 % target at 100 calls/s: the workers together hand it
    at most 20 a second (burst 1: at most cps + burst - 1 in any one-second
    window); the rest go to the next target of each call's order."""
    lab = lab_factory(cps=[20])
    res = lab.load(rate=RATE, calls=800)
    assert (res.completed, res.failed) == (800, 0), res
    rows = lab.count_lines(0)
    inv = [lab.invites(i, res.end) for i in range(3)]
    assert sum(inv) == 800
    # over the run: no more than the bucket allows (+1 for the full bucket at the start)
    assert inv[0] <= 20 * res.elapsed + 1, (inv, res.elapsed)
    # it is saturated (60 % of 100/s > 20/s), so it gets close to its limit
    assert inv[0] >= 0.7 * 20 * (res.elapsed - 2), (inv, res.elapsed)
    # per counts line (sipp writes one about every second): the INVITEs that
    # arrived between two lines stay within the rate over that span, + 1
    for a, b in zip(rows, rows[1:]):
        d = b.get("1_INVITE_Recv", 0) - a.get("1_INVITE_Recv", 0)
        assert d <= 20 * (b["_time"] - a["_time"]) + 1.5, (a, b)


@kamailio_test
def test_fallback_when_every_target_fails(lab_factory):
    """Every target answers 503: each call fails over through all three, then
    the fallback URI of the targets file takes it; no call is lost."""
    lab = lab_factory(backends=["503", "503", "503", "ok"], fallback=3)
    res = lab.load(rate=RATE, calls=300)
    assert (res.completed, res.failed) == (300, 0), res
    assert lab.invites(3, res.end) == 300
    assert lab.target_states() == ["out", "out", "out"]
    # each 503 target saw at most the calls in flight before its first 503
    assert sum(lab.invites(i, res.end) for i in range(3)) <= 15


@kamailio_test
def test_dispatcher_baseline_runs(lab_factory):
    """The same cfg with -A WITH_DISPATCHER (the bench's baseline) routes 60/20/20."""
    lab = lab_factory(mode="dispatcher")
    res = lab.load(rate=RATE, calls=500)
    assert (res.completed, res.failed) == (500, 0), res
    inv = [lab.invites(i, res.end) for i in range(3)]
    assert sum(inv) == 500 and abs(inv[0] / 500 - 0.6) < 0.08, inv


@kamailio_test
def test_bad_targets_file_stops_kamailio_with_one_line(tmp_path):
    _need_kamailio()
    from kamailio_harness import KEMI, kamailio_env, sipedge_path
    bad = tmp_path / "t.toml"
    bad.write_text('[[target]]\nuri = "sip:192.0.2.1:99999"\n')
    from netns import Netns
    with Netns("kbad") as ns:
        r = ns.exec("kamailio", "-DD", "-E", "-f", os.path.join(CONTRIB, "kamailio.cfg"),
                    "-Y", str(tmp_path), "-P", str(tmp_path / "pid"),
                    "-A", f'TARGETS_FILE="{bad}"', "-A", f'KEMI_FILE="{KEMI}"',
                    "-A", f'SIPEDGE_PATH="{sipedge_path()}"',
                    "-A", f'CTL_SOCKET="unix:{tmp_path}/ctl"', check=False, timeout=60,
                    env=kamailio_env())
    assert r.returncode != 0
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if "sipedge: " in ln]
    assert len(lines) == 1 and f"{bad}: [[target]] #1" in lines[0] and "99999" in lines[0], lines
