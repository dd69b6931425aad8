"""Classify captured frames: SIP, RTP, RTCP, STUN, TLS or other, and trusted or not.

``Classifier(allowlist)`` (default: the embedded Twilio dataset) answers for
one frame (``classify(frame, linktype=1)`` -> :class:`Verdict`) or for a whole
pcap/pcapng capture in one native pass (``classify_pcap(path)`` /
``classify_buffer(image)`` -> :class:`Report` with counts by kind x trusted x
edge and, with ``frames=True``, one 32-bit code per frame). The rules are
listed in ``sipedge._py.classify`` and docs/classify.md.

The native implementation (``sipedge._classify``) is used when built; the
pure-Python twin (``sipedge._py.classify``) gives identical results. What
both share (kinds, flag bits, :class:`Report`, :class:`FrameInfo`) lives in
:mod:`sipedge.classify._common`. ``Classifier`` and ``Verdict`` are resolved
on first use, so that importing the shared module (as both implementations
do) does not load an implementation.
"""
from __future__ import annotations

from typing import Any

from ._common import F_BAD as BAD
from ._common import F_FRAG_FIRST as FRAG_FIRST
from ._common import F_FRAG_LATER as FRAG_LATER
from ._common import F_NOT_IP as NOT_IP
from ._common import KINDS, FrameInfo, Report

__all__ = ["Classifier", "Verdict", "Report", "FrameInfo", "KINDS",
           "FRAG_FIRST", "FRAG_LATER", "NOT_IP", "BAD"]


def __getattr__(name: str) -> Any:
    if name in ("Classifier", "Verdict"):
        from .. import _impl

        value = getattr(_impl.load("classify"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
