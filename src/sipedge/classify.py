"""Classify captured frames: SIP, RTP, RTCP, STUN, TLS or other, and trusted or not.

``Classifier(allowlist)`` (default: the embedded Twilio dataset) answers for
one frame (``classify(frame, linktype=1)`` -> :class:`Verdict`) or for a whole
pcap/pcapng capture in one native pass (``classify_pcap(path)`` /
``classify_buffer(image)`` -> :class:`Report` with counts by kind x trusted x
edge and, with ``frames=True``, one 32-bit code per frame). The rules are
listed in ``sipedge._py.classify`` and docs/classify.md.

The native implementation (``sipedge._classify``) is used when built; the
pure-Python twin (``sipedge._py.classify``) gives identical results.
"""
from __future__ import annotations

from . import _impl
from ._py.classify import KINDS, FlowLimits, FrameInfo, Report

_classify = _impl.load("classify")

Classifier = _classify.Classifier
Verdict = _classify.Verdict

#: flag bits of Verdict.flags and of the per-frame codes (bits 4-7)
FRAG_FIRST, FRAG_LATER, NOT_IP, BAD = 1, 2, 4, 8

__all__ = ["Classifier", "Verdict", "Report", "FrameInfo", "FlowLimits", "KINDS",
           "FRAG_FIRST", "FRAG_LATER", "NOT_IP", "BAD"]
