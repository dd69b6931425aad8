"""The README's examples as a user writes them: mypy must see real types here
(tests/test_typing.py runs it; nothing here is executed)."""
from __future__ import annotations

from typing import Optional, Union

from typing_extensions import assert_type

import sipedge
from sipedge.allowlist import Match
from sipedge.classify import Report


def catalog_and_allowlist() -> None:
    al = sipedge.Allowlist.twilio()
    assert_type(al, sipedge.Allowlist)
    assert_type(al.match("54.172.60.2"), Optional[Match])
    m = al.match(b"\x36\xac\x3c\x02")
    if m is not None:
        assert_type(m.role, str)
        assert_type(m.edge, Optional[str])
    assert_type("168.86.130.9" in al, bool)
    al = sipedge.Allowlist.load("my.toml")
    assert_type(al.select(["ashburn"]), sipedge.Allowlist)
    assert_type(al.roles, list[str])


def where_calls_go(call_id: str) -> None:
    ts = sipedge.TargetSet([sipedge.Target("sip:sbc1.example.com;edge=dublin", priority=10, weight=60),
                            sipedge.Target("sip:sbc2.example.com", priority=10, weight=20),
                            sipedge.Target("sip:sbc3.example.com", priority=10, weight=20)])
    assert_type(ts.order(), list[Union[sipedge.Target, str]])
    t = ts.pick(key=call_id)
    assert_type(t, Union[sipedge.Target, str])
    if isinstance(t, sipedge.Target):
        assert_type(ts.mark_failed(t), bool)
        assert_type(ts.mark_ok(t), bool)
        assert_type(t.priority, int)
    assert_type(sipedge.should_failover(486), bool)


def what_traffic_is_whose(frame_bytes: bytes, al: sipedge.Allowlist) -> None:
    clf = sipedge.Classifier(al)
    v = clf.classify(frame_bytes, linktype=1)
    assert_type(v, sipedge.Verdict)
    assert_type(v.kind, str)
    assert_type(v.trusted, bool)
    rep = clf.classify_pcap("call.pcap")
    assert_type(rep, Report)
    assert_type(rep.frames, int)
