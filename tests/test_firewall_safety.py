"""Issue 9 regressions: the firewall is safe on a real SBC host.

One test (or more) per finding: replies to the host's own UDP clients (1), the
fast path that must not lie (3), ownership and refusals (5), and the smaller
ones (7). All in namespaces these tests create, documentation addresses only.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from sipedge import errors
from sipedge.allowlist import Allowlist
from sipedge.firewall import ops, state
from sipedge.firewall.desired import desired_state

from conftest import require_root, require_tool
from netns import Netns, link
from test_firewall import AL_A, cli, nft_json

#: the firewall code is the same Python in both passes (its one twin, _setdiff, has its
#: own tests over both implementations): run once, in the native pass of make test
pytestmark = pytest.mark.once

HERE = os.path.dirname(os.path.abspath(__file__))

FAX = """
[sbc.roles]
fax = ["4000-4010/udp"]
[roles.fax]
ports = ["4000-4999/udp"]
[[ranges]]
role = "fax"
prefixes = ["198.51.100.200/29", "2001:db8:fa::/48"]
"""


@pytest.fixture
def ns():
    require_root()
    require_tool("nft")
    with Netns("fw") as n:
        yield n


@pytest.fixture
def files(tmp_path):
    a = tmp_path / "a.toml"
    a.write_text(AL_A)
    fax = tmp_path / "fax.toml"
    fax.write_text(AL_A + FAX)
    return {"a": str(a), "fax": str(fax), "dir": tmp_path}


def _opts(ns, tmp_path, **kw):
    return ops.Options(netns=ns.name, lock_file=str(tmp_path / "lock"), state_dir=str(tmp_path / "st"), **kw)


def _has_table(ns, table="sipedge") -> bool:
    return ns.exec("nft", "list", "table", "inet", table, check=False).returncode == 0


# ------------------------------------------------------------ finding 1: the host's own UDP
UDP_ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53))
print("ready", flush=True)
s.settimeout(20)
try:
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(data, peer)
except socket.timeout:
    pass
"""

UDP_CLIENT = """
import socket, sys
ok = 0
for i in range(10):
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)   # a new ephemeral port each query
    c.settimeout(0.5)
    c.sendto(b"q%d" % i, (sys.argv[1], 53))
    try:
        ok += c.recv(100) == b"q%d" % i
    except socket.timeout:
        pass
print(ok)
"""


def test_enforce_mode_keeps_replies_to_the_hosts_own_udp_clients(files, tmp_path):
    """Finding 1: A=SBC host, B=its DNS server; 0 of 10 replies arrived with the old chain."""
    require_root()
    require_tool("nft")
    with Netns("a") as a, Netns("b") as b:
        # B's address is in no allowlist set: its replies are not trusted traffic
        link(a, b, "203.0.113.1/24", "203.0.113.2/24")
        d = desired_state(Allowlist.load(files["a"]))
        r = ops.apply(d, _opts(a, tmp_path))
        assert r["action"] == "create"
        srv = b.popen(sys.executable, "-c", UDP_ECHO, "203.0.113.2", stdout=subprocess.PIPE, text=True)
        try:
            assert srv.stdout.readline().strip() == "ready"
            out = a.exec(sys.executable, "-c", UDP_CLIENT, "203.0.113.2", timeout=30).stdout
        finally:
            srv.kill()
            srv.wait()
        assert int(out) == 10
        rules = ops.status(d, _opts(a, tmp_path))["rules"]
        ct = [x for x in rules if x["rule"].startswith("ct state established,related")][0]
        assert ct["packets"] >= 10  # the replies went through the conntrack accept


