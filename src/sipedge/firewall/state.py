"""Run-time plumbing of ``sipedge firewall``: the lock, the applied state, metrics.

* The lock (``fcntl.flock`` on a file, ``/run/sipedge/firewall.lock`` by
  default) makes two runs on one host wait for each other instead of
  interleaving.
* The applied state (msgpack,
  ``/var/lib/sipedge/firewall-<netns>-<backend>-<table>.applied``) is a cache
  of what the last apply programmed. It is keyed by the boot
  (``/proc/sys/kernel/random/boot_id``) and the namespace's cookie (unique for
  the whole boot; the inode when the kernel has no cookie), and records the
  generation id of sipedge's own commit, taken from the kernel's answer to
  that commit. An apply trusts it only when the key matches, the kernel's
  generation still equals that id, and the table, chain and sets are there;
  otherwise (and when the file is corrupt: a warning) it reads the live table.
* The metrics file is a Prometheus textfile-collector file (mode 0644, so
  node_exporter's user can read it), written atomically into a directory that
  must exist.
"""
from __future__ import annotations

import errno
import fcntl
import os
import tempfile
import time
from typing import Optional

from ..errors import AppliedStateError, FirewallError, InputError, LockError

APPLIED_VERSION = 2
#: the longest --lock-timeout accepted (a day): a typo must not wait for ever
MAX_LOCK_TIMEOUT = 86400.0
DEFAULT_LOCK = "/run/sipedge/firewall.lock"
DEFAULT_STATE_DIR = "/var/lib/sipedge"


class Lock:
    """An exclusive flock on *path*, waited for at most *timeout* seconds."""

    def __init__(self, path: str = DEFAULT_LOCK, timeout: float = 30.0) -> None:
        self.path, self.timeout, self.fd = path, check_lock_timeout(timeout), -1

    def __enter__(self) -> "Lock":
        try:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise LockError(f"cannot open lock file {self.path}: {e.strerror}; "
                            "choose another with --lock-file") from None
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() >= deadline:
                os.close(self.fd)
                raise LockError(f"another sipedge firewall run holds {self.path} "
                                f"(waited {self.timeout:g} s); try again when it has finished")
            time.sleep(0.05)

    def __exit__(self, *exc) -> None:
        if self.fd >= 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1


def check_lock_timeout(value) -> float:
    """A finite number of seconds in 0..MAX_LOCK_TIMEOUT (``nan`` would wait for ever)."""
    try:
        t = float(value)
    except (TypeError, ValueError):
        t = float("nan")
    if not (0.0 <= t <= MAX_LOCK_TIMEOUT):  # also false for nan
        raise InputError(f"lock timeout {value!r}: give a number of seconds from 0 to "
                         f"{MAX_LOCK_TIMEOUT:g}")
    return t


