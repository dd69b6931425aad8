"""Open sockets inside a named network namespace (``ip netns`` names).

A socket stays bound to the namespace it was created in, so sipedge enters
the namespace (``setns(2)`` on the calling thread), creates the socket and
returns to the original namespace at once. Only the calling thread switches.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
from typing import Iterator, Optional

from ..errors import NamespaceError, PermissionDenied

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        if e == errno.EPERM:
            raise PermissionDenied("cannot enter the network namespace: run as root "
                                   "(or with CAP_SYS_ADMIN)")
        raise NamespaceError(f"setns failed: {os.strerror(e)}")


def netns_path(name: str) -> str:
    if not name or "/" in name or name in (".", ".."):
        raise NamespaceError(f"bad network namespace name {name!r}: give a name from `ip netns list`")
    return os.path.join(NETNS_RUN_DIR, name)


def netns_id(name: Optional[str]) -> str:
    """A string naming the namespace instance (name + inode), for snapshots."""
    path = netns_path(name) if name else "/proc/self/ns/net"
    try:
        st = os.stat(path)
    except OSError:
        raise NamespaceError(f"network namespace {name!r} does not exist "
                             f"(no {path}); create it with `ip netns add {name}`") from None
    return f"{name or '-'}:{st.st_dev}:{st.st_ino}"


@contextlib.contextmanager
def entered(name: Optional[str]) -> Iterator[None]:
    """Run the block inside namespace *name* (None: stay where we are)."""
    if not name:
        yield
        return
    path = netns_path(name)
    try:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NamespaceError(f"network namespace {name!r} does not exist "
                             f"(no {path}); create it with `ip netns add {name}` "
                             "or drop --netns") from None
    except PermissionError:
        raise PermissionDenied(f"cannot open {path}: run as root") from None
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(target)
        os.close(own)