# ------------------------------------------------------------ finding 3: the fast path
def test_a_recreated_namespace_never_gets_no_change(files, tmp_path):
    """Finding 3 (a): same name, often the same inode, a fresh ruleset whose generation id
    can equal the saved one; the old cache said "no change" with no sipedge table."""
    require_root()
    require_tool("nft")
    name = f"sxt-{os.getpid()}-recreate"
    d = desired_state(Allowlist.load(files["a"]))
    opts = ops.Options(netns=name, lock_file=str(tmp_path / "lock"), state_dir=str(tmp_path / "st"))
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        assert ops.apply(d, opts)["action"] == "create"
        assert ops.apply(d, opts)["action"] == "none"
        ino = os.stat(f"/run/netns/{name}").st_ino
        saved = state.load_applied(state.applied_path(opts.state_dir, name, d.table, "nft"))["genid"]
        reused = False
        for _ in range(50):  # the kernel frees the old namespace's inode number asynchronously
            subprocess.run(["ip", "netns", "del", name], check=True)
            time.sleep(0.1)
            subprocess.run(["ip", "netns", "add", name], check=True)
            if os.stat(f"/run/netns/{name}").st_ino == ino:
                reused = True
                break
        # bring the new namespace's generation to the saved one: name, inode and
        # generation now all match what the old cache was keyed on
        k = 0
        while _genid(name) < saved:
            subprocess.run(["ip", "netns", "exec", name, "nft", "add", "table", "inet", f"other{k}"],
                           check=True)
            k += 1
        assert _genid(name) == saved
        r = ops.apply(d, opts)
        assert r["action"] == "create", (r, "inode reused" if reused else "new inode")
        assert subprocess.run(["ip", "netns", "exec", name, "nft", "list", "table", "inet", "sipedge"],
                              capture_output=True).returncode == 0
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


def _genid(netns: str) -> int:
    from sipedge.firewall.backends.nft import NftBackend

    with NftBackend(netns) as be:
        return be.genid()


def test_a_concurrent_delete_is_never_counted_into_the_cache(ns, files, tmp_path):
    """Finding 3 (b): `nft delete table` in a loop during apply; the old code read the
    generation after its commit and so counted the delete in (13 of 15 tries)."""
    d = desired_state(Allowlist.load(files["a"]))
    opts = _opts(ns, tmp_path)
    stop = threading.Event()

    def deleter():
        while not stop.is_set():
            ns.exec("nft", "delete", "table", "inet", "sipedge", check=False)

    for _ in range(15):
        stop.clear()
        t = threading.Thread(target=deleter)
        t.start()
        try:
            for _ in range(3):
                try:
                    ops.apply(d, opts)
                except errors.NetlinkError:
                    pass  # the table vanished between our steps: the next apply repairs it
        finally:
            stop.set()
            t.join()
        missing = not _has_table(ns)
        r = ops.apply(d, opts)
        assert _has_table(ns), r
        if missing:
            assert r["action"] == "create", r
        assert ops.status(d, opts)["drift"] is False


def test_a_corrupt_applied_state_is_a_warning_and_a_full_read(ns, files, tmp_path):
    d = desired_state(Allowlist.load(files["a"]))
    opts = _opts(ns, tmp_path)
    ops.apply(d, opts)
    path = state.applied_path(opts.state_dir, ns.name, d.table, "nft")
    with open(path, "wb") as f:
        f.write(b"\x92\xc1 not msgpack")
    r = ops.apply(d, opts)
    assert r["action"] == "none" and r["fast"] is False
    assert len(r["warnings"]) == 1 and "corrupt" in r["warnings"][0]
    r = ops.apply(d, opts)
    assert r["fast"] is True and r["warnings"] == []  # rewritten by the full read
    # a forged cache that claims other set contents is not believed over the kernel's generation
    ns.exec("nft", "add", "element", "inet", "sipedge", "media_v4", "{ 203.0.113.0/24 }")
    r = ops.apply(d, opts)
    assert r["action"] == "sync" and r["fast"] is False and r["deleted"] == 1


# ------------------------------------------------------------ finding 5: ownership, refusals
ADMIN = """\
table inet filter {
    chain input {
        type filter hook input priority 0; policy drop;
        ct state established,related accept
        iif "lo" accept
        tcp dport 22 accept
    }
}
"""


def test_tables_sipedge_did_not_create_are_never_changed_or_removed(ns, files, tmp_path):
    p = tmp_path / "admin.nft"
    p.write_text(ADMIN)
    ns.exec("nft", "-f", str(p))
    before = nft_json(ns)
    common = ["--netns", ns.name, "--state-dir", str(tmp_path / "st")]
    lock = ["--lock-file", str(tmp_path / "l")]
    r = cli("firewall", "apply", "--allowlist", files["a"], "--table", "filter", *common, *lock)
    assert r.returncode == errors.EXIT_REFUSED == 9, r.stderr
    assert r.stderr.count("\n") == 1 and "not sipedge's" in r.stderr and "owner check" in r.stderr
    r = cli("firewall", "remove", "--table", "filter", *common, *lock)
    assert r.returncode == errors.EXIT_REFUSED and "another --table" in r.stderr
    assert nft_json(ns) == before  # policy drop, ssh accept: untouched
    # sipedge's own table carries the mark nft shows as a comment
    r = cli("firewall", "apply", "--allowlist", files["a"], *common, *lock)
    assert r.returncode == 0, r.stderr
    assert 'comment "managed by sipedge"' in ns.exec("nft", "list", "table", "inet", "sipedge").stdout
    r = cli("firewall", "remove", *common, *lock)
    assert r.returncode == 0 and not _has_table(ns)
    assert nft_json(ns) == before


