"""Find and watch the targets: RFC 3263 resolution (dnspython, TTL cache) and
SIP OPTIONS probing (asyncio) that feeds the health of a :class:`sipedge.TargetSet`.

::

    from sipedge.locate import Resolver, Prober, termination_order

    r = Resolver(nameservers=["192.0.2.53"])
    r.resolve("sip:example.test").destinations       # failover order, addresses and ports
    termination_order("acme", ["ashburn", "umatilla"], resolver=r)   # Twilio, edge after edge

See :mod:`sipedge.locate.resolve` and :mod:`sipedge.locate.probe` for the rules.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

from .probe import (LocalHealth, ProbeResult, Prober, ProbeTarget, TargetStatus,
                    TWILIO_MIN_INTERVAL, parse_reply_codes, probe)
from .resolve import Destination, Resolution, Resolver, Step, resolve

__all__ = ["Resolver", "Resolution", "Destination", "Step", "resolve", "Prober", "ProbeTarget",
           "ProbeResult", "TargetStatus", "LocalHealth", "TWILIO_MIN_INTERVAL",
           "parse_reply_codes", "probe", "termination_order"]


def termination_order(domain: str, edges: Sequence[Optional[str]], *, resolver: Any = None,
                      timeout: Optional[float] = None) -> list:
    """:func:`sipedge.select.termination_order` that resolves by itself: edge after
    edge (``None`` = the unlocalized name), every address of each host name
    (RFC 3263: NAPTR, SRV, A), the FQDN kept in ``Attempt.host`` for the
    Request-URI and the address in ``Attempt.address`` for the destination.
    An edge whose name does not resolve is left out (the others are still
    tried); when none resolves, :class:`~sipedge.errors.ResolveError` names
    each failure.
    """
    from ..twilio import catalog
    from ..errors import ResolveError
    from ..select import NO_ANSWER_TIMEOUT, termination_order as _order

    if isinstance(edges, str):
        edges = [edges]
    r = resolver if resolver is not None else Resolver()
    resolved: dict[str, list[str]] = {}
    failures = []
    for e in edges:
        host = catalog.termination_host(domain, e)
        try:
            res = r.resolve(f"sip:{host}")
        except ResolveError as err:
            failures.append(str(err))
            continue
        resolved[host] = [d.address for d in res.destinations]
    if not resolved:
        raise ResolveError("no termination host resolved: " + "; ".join(failures))
    return _order(domain, edges, resolved,
                  timeout=NO_ANSWER_TIMEOUT if timeout is None else timeout)
