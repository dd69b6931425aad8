"""`sipedge classify`: summary table, --json, --frames, errors."""
from __future__ import annotations

import json
import subprocess
import sys

from scapy.all import IP, UDP, Ether, Raw, raw

from classify_util import SIP_200, TEST_ALLOWLIST, pcap_bytes, rtp_payload

MAC = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def _capture(tmp_path):
    frames = [
        raw(Ether(**MAC) / IP(src="192.0.2.10", dst="203.0.113.1") / UDP(sport=5060, dport=5060)
            / Raw(SIP_200)),
        raw(Ether(**MAC) / IP(src="198.51.100.7", dst="203.0.113.1")
            / UDP(sport=20000, dport=30000) / Raw(rtp_payload())),
        raw(Ether(**MAC) / IP(src="203.0.113.9", dst="203.0.113.1") / UDP(sport=53, dport=40000)
            / Raw(b"\x80" * 30)),
    ]
    p = tmp_path / "c.pcap"
    p.write_bytes(pcap_bytes(frames))
    al = tmp_path / "al.toml"
    al.write_text(TEST_ALLOWLIST)
    return str(p), str(al)


def run(*args):
    return subprocess.run([sys.executable, "-m", "sipedge", "classify", *args],
                          capture_output=True, text=True, timeout=60)


def test_frames_lines(tmp_path):
    cap, al = _capture(tmp_path)
    r = run(cap, "--allowlist", al, "--frames", "--stateless")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["1\tsip\ttrusted\ttest-east", "2\trtp\ttrusted\t*",
                                     "3\tother\tuntrusted\t-"]


def test_summary_table(tmp_path):
    cap, al = _capture(tmp_path)
    r = run(cap, "--allowlist", al, "--stateless")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].endswith("3 frames, 2 trusted")
    row = {ln.split()[0]: ln.split()[1:] for ln in lines[2:8]}
    assert row["sip"] == ["1", "1", "0"] and row["other"] == ["1", "0", "1"]
    assert any(ln.split()[:3] == ["test-east", "1", "0"] for ln in lines)


def test_json(tmp_path):
    cap, al = _capture(tmp_path)
    r = run(cap, "--allowlist", al, "--json", "--frames", "--stateless")
    doc = json.loads(r.stdout)
    assert doc["frames"] == 3 and doc["trusted"] == 2
    assert doc["by_kind"]["rtp"] == 1
    assert {"kind": "sip", "trusted": True, "edge": "test-east", "frames": 1} in doc["counts"]
    assert doc["frame_list"][1] == {"frame": 2, "kind": "rtp", "trusted": True, "role": "media",
                                    "edge": "*", "fragment": None}


def test_default_allowlist_is_twilio(tmp_path):
    cap, _ = _capture(tmp_path)
    r = run(cap, "--frames")
    assert [ln.split("\t")[2] for ln in r.stdout.splitlines()] == ["untrusted"] * 3


def test_bad_capture_is_one_line_and_exit_3(tmp_path):
    p = tmp_path / "x.pcap"
    p.write_bytes(b"not a capture at all")
    r = run(str(p))
    assert r.returncode == 3
    assert r.stderr.count("\n") == 1 and "x.pcap: byte offset 0" in r.stderr
    assert "Traceback" not in r.stderr
    r = run(str(tmp_path / "missing.pcap"))
    assert r.returncode == 3 and "cannot open capture" in r.stderr


def test_progress_bar_draws_and_clears(capsys):
    from sipedge.cli import _ProgressBar

    bar = _ProgressBar("big.pcap")
    bar(50, 100)
    bar(100, 100)
    bar.close()
    err = capsys.readouterr().err
    assert "big.pcap: [###############" in err and " 50.0%" in err and "100.0%" in err
    assert err.endswith("\r")


def test_flow_mode_is_the_default(tmp_path):
    from classify_util import t38_call

    p = tmp_path / "fax.pcap"
    p.write_bytes(pcap_bytes(t38_call()))
    flow = json.loads(run(str(p), "--json").stdout)["by_kind"]
    per_frame = json.loads(run(str(p), "--json", "--stateless").stdout)["by_kind"]
    assert flow["udptl"] == 6 and flow["rtp"] == 10
    assert per_frame["udptl"] == 0 and per_frame["rtp"] == 16
    lines = run(str(p), "--frames").stdout.splitlines()
    assert [ln.split("\t")[1] for ln in lines[-6:]] == ["udptl"] * 6
