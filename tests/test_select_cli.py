"""`sipedge select`: shares printed, JSON, failures, exit codes."""
import json
import subprocess
import sys

import pytest

from sipedge.cli import main

T = ["--target", "sip:sbc1.example.com,10,60", "--target", "sip:sbc2.example.com,10,20",
     "--target", "sip:sbc3.example.com;edge=dublin,10,20", "--target", "sip:sbc4.example.com,20,10"]


def run_json(capsys, *extra):
    assert main(["select", *T, "--seed", "7", "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_shares(capsys):
    out = run_json(capsys, "--picks", "20000")
    assert out["picks"] == 20000 and out["seed"] == 7 and out["dr_share"] == 0
    rows = {r["uri"]: r for r in out["targets"]}
    assert rows["sip:sbc1.example.com"]["expected"] == pytest.approx(61 / 101)
    assert rows["sip:sbc4.example.com"]["observed"] == 0
    for r in rows.values():
        assert abs(r["observed"] - r["expected"]) < 0.02
    assert sum(r["observed"] for r in rows.values()) == pytest.approx(1)
    # same seed, same output
    assert run_json(capsys, "--picks", "20000") == out


def test_fail_shares_weight_in_same_priority(capsys):
    out = run_json(capsys, "--fail", "sip:sbc1.example.com")
    rows = {r["uri"]: r for r in out["targets"]}
    assert rows["sip:sbc1.example.com"]["state"] == "out"
    assert rows["sip:sbc1.example.com"]["observed"] == 0
    assert rows["sip:sbc2.example.com"]["expected"] == pytest.approx(21 / 41)
    assert rows["sip:sbc3.example.com;edge=dublin"]["observed"] > 0.4


def test_all_failed_with_and_without_dr(capsys):
    args = ["select", "--target", "sip:a.example.com,1,1", "--fail", "sip:a.example.com"]
    assert main(args + ["--dr-url", "https://dr.example.com/v", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dr_share"] == 1.0
    assert main(args) == 6
    assert "no disaster-recovery URL" in capsys.readouterr().err


def test_table_output(capsys):
    assert main(["select", *T, "--seed", "1", "--picks", "1000"]) == 0
    out = capsys.readouterr().out
    assert "expected" in out and "observed" in out and "1000 picks, seed 1" in out
    assert "sip:sbc3.example.com;edge=dublin" in out


@pytest.mark.parametrize("args,code,words", [
    (["--target", "sip:a.example.com,1"], 3, "URI,PRIORITY,WEIGHT"),
    (["--target", "sip:a.example.com,1,70000"], 3, "0-65535"),
    (["--target", "sip:a.example.com;edge=mars,1,1"], 3, "unknown Twilio edge"),
    (["--target", "sip:a.example.com,1,1", "--fail", "sip:b.example.com"], 3, "not in this target set"),
    (["--target", "sip:a.example.com,1,1", "--picks", "0"], 3, "--picks"),
    (["--target", "sip:a.example.com,1,1", "--seed", "-1"], 3, "seed"),
])
def test_errors(capsys, args, code, words):
    assert main(["select", *args]) == code
    err = capsys.readouterr().err
    assert err.startswith("sipedge: error:") and words in err


def test_subprocess_exit_code():
    r = subprocess.run([sys.executable, "-m", "sipedge", "select", "--target", "sip:a.example.com,1,1",
                        "--fail", "sip:a.example.com"], capture_output=True, text=True)
    assert r.returncode == 6 and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "sipedge", "select", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--target" in r.stdout and "--picks" in r.stdout
