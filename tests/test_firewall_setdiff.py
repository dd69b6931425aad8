"""The sorted-record set difference behind the firewall's diff sync, both implementations."""
from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from conftest import scaled


def pack(values, rec):
    return b"".join(v.to_bytes(rec, "big") for v in sorted(set(values)))


def test_diff_of_two_sets(impl):
    sd = impl("setdiff")
    a, b = pack([1, 5, 9, 12], 8), pack([5, 7, 12, 99], 8)
    only_a, only_b = sd.sorted_diff(a, b, 8)
    assert only_a == pack([1, 9], 8) and only_b == pack([7, 99], 8)
    assert sd.sorted_diff(b"", b"", 8) == (b"", b"")
    assert sd.sorted_diff(a, b"", 8) == (a, b"")
    assert sd.sorted_diff(b"", b, 8) == (b"", b)


def test_rejects_unsorted_and_ragged_input(impl):
    sd = impl("setdiff")
    with pytest.raises(ValueError, match="not strictly ascending"):
        sd.sorted_diff(struct.pack(">QQ", 5, 1), b"", 8)
    with pytest.raises(ValueError, match="not strictly ascending"):
        sd.sorted_diff(b"", struct.pack(">QQ", 3, 3), 8)
    with pytest.raises(ValueError, match="record size"):
        sd.sorted_diff(b"\0" * 9, b"", 8)


def test_large_random_diff_matches_python_sets(impl):
    sd = impl("setdiff")
    rnd = random.Random(7)
    a = {rnd.getrandbits(64) for _ in range(20000)}
    b = set(list(a)[200:]) | {rnd.getrandbits(64) for _ in range(200)}
    only_a, only_b = sd.sorted_diff(pack(a, 8), pack(b, 8), 8)
    assert only_a == pack(a - b, 8) and only_b == pack(b - a, 8)


@settings(max_examples=scaled(150), deadline=None)
@given(st.sets(st.integers(0, 2 ** 256 - 1), max_size=40), st.sets(st.integers(0, 2 ** 256 - 1), max_size=40))
def test_native_and_python_agree_on_32_byte_records(a, b):
    from sipedge import _impl

    pa, pb = pack(a, 32), pack(b, 32)
    want = (pack(a - b, 32), pack(b - a, 32))
    assert _impl.python("setdiff").sorted_diff(pa, pb, 32) == want
    if not _impl.NO_EXTENSIONS:
        assert _impl.native("setdiff").sorted_diff(pa, pb, 32) == want
