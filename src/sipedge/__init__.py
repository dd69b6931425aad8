"""sipedge: the control plane of SIP session border controllers trunking with Twilio.

Choose where calls go (RFC 2782 weighted-priority selection), say what traffic
is whose (SIP/RTP/RTCP classification against Twilio's published ranges) and
program the firewall (nftables or ipset through netlink). The hot paths are C
(csrc/) with Cython bindings; every one has a pure-Python twin, selected with
``SIPEDGE_NO_EXTENSIONS=1`` (see :func:`implementation`).
"""
from ._impl import implementation
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

# The other exports are imported on first use (PEP 562), so a command such as
# `sipedge firewall apply` loads neither the selection nor the classifier.
_LAZY = {
    "Allowlist": "allowlist", "Entry": "allowlist", "Match": "allowlist", "PortRange": "allowlist",
    "Overrides": "twilio.overrides",
    "Attempt": "select", "Target": "select", "TargetSet": "select", "should_failover": "select",
    "termination_order": "select",
    "termination_host": "twilio.catalog",
    "OriginationURI": "twilio.uri", "parse_uri": "twilio.uri",
    "Classifier": "classify", "Verdict": "classify",
}

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

__all__ += ["Classifier", "Verdict"]


def __getattr__(name: str):
    from importlib import import_module

    mod = _LAZY.get(name)
    if mod is None:
        # a submodule (``sipedge.classify``), as the eager imports used to provide
        try:
            return import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{mod}"), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY))