def test_unsafe_configurations_are_refused_before_anything_changes(ns, files, tmp_path):
    common = ["--allowlist", files["a"], "--netns", ns.name, "--state-dir", str(tmp_path / "st"),
              "--lock-file", str(tmp_path / "l")]
    for extra, what in ((["--sip-ports", "22/tcp"], "SSH port 22"),
                        (["--sip-ports", "1-65535/tcp"], "ephemeral ports"),
                        (["--rtp-ports", "10000-60000/udp"], "ephemeral ports")):
        r = cli("firewall", "apply", *common, *extra)
        assert r.returncode == errors.EXIT_REFUSED and r.stderr.count("\n") == 1 and what in r.stderr, r.stderr
        assert "--force" in r.stderr
        assert nft_json(ns) == []
    world = files["dir"] / "world.toml"
    world.write_text(AL_A.replace('"2001:db8:1::/48"', '"::/0"'))
    r = cli("firewall", "apply", *common[2:], "--allowlist", str(world))
    assert r.returncode == errors.EXIT_INPUT and "every IPv6 address" in r.stderr
    assert nft_json(ns) == []
    # --force is the operator saying so
    r = cli("firewall", "apply", *common, "--sip-ports", "22/tcp", "--force")
    assert r.returncode == 0, r.stderr
    assert "tcp dport 22 counter packets 0 bytes 0 drop" in ns.exec("nft", "list", "ruleset").stdout


def test_ssh_to_the_sbc_still_connects_from_an_untrusted_host(files, tmp_path):
    """Finding 5: `tcp dport 22 drop` made an untrusted SSH connect time out."""
    require_root()
    require_tool("nft")
    with Netns("sbc") as sbc, Netns("adm") as adm:
        link(sbc, adm, "203.0.113.1/24", "203.0.113.9/24")
        ops.apply(desired_state(Allowlist.load(files["a"])), _opts(sbc, tmp_path))
        srv = sbc.popen(sys.executable, "-c", SSH_LIKE, "203.0.113.1", stdout=subprocess.PIPE, text=True)
        try:
            assert srv.stdout.readline().strip() == "ready"
            out = adm.exec(sys.executable, "-c", TCP_CLIENT, "203.0.113.1", "22", timeout=20).stdout
        finally:
            srv.kill()
            srv.wait()
        assert out.startswith("SSH-2.0-")


SSH_LIKE = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 22))
s.listen(8)
print("ready", flush=True)
s.settimeout(30)
try:
    while True:
        c, _ = s.accept()
        c.sendall(b"SSH-2.0-OpenSSH_9.2 sipedge-test\\r\\n")
        c.close()
except socket.timeout:
    pass
