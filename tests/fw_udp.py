"""Bounded UDP sender/receiver for the firewall traffic tests (run inside a namespace).

  python3 fw_udp.py recv ADDR PORT MAX_SECONDS IDLE_SECONDS   -> prints the packet count
  python3 fw_udp.py send ADDR PORT COUNT PER_SECOND [SRC]      -> prints the packets sent
  python3 fw_udp.py stream ADDR PORT PER_SECOND MAX_SECONDS SRC -> sends until SIGTERM (or
                                                                   MAX_SECONDS), prints the count

Packets carry a 12-byte RTP header (version 2, payload type 0) and a sequence number.
"""
from __future__ import annotations

import socket
import struct
import sys
import time


def recv(addr: str, port: int, max_s: float, idle_s: float) -> int:
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((addr, port))
    print("ready", flush=True)
    seen = set()
    end = time.monotonic() + max_s
    last = None
    while time.monotonic() < end:
        s.settimeout(0.1)
        try:
            data = s.recv(2048)
        except socket.timeout:
            if last is not None and time.monotonic() - last > idle_s:
                break
            continue
        last = time.monotonic()
        if len(data) >= 16:
            seen.add(struct.unpack_from("!I", data, 12)[0])
    return len(seen)


def send(addr: str, port: int, count: int, rate: float, src: str = "") -> int:
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    if src:
        s.bind((src, 0))
    t0 = time.monotonic()
    for i in range(count):
        hdr = struct.pack("!BBHII", 0x80, 0, i & 0xFFFF, i * 160, 0x5EED)
        s.sendto(hdr + struct.pack("!I", i) + b"\0" * 160, (addr, port))
        delay = t0 + (i + 1) / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    return count


def stream(addr: str, port: int, rate: float, max_s: float, src: str) -> int:
    import signal

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind((src, 0))
    print("sending", flush=True)
    t0 = time.monotonic()
    i = 0
    while not stop and time.monotonic() - t0 < max_s:
        hdr = struct.pack("!BBHII", 0x80, 0, i & 0xFFFF, i * 160, 0x5EED)
        s.sendto(hdr + struct.pack("!I", i) + b"\0" * 160, (addr, port))
        i += 1
        delay = t0 + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    return i


if __name__ == "__main__":
    cmd, a = sys.argv[1], sys.argv[2:]
    if cmd == "stream":
        print(stream(a[0], int(a[1]), float(a[2]), float(a[3]), a[4]), flush=True)
    elif cmd == "recv":
        print(recv(a[0], int(a[1]), float(a[2]), float(a[3])), flush=True)
    else:
        print(send(a[0], int(a[1]), int(a[2]), float(a[3]), a[4] if len(a) > 4 else ""))
