"""The package itself: the native core really loads, the twin is selectable,
errors form one hierarchy, the CLI answers --version/--help with exit codes."""
import ipaddress
import os
import subprocess
import sys

import pytest

import sipedge
from sipedge import _impl, errors
from sipedge.cli import main


def test_native_modules_loaded_in_normal_build():
    if _impl.NO_EXTENSIONS:
        assert set(sipedge.implementation().values()) == {"python"}
        return
    chosen = sipedge.implementation()
    assert chosen == {piece: "native" for piece in _impl.PIECES}, (
        "the native extension did not load: build it with `make build`"
    )
    for piece in _impl.PIECES:
        assert _impl.native(piece).__file__.endswith(".so")


def test_no_extensions_env_selects_python_twin():
    code = "import sipedge; print(sorted(set(sipedge.implementation().values())))"
    env = dict(os.environ, SIPEDGE_NO_EXTENSIONS="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "['python']"


@pytest.mark.parametrize("cls,builtin", [
    (errors.AllowlistError, ValueError),
    (errors.AddressError, ValueError),
    (errors.URIError, ValueError),
    (errors.SelectionError, LookupError),
    (errors.PermissionDenied, PermissionError),
    (errors.FirewallError, RuntimeError),
    (errors.ResolveError, LookupError),
    (errors.ProbeError, ValueError),
])
def test_error_hierarchy(cls, builtin):
    assert issubclass(cls, errors.SipedgeError)
    assert issubclass(cls, builtin)
    assert cls.exit_code != 0


def test_cli_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert sipedge.__version__ in capsys.readouterr().out


def test_cli_help_lists_exit_codes(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "exit codes:" in out
    for code in range(9):
        assert f"\n  {code}  " in out


def test_cli_error_is_one_line_and_nonzero(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[roles.signaling]\nports=['5060/udp']\n[[ranges]]\nrole='signaling'\nprefixes=['300.1.2.3/32']\n")
    rc = main(["allowlist", "--file", str(bad)])
    err = capsys.readouterr().err
    assert rc == errors.EXIT_INPUT
    assert err.count("\n") == 1 and "300.1.2.3" in err and "Traceback" not in err


def test_prefix_table_longest_match(impl):
    pt = impl("prefix").PrefixTable([
        (ipaddress.ip_network("198.51.100.0/24"), "wide"),
        (ipaddress.ip_network("198.51.100.128/25"), "narrow"),
        (ipaddress.ip_network("2001:db8::/32"), "v6"),
    ])
    assert pt.lookup("198.51.100.1") == "wide"
    assert pt.lookup("198.51.100.200") == "narrow"
    assert pt.lookup("198.51.101.0") is None
    assert pt.lookup("2001:db8:ffff::1") == "v6"
    assert pt.lookup(bytes([198, 51, 100, 130])) == "narrow"
    assert "203.0.113.1" not in pt
    with pytest.raises(errors.AddressError):
        pt.lookup("198.51.100.01")  # leading zero: ipaddress refuses it too
    with pytest.raises(errors.AddressError):
        pt.lookup("not an address")