"""

TCP_CLIENT = """
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
print(c.recv(200).decode().strip())
"""


# ------------------------------------------------------------ finding 7: the smaller ones
def test_status_with_a_live_ipv6_set_the_allowlist_lacks(ns, files, tmp_path):
    opts = _opts(ns, tmp_path)
    ops.apply(desired_state(Allowlist.load(files["fax"])), opts)
    st = ops.status(desired_state(Allowlist.load(files["a"])), opts)  # crashed: AddressValueError
    assert st["drift"] is True
    assert st["sets"]["fax_v6"]["delete"] == ["2001:db8:fa::/48"]
    assert st["sets"]["fax_v4"]["delete"] == ["198.51.100.200/29"]
    r = cli("firewall", "status", "--allowlist", files["a"], "--netns", ns.name, "--state-dir",
            str(tmp_path / "st"), "--json")
    assert r.returncode == errors.EXIT_DRIFT and json.loads(r.stdout)["drift"] is True, r.stderr


def test_status_exit_code_survives_a_closed_pipe(ns, files, tmp_path):
    ops.apply(desired_state(Allowlist.load(files["fax"])), _opts(ns, tmp_path))
    rd, wr = os.pipe()
    os.close(rd)  # the reader (`| head -3`) is gone before sipedge writes
    try:
        p = subprocess.run([sys.executable, "-m", "sipedge", "firewall", "status", "--allowlist",
                            files["a"], "--netns", ns.name, "--state-dir", str(tmp_path / "st")],
                           stdout=wr, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(wr)
    assert p.returncode == errors.EXIT_DRIFT, p.stderr  # was 0
    assert p.stderr == ""


def test_apply_with_edges_warns_like_allowlist_edges(ns, tmp_path):
    contrib = os.path.join(os.path.dirname(HERE), "contrib", "allowlist-replace.toml")
    r = cli("firewall", "apply", "--allowlist", contrib, "--edges", "lab-east", "--netns", ns.name,
            "--state-dir", str(tmp_path / "st"), "--lock-file", str(tmp_path / "l"))
    assert r.returncode == 0, r.stderr
    assert "allow ALL edges" in r.stderr and r.stderr.startswith("sipedge: warning:")
    r = cli("firewall", "plan", "--edges", "atlantis", "--no-live")
    assert r.returncode == errors.EXIT_INPUT and "atlantis" in r.stderr


def test_remove_takes_only_what_it_uses(ns, files, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("this is not an allowlist")
    common = ["--netns", ns.name, "--state-dir", str(tmp_path / "st"), "--lock-file", str(tmp_path / "l")]
    assert cli("firewall", "apply", "--allowlist", files["a"], *common).returncode == 0
    help_text = cli("firewall", "remove", "--help").stdout
    for opt in ("--allowlist", "--mode", "--priority", "--edges", "--sip-ports"):
        assert opt not in help_text
    r = cli("firewall", "remove", *common)
    assert r.returncode == 0 and not _has_table(ns)


def test_metrics_file_is_0644_and_its_directory_is_never_created(ns, files, tmp_path):
    common = ["--allowlist", files["a"], "--netns", ns.name, "--state-dir", str(tmp_path / "st"),
              "--lock-file", str(tmp_path / "l")]
    m = tmp_path / "m.prom"
    r = cli("firewall", "apply", *common, "--metrics-file", str(m))
    assert r.returncode == 0, r.stderr
    assert os.stat(m).st_mode & 0o777 == 0o644
    missing = tmp_path / "nonexistent-dir" / "sub" / "x.prom"
    r = cli("firewall", "apply", *common, "--metrics-file", str(missing), "--mode", "monitor")
    assert not (tmp_path / "nonexistent-dir").exists()
    # the change was committed: not "exit 5 as if nothing changed"
    assert r.returncode == errors.EXIT_APPLIED_WITH_ERRORS == 10, r.stderr
    assert "applied (replace)" in r.stdout
    assert r.stderr.count("\n") == 1 and "WAS changed" in r.stderr and "nonexistent-dir" in r.stderr


def test_state_write_failure_after_a_commit_and_a_lock_error_are_told_apart(ns, files, tmp_path):
    common = ["--allowlist", files["a"], "--netns", ns.name, "--lock-file", str(tmp_path / "l")]
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    r = cli("firewall", "apply", *common, "--state-dir", str(blocker / "st"))
    assert r.returncode == errors.EXIT_APPLIED_WITH_ERRORS and "WAS changed" in r.stderr and "not-a-dir" in r.stderr, r.stderr
    assert _has_table(ns)
    # a held lock is reported as the lock error, not hidden by a metrics failure
    with state.Lock(str(tmp_path / "l")):
        r = cli("firewall", "apply", *common, "--state-dir", str(tmp_path / "st"), "--lock-timeout",
                "0.2", "--metrics-file", str(tmp_path / "missing" / "m.prom"))
    assert r.returncode == errors.EXIT_SYSTEM and "another sipedge firewall run holds" in r.stderr


def test_lock_timeout_must_be_a_finite_number():
    for bad in ("nan", "inf", "-1", "1e9"):
        r = cli("firewall", "apply", "--lock-timeout", bad)
        assert r.returncode == errors.EXIT_USAGE and "--lock-timeout" in r.stderr, (bad, r.stderr)
    with pytest.raises(errors.InputError, match="lock timeout"):
        state.Lock("/tmp/x", timeout=float("nan"))
