"""Run-time plumbing of ``sipedge firewall``: the lock, the state snapshot, metrics.

* The lock (``fcntl.flock`` on a file, ``/run/sipedge/firewall.lock`` by
  default) makes two runs on one host wait for each other instead of
  interleaving.
* The snapshot (msgpack, ``/var/lib/sipedge/firewall-<netns>-<table>.msgpack``)
  records what the last apply programmed and the ruleset generation the
  kernel had right after it, for drift reports and for a fast sync: when the
  kernel's generation still equals the recorded one, nothing changed the
  ruleset since, so the snapshot *is* the live state.
* The metrics file is a Prometheus textfile-collector file, written atomically.
"""
from __future__ import annotations

import errno
import fcntl
import os
import tempfile
import time
from typing import Optional

from ..errors import FirewallError, LockError, SnapshotError

SNAPSHOT_VERSION = 1
DEFAULT_LOCK = "/run/sipedge/firewall.lock"
DEFAULT_STATE_DIR = "/var/lib/sipedge"


class Lock:
    """An exclusive flock on *path*, waited for at most *timeout* seconds."""

    def __init__(self, path: str = DEFAULT_LOCK, timeout: float = 30.0) -> None:
        self.path, self.timeout, self.fd = path, timeout, -1

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


def snapshot_path(state_dir: str, netns: Optional[str], table: str, backend: str) -> str:
    return os.path.join(state_dir, f"firewall-{netns or 'host'}-{backend}-{table}.msgpack")


def save_snapshot(path: str, *, netns_id: str, table: str, backend: str, structure: str,
                  genid: int, sets: dict, mode: str, prefixes: int, changes: dict) -> None:
    """Write the snapshot atomically (temporary file + rename).

    *sets* maps a set name to ``(family, packed)`` with *packed* from
    :func:`sipedge.firewall.desired.pack_intervals`.
    """
    import msgpack

    doc = {"version": SNAPSHOT_VERSION, "time": time.time(), "netns": netns_id, "table": table,
           "backend": backend, "structure": structure, "genid": genid, "mode": mode,
           "prefixes": prefixes, "changes": changes,
           "sets": {name: [fam, packed] for name, (fam, packed) in sets.items()}}
    _atomic_write(path, msgpack.packb(doc, use_bin_type=True))


def load_snapshot(path: str) -> Optional[dict]:
    """The snapshot at *path*, or None when there is none."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise SnapshotError(f"{path}: cannot read snapshot: {e.strerror}") from None
    import msgpack

    try:
        doc = msgpack.unpackb(raw, raw=False)
        if doc.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"version {doc.get('version')!r}, expected {SNAPSHOT_VERSION}")
        doc["sets"] = {name: (int(fam), bytes(data)) for name, (fam, data) in doc["sets"].items()}
    except Exception as e:  # noqa: BLE001 - any corruption is reported the same way
        raise SnapshotError(f"{path}: corrupt or foreign snapshot ({e}); delete it, the next "
                            "apply rewrites it") from None
    return doc


def remove_snapshot(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _atomic_write(path: str, data: bytes) -> None:
    d = os.path.dirname(path) or "."
    try:
        os.makedirs(d, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".sipedge-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:
        raise FirewallError(f"cannot write {path}: {e.strerror}; choose another path "
                            "(--state-dir / --metrics-file)") from None


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
    _atomic_write(path, ("\n".join(lines) + "\n").encode())
