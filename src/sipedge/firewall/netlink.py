"""A raw NETLINK_NETFILTER socket: one-sendmsg batches and dumps.

The backends build the messages (and pyroute2 decodes the answers they read
in detail); this module only moves bytes, so a whole batch goes to the kernel in one ``sendmsg`` and every
answer (ack or error, with the kernel's extended-ack text) is collected.
"""
from __future__ import annotations

import errno
import os
import socket
import struct
from typing import Callable, Iterator, List, Optional, Tuple

from ..errors import FirewallError, KernelSupportError, NamespaceError, NetlinkError, PermissionDenied
from . import nsutil

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_EXT_ACK = 11
NETLINK_CAP_ACK = 10
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33
SO_NETNS_COOKIE = 71

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_APPEND = 0x800
NLM_F_ECHO = 0x8
NLMSGERR_ATTR_MSG = 1
NLM_F_ACK_TLVS = 0x200
NLM_F_CAPPED = 0x100

_HDR = struct.Struct("=IHHII")

#: a test hook: called with the list of batch messages before sending
BATCH_HOOK: Optional[Callable[[list], None]] = None


def has_net_admin() -> bool:
    """True when this process may change the firewall (root or CAP_NET_ADMIN)."""
    if os.geteuid() == 0:
        return True
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) & (1 << 12))
    except OSError:
        pass
    return False


def require_net_admin(what: str) -> None:
    if not has_net_admin():
        raise PermissionDenied(f"{what} needs root or CAP_NET_ADMIN: run with sudo, or give the "
                               "service AmbientCapabilities=CAP_NET_ADMIN")


