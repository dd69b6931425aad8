"""Conformance with tshark on real captures read in place from ../shared/captures.

Each capture's per-frame kinds are compared with the ``.tshark.tsv`` labels
beside it (tshark 4.0, ``-o rtp.heuristic_rtp:TRUE``). Known, documented
differences of method, not of rules:

- sip_tcp_websocket.pcap and sip_sctp.pcap: a SIP message split over several
  TCP segments / SCTP fragments is labelled SIP by tshark on its LAST segment
  (after reassembly); sipedge classifies each frame alone and labels the FIRST
  one (it holds the start line). Each such message costs one disagreement.
"""
from __future__ import annotations

import glob
import os

import pytest

from conftest import IN_CI, _missing
from tshark_compare import compare, read_tsv

HERE = os.path.dirname(os.path.abspath(__file__))
CAPTURES = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "captures"))

# minimum agreement on frames tshark calls SIP or RTP; 0.995 unless noted above
FLOORS = {"sip_tcp_websocket.pcap": 0.85, "sip_sctp.pcap": 0.75}


def _captures():
    return sorted(glob.glob(os.path.join(CAPTURES, "*.pcap"))
                  + glob.glob(os.path.join(CAPTURES, "*.pcapng")))


def _require_captures():
    if not os.path.isdir(CAPTURES) or not _captures():
        _missing(f"the shared captures are missing at {CAPTURES} (../shared/captures)")


def _kinds(clf, path):
    from sipedge.classify import KINDS

    rep = clf.classify_pcap(path, frames=True)
    return [KINDS[c & 7] for c in rep.codes]


def test_shared_captures_present():
    _require_captures()
    assert len(_captures()) >= 8 or not IN_CI


@pytest.mark.parametrize("name", [os.path.basename(p) for p in _captures()] or ["<none>"])
def test_agreement_with_tshark(impl, name):
    _require_captures()
    path = os.path.join(CAPTURES, name)
    tsv = path.rsplit(".", 1)[0] + ".tshark.tsv"
    clf = impl("classify").Classifier()
    a = compare(read_tsv(tsv), _kinds(clf, path))
    print(f"{name}: {a.agree}/{a.sip_rtp} = {a.ratio:.2%} of SIP/RTP frames agree; "
          f"mismatches (tshark, sipedge): {a.mismatches}")
    assert a.never_rtp_as_rtp == 0
    assert a.ratio >= FLOORS.get(name, 0.995), a


def test_overall_agreement(impl):
    _require_captures()
    clf = impl("classify").Classifier()
    tot = agree = 0
    for path in _captures():
        a = compare(read_tsv(path.rsplit(".", 1)[0] + ".tshark.tsv"), _kinds(clf, path))
        tot += a.sip_rtp
        agree += a.agree
    assert tot > 8000
    assert agree / tot >= 0.995, (agree, tot)
