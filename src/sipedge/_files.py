"""Reading and writing the files an operator names, without hanging, exhausting memory or
following a planted link.

* :func:`read_regular` opens without blocking (a FIFO with no writer would
  block ``open``), refuses anything that is not a regular file (FIFO,
  character or block device, directory, socket) and anything larger than a
  size limit, and reads at most the limit (a file that grows meanwhile is
  still refused, not read to the end).
* :func:`write_atomic` writes a temporary file in the target's directory with
  an unpredictable name, opened ``O_CREAT | O_EXCL | O_NOFOLLOW`` (a link or
  file planted at that name is never written through), fsyncs it and renames
  it over the target.
"""
from __future__ import annotations

import os
import secrets
import stat
from typing import Callable, Type

__all__ = ["read_regular", "write_atomic", "MAX_INPUT_BYTES"]

#: Largest allowlist TOML or compiled snapshot sipedge reads (64 MiB: a
#: 100,000-prefix allowlist is about 3 MB of TOML, its snapshot about 4 MB).
MAX_INPUT_BYTES = 64 << 20

_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory"),
          (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def read_regular(path: str, what: str, error: Type[Exception],
                 limit: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of regular file *path*; *error* (with the path, the problem and the fix)
    when it cannot be read, is not a regular file or is larger than *limit* bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as e:
        raise error(f"{path}: cannot read {what}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{path}: cannot read {what}: it is {_kind(st.st_mode)}; "
                        "give the path of a regular file")
        if st.st_size > limit:
            raise error(f"{path}: {what} is {st.st_size} bytes, more than the limit of {limit}; "
                        "give the right file (or split it)")
        chunks, total = [], 0
        while True:
            b = os.read(fd, min(1 << 20, limit + 1 - total))
            if not b:
                break
            chunks.append(b)
            total += len(b)
            if total > limit:
                raise error(f"{path}: {what} grew beyond the limit of {limit} bytes while "
                            "being read; give a file that is not being written to")
        return b"".join(chunks)
    except OSError as e:
        raise error(f"{path}: cannot read {what}: {e.strerror}") from None
    finally:
        os.close(fd)


def _temp_name(path: str) -> str:
    d, base = os.path.split(path)
    return os.path.join(d, f".{base}.{secrets.token_hex(8)}.tmp")


def write_atomic(path: str, data: bytes, mode: int = 0o644,
                 temp_name: Callable[[str], str] = _temp_name) -> None:
    """Replace *path* by a file holding *data* (temporary file + fsync + rename).

    Raises :class:`OSError`; the temporary file is removed on failure.
    """
    for _ in range(8):
        tmp = temp_name(path)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         mode)
        except FileExistsError:
            continue  # a name that is taken (or planted): draw another one
        break
    else:
        raise FileExistsError(17, "no free temporary file name", os.path.dirname(path) or ".")
    try:
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)  # durable before the rename makes it the file
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
