"""Mistakes mypy must catch in code using sipedge: each line marked ``# E``
is an error, no other line is (tests/test_typing.py; nothing here runs)."""
from __future__ import annotations

import sipedge


def mistakes(al: sipedge.Allowlist, clf: sipedge.Classifier) -> None:
    al.match(12345)  # E
    sipedge.Target("sip:sbc1.example.com", priority="ten", weight=1)  # E
    clf.classify("text")  # E
    sipedge.TargetSet([sipedge.Target("sip:a.example.com", 10, 10)]).pick(key=1.5)  # E
    al.no_such_method()  # E
    sipedge.Allowlist.twilio().match("192.0.2.1").role  # E