def boot_id() -> str:
    """This boot's id (/proc/sys/kernel/random/boot_id): a new one after every reboot."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def applied_path(state_dir: str, netns: Optional[str], table: str, backend: str) -> str:
    return os.path.join(state_dir, f"firewall-{netns or 'host'}-{backend}-{table}.applied")


def save_applied(path: str, *, key: dict, genid: Optional[int], chain: Optional[str], sets: dict,
                 mode: str, prefixes: int, changes: dict) -> None:
    """Write the applied state atomically (temporary file + rename).

    *key* identifies what the cache is valid for (boot, namespace, table,
    backend, structure); *sets* maps a set name to ``(family, packed)`` with
    *packed* from :func:`sipedge.firewall.desired.pack_intervals`.
    """
    import msgpack

    doc = {"version": APPLIED_VERSION, "time": time.time(), "key": key, "genid": genid,
           "chain": chain, "mode": mode, "prefixes": prefixes, "changes": changes,
           "sets": {name: [fam, packed] for name, (fam, packed) in sets.items()}}
    _atomic_write(path, msgpack.packb(doc, use_bin_type=True), make_dirs=True)


def load_applied(path: str) -> Optional[dict]:
    """The applied state at *path*, or None when there is none; AppliedStateError
    (a firewall error: the file is sipedge's own, not the user's input) when unusable."""
    try:
        with open(path, "rb") as f:
            raw = f.read(64 << 20)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise AppliedStateError(f"{path}: cannot read the applied state: {e.strerror}") from None
    import msgpack

    try:
        doc = msgpack.unpackb(raw, raw=False)
        if not isinstance(doc, dict) or doc.get("version") != APPLIED_VERSION:
            raise ValueError(f"version {doc.get('version') if isinstance(doc, dict) else None!r}, "
                             f"expected {APPLIED_VERSION}")
        sets = {}
        for name, (fam, data) in doc["sets"].items():
            fam, data = int(fam), bytes(data)
            rec = 8 if fam == 4 else 32
            if fam not in (4, 6) or len(data) % rec:
                raise ValueError(f"set {name!r} has a bad family or length")
            sets[str(name)] = (fam, data)
        doc["sets"] = sets
        if not isinstance(doc.get("key"), dict):
            raise ValueError("no key")
        float(doc["time"])
    except Exception as e:  # noqa: BLE001 - any corruption is reported the same way
        raise AppliedStateError(f"{path}: corrupt or foreign applied-state file ({e})") from None
    return doc


def remove_applied(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _atomic_write(path: str, data: bytes, make_dirs: bool = False, mode: int = 0o600) -> None:
    """Write *data* to a new temporary file (O_EXCL, unpredictable name, so no
    symlink is followed) beside *path*, fsync, chmod *mode*, rename over *path*.
    The directory is created only when *make_dirs* (sipedge's own state dir)."""
    d = os.path.dirname(path) or "."
    tmp = None
    try:
        if make_dirs:
            os.makedirs(d, mode=0o755, exist_ok=True)
        elif not os.path.isdir(d):
            raise FirewallError(f"cannot write {path}: directory {d} does not exist; create it "
                                "or choose another path")
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".sipedge-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise FirewallError(f"cannot write {path}: {e.strerror}; choose another path "
                            "(--state-dir / --metrics-file)") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def write_metrics(path: str, *, table: str, netns: Optional[str], backend: str, ok: bool,
                  when: float, duration: float, prefixes: dict, added: int, deleted: int,
                  changed: bool) -> None:
    """Prometheus textfile-collector output of the last run."""
    lab = f'table="{table}",netns="{netns or ""}",backend="{backend}"'
    lines = [
        "# HELP sipedge_firewall_last_run_success 1 if the last sipedge firewall apply succeeded.",
        "# TYPE sipedge_firewall_last_run_success gauge",
        f"sipedge_firewall_last_run_success{{{lab}}} {1 if ok else 0}",
        "# HELP sipedge_firewall_last_sync_timestamp_seconds When the firewall was last synced.",
        "# TYPE sipedge_firewall_last_sync_timestamp_seconds gauge",
        f"sipedge_firewall_last_sync_timestamp_seconds{{{lab}}} {when:.3f}",
        "# HELP sipedge_firewall_last_sync_duration_seconds How long the last apply took.",
        "# TYPE sipedge_firewall_last_sync_duration_seconds gauge",
        f"sipedge_firewall_last_sync_duration_seconds{{{lab}}} {duration:.6f}",
        "# HELP sipedge_firewall_prefixes Prefixes in each sipedge set.",
        "# TYPE sipedge_firewall_prefixes gauge",
    ]
    for name, n in prefixes.items():
        lines.append(f'sipedge_firewall_prefixes{{{lab},set="{name}"}} {n}')
    lines += [
        "# HELP sipedge_firewall_last_changes Set intervals changed by the last apply.",
        "# TYPE sipedge_firewall_last_changes gauge",
        f'sipedge_firewall_last_changes{{{lab},op="add"}} {added}',
        f'sipedge_firewall_last_changes{{{lab},op="delete"}} {deleted}',
        "# HELP sipedge_firewall_last_changed 1 if the last apply changed the kernel state.",
        "# TYPE sipedge_firewall_last_changed gauge",
        f"sipedge_firewall_last_changed{{{lab}}} {1 if changed else 0}",
    ]
    _atomic_write(path, ("\n".join(lines) + "\n").encode(), mode=0o644)
