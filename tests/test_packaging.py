"""Packaging, proved locally (no container engine runs here):

- the sdist holds everything a build needs and builds a wheel from scratch;
- the wheel holds the compiled modules (native run) or none (pure run), the
  type information and the dataset, and auditwheel accepts it;
- the wheel installed into a fresh venv runs ``sipedge firewall plan``;
- cibuildwheel lists exactly the wheels the release workflow must produce;
- csrc/ compiles warning-free for aarch64 with the flags setup.py uses;
- the GitHub workflows validate against their schema.
"""
from __future__ import annotations

import ast
import glob
import os
import subprocess
import sys
import tarfile
import zipfile

import pytest

from conftest import ROOT, require_tool
from sipedge import _impl

pytestmark = [pytest.mark.packaging, pytest.mark.slow]

NATIVE = not _impl.NO_EXTENSIONS


def native_run(fn):
    """Checks of the tree, not of an implementation: collected in the native run only."""
    return fn if NATIVE else None


def _run(cmd, **kw):
    res = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert res.returncode == 0, f"{cmd} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    """sdist from the tree, then a wheel built from the unpacked sdist alone."""
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--sdist", "--outdir", str(out), ROOT])
    (sdist,) = glob.glob(str(out / "sipedge-*.tar.gz"))
    unpack = tmp_path_factory.mktemp("unpacked")
    with tarfile.open(sdist) as tf:
        tf.extractall(unpack, filter="data")
    (srcdir,) = glob.glob(str(unpack / "sipedge-*"))
    wheels = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "build", "--wheel", "--outdir", str(wheels), srcdir])
    (wheel,) = glob.glob(str(wheels / "sipedge-*.whl"))
    return sdist, wheel


def test_sdist_has_sources_not_build_products(dists):
    sdist, _ = dists
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    for needed in ("setup.py", "pyproject.toml", "README.md", "csrc/prefix.c", "csrc/prefix.h",
                   "src/sipedge/_prefix.pyx", "src/sipedge/_prefix.pxd",
                   "src/sipedge/twilio/data/twilio.toml", "src/sipedge/py.typed", "tests/conftest.py"):
        assert needed in names, f"{needed} missing from the sdist"
    assert not [n for n in names if n.endswith((".so", ".o"))]
    assert not [n for n in names if n.startswith("src/sipedge/_") and n.endswith(".c")], \
        "Cython-generated C must not be shipped"


def test_wheel_contents(dists):
    _, wheel = dists
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    for needed in ("sipedge/py.typed", "sipedge/_prefix.pyi", "sipedge/twilio/data/twilio.toml",
                   "sipedge/_py/prefix.py", "sipedge/cli.py"):
        assert needed in names
    sos = sorted(n for n in names if n.endswith(".so"))
    if NATIVE:
        for piece in _impl.PIECES:
            assert any(n.startswith(f"sipedge/_{piece}.") for n in sos), f"_{piece} not compiled"
        assert "-cp3" in os.path.basename(wheel)
    else:
        assert sos == [] and os.path.basename(wheel).endswith("-py3-none-any.whl")


@native_run  # a pure-Python wheel has nothing for auditwheel to check
def test_auditwheel_accepts_wheel(dists):
    require_tool("auditwheel")
    _, wheel = dists
    res = _run(["auditwheel", "show", wheel])
    text = " ".join((res.stdout + res.stderr).split())
    assert "manylinux_" in text, text


def test_installed_wheel_runs_plan(dists, tmp_path):
    _, wheel = dists
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # not src/
    _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], env=env)
    py = str(venv / "bin" / "python")
    _run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed", wheel], env=env)
    res = _run([str(venv / "bin" / "sipedge"), "firewall", "plan"], cwd=str(tmp_path), env=env)
    assert "table inet sipedge" in res.stdout and "54.172.60.0/30" in res.stdout
    impl = _run([py, "-c", "import sipedge; print(sorted(set(sipedge.implementation().values())))"],
                cwd=str(tmp_path), env=env).stdout.strip()
    assert impl == ("['native']" if NATIVE else "['python']")


@native_run
def test_cibuildwheel_build_identifiers():
    require_tool("cibuildwheel")
    res = _run(["cibuildwheel", "--print-build-identifiers", "--platform", "linux",
                "--archs", "x86_64,aarch64", ROOT])
    got = set(res.stdout.split())
    want = {f"cp3{minor}-{libc}_{arch}" for minor in range(10, 16)
            for libc in ("manylinux", "musllinux") for arch in ("x86_64", "aarch64")}
    assert got == want


def _strict_flags() -> list[str]:
    tree = ast.parse(open(os.path.join(ROOT, "setup.py")).read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "STRICT":
            return ast.literal_eval(node.value)
    raise AssertionError("STRICT flags not found in setup.py")


@native_run
def test_csrc_cross_compiles_for_aarch64(tmp_path):
    require_tool("aarch64-linux-gnu-gcc")
    for c in sorted(glob.glob(os.path.join(ROOT, "csrc", "*.c"))):
        _run(["aarch64-linux-gnu-gcc", "-O3", *_strict_flags(), "-Icsrc", "-c", c,
              "-o", str(tmp_path / (os.path.basename(c) + ".o"))], cwd=ROOT)


@native_run
def test_github_workflows_validate():
    require_tool("check-jsonschema")
    files = sorted(glob.glob(os.path.join(ROOT, ".github", "workflows", "*.yml")))
    assert {os.path.basename(f) for f in files} >= {"ci.yml", "wheels.yml"}
    _run(["check-jsonschema", "--builtin-schema", "vendor.github-workflows", *files])