class NfSocket:
    """One NETLINK_NETFILTER socket, opened in namespace *netns* (None: ours)."""

    _factory = staticmethod(lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW,
                                                  NETLINK_NETFILTER))

    def __init__(self, netns: Optional[str] = None, bufsize: int = 8 << 20) -> None:
        with nsutil.entered(netns):
            try:
                self.sock = self._factory()
            except OSError as e:
                if e.errno in (errno.EPROTONOSUPPORT, errno.EAFNOSUPPORT):
                    raise KernelSupportError(
                        "the kernel has no nfnetlink/nf_tables (CONFIG_NF_TABLES): load the "
                        "nf_tables module or use --backend ipset") from None
                raise FirewallError(f"cannot open a netfilter netlink socket: {e.strerror}") from None
        self.netns = netns
        s = self.sock
        for opt, val in ((NETLINK_EXT_ACK, 1), (NETLINK_CAP_ACK, 1)):
            try:
                s.setsockopt(SOL_NETLINK, opt, val)
            except OSError:
                pass
        for force, plain in ((SO_SNDBUFFORCE, socket.SO_SNDBUF), (SO_RCVBUFFORCE, socket.SO_RCVBUF)):
            try:
                s.setsockopt(socket.SOL_SOCKET, force, bufsize)
            except OSError:
                s.setsockopt(socket.SOL_SOCKET, plain, bufsize)
        s.bind((0, 0))
        self.pid = s.getsockname()[0]
        self.seq = int.from_bytes(os.urandom(2), "little") << 8

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "NfSocket":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def next_seq(self) -> int:
        self.seq = (self.seq + 1) & 0x7FFFFFFF
        return self.seq

    # -- replies ------------------------------------------------------------------
    def _recv(self, flags: int = 0) -> bytes:
        try:
            return self.sock.recv(1 << 20, flags)
        except BlockingIOError:
            return b""
        except OSError as e:
            if e.errno == errno.ENOBUFS:
                raise FirewallError("netlink receive buffer overflowed while reading the "
                                    "kernel's answer; run again") from None
            raise

    @staticmethod
    def _iter(buf: bytes) -> Iterator[Tuple[int, int, int, bytes]]:
        off, n = 0, len(buf)
        while off + 16 <= n:
            length, typ, flags, seq, _pid = _HDR.unpack_from(buf, off)
            if length < 16:
                break
            yield typ, flags, seq, buf[off:off + length]
            off += (length + 3) & ~3

    @staticmethod
    def _error(msg: bytes) -> Tuple[int, str]:
        (code,) = struct.unpack_from("=i", msg, 16)
        _len, _typ, flags, _s, _p = _HDR.unpack_from(msg, 0)
        ext = ""
        if flags & NLM_F_ACK_TLVS:
            off = 20 + 16 if flags & NLM_F_CAPPED else 20 + struct.unpack_from("=I", msg, 20)[0]
            off = (off + 3) & ~3
            while off + 4 <= len(msg):
                alen, atyp = struct.unpack_from("=HH", msg, off)
                if alen < 4:
                    break
                if atyp & 0x3FFF == NLMSGERR_ATTR_MSG:
                    ext = msg[off + 4:off + alen].rstrip(b"\0").decode("utf-8", "replace")
                off += (alen + 3) & ~3
        return -code, ext

    # -- requests -----------------------------------------------------------------
    def send_batch(self, messages: List[bytes], what: Callable[[int], str]) -> List[bytes]:
        """Send *messages* (already framed, begin..end included) in one sendmsg.

        Raises NetlinkError naming the first message the kernel rejected; the
        kernel then applied none of the batch. Returns the other messages the
        kernel answered with (with NLM_F_ECHO on the batch begin: the NEWGEN
        notice carrying the generation id of this very commit).
        """
        if BATCH_HOOK is not None:
            BATCH_HOOK(messages)
        seqs = {}
        for i, m in enumerate(messages):
            seqs[_HDR.unpack_from(m, 0)[3]] = i
        data = b"".join(messages)
        try:
            self.sock.sendmsg([data], [], 0, (0, 0))
        except OSError as e:
            if e.errno == errno.EPERM:
                raise PermissionDenied("the kernel refused the change (EPERM): run as root "
                                       "or with CAP_NET_ADMIN") from None
            if e.errno == errno.EMSGSIZE:
                raise FirewallError(f"batch of {len(data)} bytes is too large for one netlink "
                                    "message") from None
            raise FirewallError(f"sending the batch failed: {e.strerror}") from None
        # nfnetlink handles a batch inside sendmsg: every answer is queued now
        first: Optional[Tuple[int, int, str]] = None
        other: List[bytes] = []
        while True:
            buf = self._recv(socket.MSG_DONTWAIT)
            if not buf:
                break
            for typ, _f, seq, msg in self._iter(buf):
                if typ == NLMSG_ERROR:
                    code, ext = self._error(msg)
                    if code and (first is None or seqs.get(seq, 1 << 30) < first[0]):
                        first = (seqs.get(seq, -1), code, ext)
                else:
                    other.append(msg)
        if first is not None:
            idx, code, ext = first
            if code == errno.EPERM:
                raise PermissionDenied("the kernel refused the change (EPERM): run as root "
                                       "or with CAP_NET_ADMIN")
            if code == errno.EOPNOTSUPP and idx <= 1:
                raise KernelSupportError("the kernel does not support nf_tables "
                                         "(CONFIG_NF_TABLES): use --backend ipset")
            raise NetlinkError(code, what(idx), ext)
        return other

    def netns_cookie(self) -> Optional[int]:
        """SO_NETNS_COOKIE of the socket's namespace: unique per namespace for the
        whole boot, never reused (Linux >= 5.14); None when the kernel lacks it."""
        try:
            raw = self.sock.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8)
        except OSError:
            return None
        return struct.unpack("=Q", raw)[0]

    def request(self, msg: bytes, what: str) -> List[bytes]:
        """Send one request (get or dump) and return the answer messages."""
        seq = _HDR.unpack_from(msg, 0)[3]
        try:
            self.sock.send(msg)
        except OSError as e:
            raise FirewallError(f"netlink request failed: {e.strerror}") from None
        out: List[bytes] = []
        while True:
            buf = self._recv()
            done = False
            for typ, flags, mseq, m in self._iter(buf):
                if mseq != seq:
                    continue
                if typ == NLMSG_DONE:
                    done = True
                elif typ == NLMSG_ERROR:
                    code, ext = self._error(m)
                    if code == 0:
                        done = True
                        continue
                    if code == errno.EPERM:
                        raise PermissionDenied(f"{what}: the kernel refused (EPERM): run as root "
                                               "or with CAP_NET_ADMIN")
                    if code == errno.EOPNOTSUPP:
                        raise KernelSupportError("the kernel does not support nf_tables "
                                                 "(CONFIG_NF_TABLES): use --backend ipset")
                    raise NetlinkError(code, what, ext)
                else:
                    out.append(m)
                    if not flags & NLM_F_MULTI:
                        done = True
            if done:
                return out


__all__ = ["NfSocket", "NetlinkError", "require_net_admin", "has_net_admin", "NamespaceError"]
