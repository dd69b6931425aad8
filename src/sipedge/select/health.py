"""The health table of a :class:`~sipedge.select.TargetSet`: private or shared.

One slot per target holds its health (out, drained, failure and success runs
and totals, cool-down start) and its call-rate limiter. The exact byte layout
and the concurrency scheme are defined in ``csrc/health.h``; the native core
(``sipedge._select``) and the pure-Python twin (``sipedge._py.select``) both
read and write these bytes, so a native and a twin process can share a table.

- :meth:`HealthTable.private` (the default): memory of this process only.
- :meth:`HealthTable.open`: a file (``/dev/shm/sipedge-NAME`` for a bare
  NAME, or any path) created on first use and mapped by every process that
  opens it. Any process's ``mark_failed``/``mark_ok``/``drain`` is seen by every
  other process's next ``pick``/``order``. A file made for another target list
  or other settings (thresholds, cool-down, rate limits) is refused with
  :class:`~sipedge.errors.HealthTableError`; so is a file of another layout.

Writers take a POSIX record lock on byte 0 of the file for the few
microseconds of an update (never while Python code runs in the native core);
readers never lock. A process killed at any moment (even SIGKILL inside an
update) leaves a table the others keep using: the published record is never
overwritten in place and the kernel drops a dead process's lock.
"""
from __future__ import annotations

import fcntl
import mmap
import os
import re
import struct
import time
from typing import Optional, Sequence, Union

from ..errors import HealthTableError

MAGIC = 0x48544C4145485853  # b"SXHEALTH" read as a little-endian u64
VERSION = 1
HEADER = 128
SLOT = 128
#: header: magic, version, header size, slot size, n, fingerprint, fail/ok thresholds,
#: cooldown, created
HDR = struct.Struct("<QIIIIQIIdd")
#: slot start: gen, rate, tau, reserved
SLOT_HEAD = struct.Struct("<QddQ")
#: one record: out, drained, fail_run, ok_run, out_since, fails, oks, tat
REC = struct.Struct("<IIIIdQQd")
REC_OFF = (32, 80)  # offsets of copy[0] and copy[1] inside a slot
SHM_DIR = "/dev/shm"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,100}\Z")


def table_path(name: Union[str, os.PathLike]) -> str:
    """The file of table *name*: a bare name (letters, digits, ``._-``) lives in
    ``/dev/shm`` as ``sipedge-NAME``; anything with a ``/`` is a path."""
    text = os.fspath(name)
    if "/" in text:
        return text
    if not _NAME.match(text):
        raise HealthTableError(f"health table name {text!r} is not a plain name; use letters, "
                               "digits, '.', '_' or '-', or give a path with a '/'")
    return os.path.join(SHM_DIR, f"sipedge-{text}")


def _init(buf, n: int, fingerprint: int, fail_threshold: int, ok_threshold: int,
          cooldown: float, limits: Sequence[tuple[float, float]]) -> None:
    """Write a fresh table into *buf*; the magic last (a half-made file has none)."""
    buf[:HEADER + n * SLOT] = bytes(HEADER + n * SLOT)
    for i, (rate, burst) in enumerate(limits):
        tau = (burst - 1) / rate if rate > 0 else 0.0
        SLOT_HEAD.pack_into(buf, HEADER + i * SLOT, 0, float(rate), float(tau), 0)
    HDR.pack_into(buf, 0, 0, VERSION, HEADER, SLOT, n, fingerprint, fail_threshold,
                  ok_threshold, float(cooldown), time.time())
    struct.pack_into("<Q", buf, 0, MAGIC)


