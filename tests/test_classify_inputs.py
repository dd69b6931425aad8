"""Classifier arguments: both implementations accept and refuse the same
frames, link types and capture buffers, with the same exception types."""
from __future__ import annotations

import array
import os

import pytest
from scapy.all import IP, UDP, Ether, raw

from classify_util import SIP_INVITE, allowlist, pcap_bytes
from sipedge.errors import InputError

FRAME = raw(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
            / IP(src="192.0.2.10", dst="203.0.113.5") / UDP(sport=5060, dport=5060) / SIP_INVITE)


@pytest.fixture
def clf(impl):
    return impl("classify").Classifier(allowlist())


def test_non_contiguous_frame_is_read_like_its_bytes(clf):
    """A strided memoryview is classified as the bytes it shows."""
    doubled = bytes(b for x in FRAME for b in (x, 0xEE))
    view = memoryview(doubled)[::2]
    assert not view.c_contiguous and view.tobytes() == FRAME
    want = clf.classify(FRAME)
    assert want.kind == "sip" and want.trusted
    assert clf.classify(view) == want
    assert clf.code(view) == clf.code(FRAME)


@pytest.mark.parametrize("frame", [bytearray(FRAME), memoryview(FRAME), array.array("B", FRAME)])
def test_bytes_like_frames(clf, frame):
    assert clf.classify(frame) == clf.classify(FRAME)


@pytest.mark.parametrize("frame", [40, [0] * 40, "INVITE sip:a SIP/2.0\r\n", None])
def test_a_frame_must_be_bytes_like(clf, frame):
    """bytes(40) would be 40 zero bytes: an int is refused, not taken as a length."""
    with pytest.raises(TypeError):
        clf.classify(frame)
    with pytest.raises(TypeError):
        clf.code(frame)


@pytest.mark.parametrize("linktype", [-1, -(2 ** 70), 2 ** 32, 2 ** 70])
def test_link_type_out_of_range(clf, linktype):
    """A pcap link type is 0..2**32-1; outside that it is an input error that
    names the range (never a silent 'not IP' verdict, nor OverflowError)."""
    with pytest.raises(InputError, match=r"0\.\.4294967295"):
        clf.classify(FRAME, linktype)
    with pytest.raises(InputError, match=r"0\.\.4294967295"):
        clf.code(FRAME, linktype)


@pytest.mark.parametrize("linktype", [1.0, "1", None])
def test_link_type_must_be_an_integer(clf, linktype):
    with pytest.raises(TypeError):
        clf.classify(FRAME, linktype)


@pytest.mark.parametrize("linktype", [0xFFFFFFFF, 2, 147])
def test_unknown_link_types_in_range_are_not_ip(clf, linktype):
    v = clf.classify(FRAME, linktype)
    assert v.kind == "other" and v.flags & 4 and v.proto == -1


def test_link_type_accepts_index_objects(clf):
    class LT:
        def __index__(self):
            return 1

    assert clf.classify(FRAME, LT()) == clf.classify(FRAME, 1)



def test_buffer_of_wider_items_is_read_as_bytes(clf):
    """classify_buffer reads the bytes of any buffer, whatever its item size."""
    pad = -len(pcap_bytes([FRAME, FRAME[:30], FRAME])) % 4
    # a valid capture whose length is a multiple of 4: stretch the last frame
    buf = pcap_bytes([FRAME, FRAME[:30], FRAME + b"\0" * pad])
    assert len(buf) % 4 == 0
    want = clf.classify_buffer(buf, frames=True)
    assert want.frames == 3
    for obj in (array.array("I", buf), memoryview(buf).cast("I"), bytearray(buf)):
        got = clf.classify_buffer(obj, frames=True)
        assert (got.frames, got.counts, list(got.codes)) == (3, want.counts, list(want.codes))


def test_non_contiguous_buffer_is_read_like_its_bytes(clf):
    buf = pcap_bytes([FRAME, FRAME])
    view = memoryview(bytes(b for x in buf for b in (x, 0)))[::2]
    assert not view.c_contiguous
    got = clf.classify_buffer(view)
    assert (got.frames, got.counts) == (2, clf.classify_buffer(buf).counts)


def test_allowlist_too_large_for_the_frame_codes(impl):
    """A per-frame code keeps 24 bits of allowlist value index (+1): a table
    with more values is refused up front instead of codes that silently name
    the wrong entry (native) or overflow array('I') (twin)."""
    from sipedge.errors import AllowlistError

    class Table:
        values = range(1 << 24)  # never materialized

    class Huge:
        table = Table()
        ports: dict = {}

    with pytest.raises(AllowlistError, match="16777215"):
        impl("classify").Classifier(Huge())


def test_report_frame_index_is_checked(clf):
    """Report.frame(i) takes a 0-based index into the capture; a negative or
    too large one is an IndexError naming the range, never frame number 0."""
    rep = clf.classify_buffer(pcap_bytes([FRAME, FRAME[:30]]), frames=True)
    assert [rep.frame(i).number for i in range(2)] == [1, 2]
    for bad in (-1, -2, 2, 10):
        with pytest.raises(IndexError, match="0-1"):
            rep.frame(bad)


def test_report_without_codes_refuses_frame_access(clf):
    rep = clf.classify_buffer(pcap_bytes([FRAME]))
    with pytest.raises(ValueError, match="frames=True"):
        rep.frame(0)
    with pytest.raises(ValueError, match="frames=True"):
        list(rep.iter_frames())


def test_capture_path_with_a_nul_byte(clf, tmp_path):
    """A NUL ends a C string: the native reader opened the file named by the
    text before it. Both refuse such a path with a CaptureError."""
    from sipedge.errors import CaptureError

    p = tmp_path / "c.pcap"
    p.write_bytes(pcap_bytes([FRAME]))
    assert clf.classify_pcap(p).frames == 1
    for bad in (str(p) + "\0junk", os.fsencode(str(p)) + b"\0"):
        with pytest.raises(CaptureError, match="NUL"):
            clf.classify_pcap(bad)


def test_capture_path_that_is_not_a_regular_file(clf, tmp_path):
    """A FIFO is refused at once (opening it used to wait for a writer), a
    directory too, with the same CaptureError in both implementations."""
    from sipedge.errors import CaptureError

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(CaptureError, match="not a regular file"):
        clf.classify_pcap(fifo)
    with pytest.raises(CaptureError, match="Is a directory"):
        clf.classify_pcap(tmp_path)
