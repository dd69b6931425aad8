"""sipedge: the control plane of SIP session border controllers trunking with Twilio.

Choose where calls go (RFC 2782 weighted-priority selection), say what traffic
is whose (SIP/RTP/RTCP classification against Twilio's published ranges) and
program the firewall (nftables or ipset through netlink). The hot paths are C
(csrc/) with Cython bindings; every one has a pure-Python twin, selected with
``SIPEDGE_NO_EXTENSIONS=1`` (see :func:`implementation`).
"""
from ._impl import implementation
from .allowlist import Allowlist, Entry, Match, PortRange
from .overrides import Overrides
from ._version import __version__
from .errors import (
    AddressError,
    AllowlistError,
    CaptureError,
    CatalogError,
    FirewallError,
    InputError,
    SelectionError,
    SipedgeError,
    URIError,
    OverrideError,
    SnapshotError,
)
from .select import (
    Attempt,
    Target,
    TargetSet,
    should_failover,
    termination_order,
)
from .catalog import termination_host
from .uri import OriginationURI, parse_uri

__all__ = [
    "__version__",
    "implementation",
    "SipedgeError",
    "InputError",
    "AddressError",
    "AllowlistError",
    "CaptureError",
    "CatalogError",
    "FirewallError",
    "SelectionError",
    "URIError",
    "Target",
    "TargetSet",
    "Attempt",
    "should_failover",
    "termination_host",
    "termination_order",
    "OriginationURI",
    "parse_uri",
    "OverrideError",
    "SnapshotError",
    "Allowlist",
    "Match",
    "Entry",
    "PortRange",
    "Overrides",
]

from .classify import Classifier, Verdict  # noqa: E402

__all__ += ["Classifier", "Verdict"]