class HealthTable:
    """The bytes of a health table (see the module docstring).

    ``buffer`` is a writable buffer (``bytearray`` or ``mmap``) of
    ``HEADER + n * SLOT`` bytes, ``fd`` the file to lock (-1: private).
    """

    def __init__(self, buffer, fd: int, path: Optional[str], n: int) -> None:
        self.buffer = buffer
        self.fd = fd
        self.path = path
        self.n = n
        (_m, _v, _h, _s, _n, self.fingerprint, self.fail_threshold, self.ok_threshold,
         self.cooldown, self.created) = HDR.unpack_from(buffer, 0)

    @property
    def shared(self) -> bool:
        return self.fd >= 0

    @classmethod
    def private(cls, n: int, *, fingerprint: int = 0, fail_threshold: int = 1,
                ok_threshold: int = 1, cooldown: float = 30.0,
                limits: Optional[Sequence[tuple[float, float]]] = None) -> "HealthTable":
        """A table in this process's memory."""
        buf = bytearray(HEADER + n * SLOT)
        _init(buf, n, fingerprint, fail_threshold, ok_threshold, cooldown,
              limits or [(0.0, 1.0)] * n)
        return cls(buf, -1, None, n)

    @classmethod
    def open(cls, name: Union[str, os.PathLike], n: int, *, fingerprint: int,
             fail_threshold: int = 1, ok_threshold: int = 1, cooldown: float = 30.0,
             limits: Optional[Sequence[tuple[float, float]]] = None,
             mode: int = 0o600) -> "HealthTable":
        """Open table *name* (see :func:`table_path`), creating it on first use
        with permissions *mode* (default 0600: the creating user only; use e.g.
        0o660 and a shared group when an operator's ``sipedge select --table``
        and the SBC's workers run as different users). *fingerprint* identifies
        the target list and settings; a file made with another one is refused."""
        path = table_path(name)
        size = HEADER + n * SLOT
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, mode)
        except OSError as e:
            raise HealthTableError(f"health table {path}: cannot open or create it "
                                   f"({e.strerror}); use a writable directory such as "
                                   f"{SHM_DIR} or /run/sipedge") from None
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX, 1, 0, os.SEEK_SET)
            try:
                have = os.fstat(fd).st_size
                head = os.pread(fd, 8, 0)
                fresh = have == 0 or head.count(0) == len(head)
                if fresh:
                    os.fchmod(fd, mode)  # exactly *mode*, whatever the umask
                    os.ftruncate(fd, size)
                elif have < HEADER:
                    raise HealthTableError(
                        f"health table {path} is not a sipedge health table ({have} bytes); "
                        "remove it or choose another table name")
                mm = mmap.mmap(fd, size if fresh else have)
                if fresh:
                    _init(mm, n, fingerprint, fail_threshold, ok_threshold, cooldown,
                          limits or [(0.0, 1.0)] * n)
                else:
                    _check(mm, path, n, fingerprint, have)
            finally:
                fcntl.lockf(fd, fcntl.LOCK_UN, 1, 0, os.SEEK_SET)
        except HealthTableError:
            os.close(fd)
            raise
        except OSError as e:
            os.close(fd)
            raise HealthTableError(f"health table {path}: {e.strerror}; check the file "
                                   "system and permissions, or choose another path") from None
        return cls(mm, fd, path, n)

    def close(self) -> None:
        """Unmap and close a shared table (the native core must be gone first)."""
        if self.fd >= 0:
            try:
                self.buffer.close()
            except BufferError:
                return  # still exported to a live core: the mapping stays
            os.close(self.fd)
            self.fd = -1


def _check(mm, path: str, n: int, fingerprint: int, have: int) -> None:
    magic, version, header, slot, tn, fp = HDR.unpack_from(mm, 0)[:6]
    fix = f"remove it (rm {path}) once no process uses it, or give this target set another table name"
    if magic != MAGIC or version != VERSION or header != HEADER or slot != SLOT:
        mm.close()
        raise HealthTableError(f"health table {path} has another layout (magic {magic:#x}, "
                               f"version {version}; this sipedge writes version {VERSION}); {fix}")
    if tn != n or fp != fingerprint or have != HEADER + n * SLOT:
        mm.close()
        raise HealthTableError(f"health table {path} was made for another target list or other "
                               f"settings ({tn} targets, fingerprint {fp:#018x}; this set: {n} "
                               f"targets, {fingerprint:#018x}); {fix}")
