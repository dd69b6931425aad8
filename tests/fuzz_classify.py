"""Fuzz target (atheris): random frames and capture images through the native
classifier and the Python twin, which must agree and never crash -- per frame,
and in the flow mode (capture images with small flow tables and windows, frame
sequences fed one by one to a flow session, and a call in progress -- SDP
announcements, then RTP, RTCP and UDPTL on the announced flows, which the
native flow mode decides from the flow first -- with bytes overwritten).

Run for a bounded time, e.g.::

    python3 tests/fuzz_classify.py -runs=50000 -max_total_time=30

(``make fuzz-classify``; tests/test_classify_fuzz.py runs it briefly).
Python code is instrumented for coverage; the C core is checked by running
every input through it (build with SIPEDGE_DEBUG=1 to add ASan/UBSan).
"""
import os
import sys

import atheris

_SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
if _SRC not in sys.path:
    sys.path.insert(0, _SRC)

with atheris.instrument_imports():
    from sipedge import _impl
    from sipedge.errors import CaptureError
    import sipedge._py.classify  # noqa: F401
    import sipedge._py.flow  # noqa: F401

AL = None
NAT = PY = None
CALL = b""  # the capture image of a call in progress (mode 6)
LINKTYPES = [1, 113, 276, 101, 228, 229, 0, 108, 147]


def _setup():
    global AL, NAT, PY, CALL
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from classify_util import GW, UAC, allowlist, pcap_bytes, rtcp_payload, rtp, t38_call, udp

    AL = allowlist()
    frames = t38_call()
    frames[2:2] = [udp(UAC, 20001, GW, 30001, rtcp_payload()),
                   udp(GW, 30000, UAC, 20000, rtp(9, 1440, pt=0x88, body=4))]
    CALL = pcap_bytes(frames)
    NAT = _impl.native("classify").Classifier(AL)
    PY = _impl.python("classify").Classifier(AL)


def _outcome(clf, data, flows=False, limits=(65536, 16384, 65536)):
    try:
        r = clf.classify_buffer(data, frames=True, flows=flows, limits=limits)
        return ("ok", r.frames, list(r.codes))
    except CaptureError as e:
        return ("err", str(e))


def _counts(clf, data, flows, limits, frames):
    try:
        r = clf.classify_buffer(data, frames=frames, flows=flows, limits=limits)
        return ("ok", r.frames, sorted(r.counts.items()))
    except CaptureError as e:
        return ("err", str(e))


def test_one(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 6)
    if mode == 6:  # a call in progress with bytes overwritten, flow mode
        limits = (fdp.ConsumeIntInRange(1, 64), fdp.ConsumeIntInRange(1, 16),
                  fdp.ConsumeIntInRange(1, 32))
        img = bytearray(CALL)
        while fdp.remaining_bytes() >= 3:
            img[24 + fdp.ConsumeIntInRange(0, len(img) - 25)] = fdp.ConsumeInt(1) & 0xFF
        img = bytes(img)
        a, b = _outcome(NAT, img, True, limits), _outcome(PY, img, True, limits)
        if a != b:
            raise AssertionError(f"flow outcome differs: native {a} python {b}: {img.hex()}")
        return
    if mode == 4:  # flow mode over a capture image, small tables
        limits = (fdp.ConsumeIntInRange(1, 64), fdp.ConsumeIntInRange(1, 16),
                  fdp.ConsumeIntInRange(1, 32))
        img = fdp.ConsumeBytes(fdp.remaining_bytes())
        a, b = _outcome(NAT, img, True, limits), _outcome(PY, img, True, limits)
        if a != b:
            raise AssertionError(f"flow outcome differs: native {a} python {b}: {img.hex()}")
        # a native run that only counts (no window of codes) counts as the twin with codes
        a, b = _counts(NAT, img, True, limits, False), _counts(PY, img, True, limits, True)
        if a != b:
            raise AssertionError(f"flow counts differ: native {a} python {b}: {img.hex()}")
        return
    if mode == 5:  # a flow session fed frames one by one
        limits = (fdp.ConsumeIntInRange(1, 16), fdp.ConsumeIntInRange(1, 8),
                  fdp.ConsumeIntInRange(1, 8))
        sn, sp = NAT.flow_session(limits), PY.flow_session(limits)
        while fdp.remaining_bytes():
            lt = LINKTYPES[fdp.ConsumeIntInRange(0, len(LINKTYPES) - 1)]
            frame = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 400))
            a, b = sn.classify(frame, lt)._astuple(), sp.classify(frame, lt)._astuple()
            if a != b or sn.relabelled != sp.relabelled:
                raise AssertionError(f"flow session differs: {a} {b} for {frame.hex()}")
        return
    if mode < 3:
        lt = LINKTYPES[fdp.ConsumeIntInRange(0, len(LINKTYPES) - 1)]
        frame = fdp.ConsumeBytes(fdp.remaining_bytes())
        a = NAT.classify(frame, lt)._astuple()
        b = PY.classify(frame, lt)._astuple()
        if a != b:
            raise AssertionError(f"native {a} != python {b} for {frame.hex()} linktype {lt}")
    else:
        img = fdp.ConsumeBytes(fdp.remaining_bytes())
        a, b = _outcome(NAT, img), _outcome(PY, img)
        if a != b:
            raise AssertionError(f"capture outcome differs: native {a} python {b}: {img.hex()}")


def main() -> None:
    _setup()
    atheris.Setup(sys.argv, test_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
