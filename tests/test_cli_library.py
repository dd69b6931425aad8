"""The CLI is thin: its exit-code table and option defaults are the library's."""
from __future__ import annotations

import inspect

import pytest

from sipedge import errors
from sipedge.cli import build_parser, main

pytestmark = pytest.mark.once  # no native piece involved


def test_help_lists_the_library_exit_codes(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    for code, text in errors.EXIT_CODES.items():
        assert f"  {code}  {text}" in out
    assert set(errors.EXIT_CODES) == {v for k, v in vars(errors).items() if k.startswith("EXIT_")
                                      and isinstance(v, int)}


def test_firewall_help_shows_the_library_defaults(capsys):
    from sipedge.firewall.desired import desired_state
    from sipedge.firewall.ops import Options

    def help_of(cmd: str) -> str:
        with pytest.raises(SystemExit):
            main(["firewall", cmd, "--help"])
        return " ".join(capsys.readouterr().out.split())

    params = inspect.signature(desired_state).parameters
    o = Options()
    # plan takes the desired-state options; apply also the lock and the applied state
    for cmd, shown_all in (("plan", (params["table"].default, params["priority"].default,
                                     params["mode"].default, o.backend)),
                           ("apply", (params["table"].default, o.backend, o.lock_file,
                                      o.lock_timeout, o.state_dir))):
        out = help_of(cmd)
        for shown in shown_all:
            assert f"(default: {shown})" in out or f"default: {shown})" in out, (cmd, shown)
        assert "{default}" not in out


def test_firewall_edges_go_through_allowlist_select(capsys):
    """--edges keeps the named edges' ranges and those of every edge; an unknown
    edge is the library's AllowlistError (exit 3, one line)."""
    assert main(["firewall", "plan", "--no-live", "--edges", "ashburn", "--json"]) == 0
    out = capsys.readouterr().out
    assert "54.172.60.0/30" in out and "54.244.51.0/30" not in out and "168.86.128.0/18" in out
    assert main(["firewall", "plan", "--no-live", "--edges", "atlantis"]) == errors.EXIT_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown edge 'atlantis'" in err
