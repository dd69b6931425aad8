"""Firewall: desired state from an Allowlist, nft/ipset backends, plan/apply/status/remove.

::

    from sipedge.allowlist import Allowlist
    from sipedge.firewall import Options, apply, desired_state

    d = desired_state(Allowlist.twilio(), mode="enforce")   # what the kernel should hold
    apply(d, Options(netns="sbc"))                           # create, sync or change gaplessly

* :mod:`.desired` - the model: table ``inet sipedge`` (marked as sipedge's),
  interval sets per role and IP version, a base chain on the input hook:
  conntrack and loopback accepts, then the carrier's sets to the SBC's own
  SIP/RTP ports (:class:`~.desired.SbcPorts`), then drops (docs/firewall.md).
* :mod:`.safety` - refusals before any change: drops on the namespace's
  ephemeral ports or SSH.
* :mod:`.ruleset` - the same state as ``nft -f`` text (``sipedge firewall plan``).
* :mod:`.backends` - the :class:`~.backends.Backend` protocol;
  :mod:`.backends.nft` (nf_tables over netlink: encoder, decoder, live model,
  backend) and :mod:`.backends.ipset` (``hash:net`` sets plus iptables rules).
* :mod:`.netlink` - a raw NETLINK_NETFILTER socket: one-sendmsg batches, dumps.
* :mod:`.ops` - plan / apply / status / remove with the lock, the applied-state
  cache and the Prometheus textfile metrics (:mod:`.state`).

The backends import pyroute2 only when used (nft: only to decode a live table
that the applied-state cache cannot vouch for), so ``plan`` works without it
and without root.
"""
from .desired import Desired, SbcPorts, desired_state, sbc_ports
from .ops import Options, apply, plan, remove, status
from .ruleset import render, render_desired

__all__ = ["Desired", "SbcPorts", "desired_state", "sbc_ports", "Options", "apply", "plan", "remove",
           "status", "render", "render_desired"]
