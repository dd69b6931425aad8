"""Firewall: desired state from an Allowlist, nft/ipset backends, plan/apply/status/remove.

::

    from sipedge.allowlist import Allowlist
    from sipedge.firewall import Options, apply, desired_state

    d = desired_state(Allowlist.twilio(), mode="enforce")   # what the kernel should hold
    apply(d, Options(netns="sbc"))                           # create or sync, one transaction

* :mod:`.desired` - the state sipedge keeps: table ``inet sipedge``, interval
  sets per role and IP version, a base chain on the input hook whose rules
  match only the SBC's ports.
* :mod:`.ruleset` - the same state as ``nft -f`` text (``sipedge firewall plan``).
* :mod:`.nft` - nf_tables over netlink (messages as pyroute2 encodes them), every change
  one batch transaction; later syncs change only the set elements that differ.
* :mod:`.backends.ipset` - ``hash:net`` sets swapped in atomically plus iptables rules.
* :mod:`.ops` - plan / apply / status / remove with the lock, the msgpack
  snapshot of the last apply and the Prometheus textfile metrics (:mod:`.state`).

The backends import pyroute2 only when used (nft: only to read a live table
that the snapshot cannot vouch for), so ``plan`` works without it and without
root.
"""
from .desired import Desired, desired_state
from .ops import Options, apply, plan, remove, status
from .ruleset import render, render_desired

__all__ = ["Desired", "desired_state", "Options", "apply", "plan", "remove", "status", "render",
           "render_desired"]
