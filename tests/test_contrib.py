"""contrib/ (issue 9, finding 8): the systemd unit and timer are valid and run on a real
host layout, and the README does not install the lab allowlist as the live one."""
from __future__ import annotations

import os
import re
import shlex
import subprocess

import pytest

from sipedge.allowlist import Allowlist

from conftest import require_tool

#: contrib/ does not depend on the implementation: run once, in the native pass
pytestmark = pytest.mark.once

CONTRIB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "contrib")
SERVICE = os.path.join(CONTRIB, "sipedge-firewall.service")
TIMER = os.path.join(CONTRIB, "sipedge-firewall.timer")


def _unit(path: str) -> dict:
    """{key: [values]} of a unit file, continuation lines joined."""
    text = open(path).read().replace("\\\n", " ")
    out: dict = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        k, _, v = line.partition("=")
        out.setdefault(k.strip(), []).append(v.strip())
    return out


def test_systemd_analyze_verify_accepts_unit_and_timer():
    require_tool("systemd-analyze")
    # --man=no: Documentation=man:nft(8) would otherwise be looked up with man(1),
    # which a fresh Debian 12 without man-db lacks ("Command 'man nft(8)' failed")
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", SERVICE, TIMER], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr


def test_read_write_paths_tolerate_missing_directories():
    paths = " ".join(_unit(SERVICE)["ReadWritePaths"]).split()
    assert paths and all(p.startswith("-/") for p in paths), paths  # "-": a missing one is skipped
    assert "-/var/lib/prometheus/node-exporter" in paths


def test_metrics_go_to_debians_node_exporter_textfile_directory():
    u = _unit(SERVICE)
    env = " ".join(u["Environment"])
    assert "--metrics-file /var/lib/prometheus/node-exporter/sipedge_firewall.prom" in env
    assert "/var/lib/node_exporter" not in open(SERVICE).read()
    default = open(os.path.join(CONTRIB, "sipedge-firewall.default")).read()
    assert 'SIPEDGE_FIREWALL_ARGS="--metrics-file /var/lib/prometheus/node-exporter/' in default


def test_execstart_finds_a_venv_a_pipx_global_or_a_package_install():
    u = _unit(SERVICE)
    exec_start = u["ExecStart"][0]
    assert exec_start.startswith("/usr/bin/env sipedge firewall apply ")
    path = [e for e in u["Environment"] if e.startswith("PATH=")][0][5:].split(":")
    # a venv in /opt/sipedge/venv, pip / pipx --global in /usr/local/bin, a package in /usr/bin
    assert path[:3] == ["/opt/sipedge/venv/bin", "/usr/local/bin", "/usr/bin"]
    assert "EnvironmentFile" in u and u["EnvironmentFile"][0] == "-/etc/default/sipedge-firewall"


def test_execstart_resolves_through_the_units_path(tmp_path):
    """Run the ExecStart line as systemd would (its PATH, its environment), with a fake
    venv standing in for /opt/sipedge/venv: the venv's sipedge is the one that runs."""
    u = _unit(SERVICE)
    path = [e for e in u["Environment"] if e.startswith("PATH=")][0][5:]
    venv = tmp_path / "opt" / "sipedge" / "venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "sipedge").write_text("#!/bin/sh\necho \"venv sipedge $*\"\n")
    (venv / "sipedge").chmod(0o755)
    args = shlex.split([e for e in u["Environment"] if e.startswith('"SIPEDGE_FIREWALL_ARGS=')][0]
                       .strip('"').partition("=")[2])
    argv = shlex.split(u["ExecStart"][0].replace("$SIPEDGE_FIREWALL_ARGS", ""))
    env = {"PATH": path.replace("/opt/sipedge/venv/bin", str(venv))}
    r = subprocess.run(argv + args, capture_output=True, text=True, env=env, timeout=30)
    assert r.stdout.startswith("venv sipedge firewall apply --mode enforce --metrics-file "), r.stderr


def test_readme_never_installs_the_lab_allowlist_as_the_live_one():
    readme = open(os.path.join(CONTRIB, "README.md")).read()
    for block in re.findall(r"```sh\n(.*?)```", readme, re.S):
        for line in block.splitlines():
            assert not ("allowlist-replace.toml" in line and "/etc/" in line), line
    # the lab allowlist holds documentation addresses only: as a live one it drops all Twilio SIP
    lab = Allowlist.load(os.path.join(CONTRIB, "allowlist-replace.toml"))
    assert "54.172.60.1" not in lab
    assert "54.172.60.1" in Allowlist.load(os.path.join(CONTRIB, "allowlist-extend-twilio.toml"))


def test_timer_starts_the_service_periodically():
    t = _unit(TIMER)
    assert t["OnUnitActiveSec"] and t["OnBootSec"] and t["WantedBy"] == ["timers.target"]
    assert _unit(SERVICE)["Type"] == ["oneshot"]
