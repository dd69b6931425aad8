"""The one exception hierarchy of sipedge.

Every error sipedge raises on purpose is a :class:`SipedgeError`. Subclasses
also inherit the matching builtin, so ``except ValueError`` keeps working for
callers who do not know sipedge. Messages name the thing (file, line, value,
limit) and the fix; the CLI prints ``str(err)`` as one line on stderr and exits
with ``err.exit_code``.

Exit codes (also listed by ``sipedge --help``):
  0  success (for ``firewall apply``: applied, or nothing to change)
  1  unexpected internal error (a bug: please report it)
  2  usage error (bad command-line arguments)
  3  bad input: allowlist, URI, capture file, address, snapshot
  4  permission: not root / no CAP_NET_ADMIN
  5  the system cannot do it: kernel support, namespace, netlink, lock held
  6  no usable target (every target out of service, no disaster-recovery URL)
  7  drift: the live firewall differs from the desired state (``firewall status``)
  8  refused: the firewall change would break the host (drops on its ephemeral
     ports or SSH, a world-open prefix; ``--force`` overrides) or touch a table
     sipedge did not create
  9  applied, but writing the applied-state or metrics file failed afterwards
     (the firewall WAS changed; the message names the file)
"""
from __future__ import annotations

import os

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_PERMISSION = 4
EXIT_SYSTEM = 5
EXIT_NO_TARGET = 6
EXIT_DRIFT = 7
EXIT_REFUSED = 8
EXIT_APPLIED_WITH_ERRORS = 9


class SipedgeError(Exception):
    """Base class of every error sipedge raises on purpose."""

    exit_code = EXIT_INTERNAL


class InputError(SipedgeError, ValueError):
    """Bad input from the user: a file, a value, an argument."""

    exit_code = EXIT_INPUT


class AddressError(InputError):
    """Not an IPv4/IPv6 address or network."""


class CatalogError(InputError):
    """Unknown edge, region or host-name combination."""


class URIError(InputError):
    """An origination or webhook URI that cannot be used."""


class OverrideError(InputError):
    """A webhook connection-override fragment out of range."""


class AllowlistError(InputError):
    """A malformed allowlist file or value."""


class SnapshotError(InputError):
    """A compiled snapshot that is stale, corrupt or of another version."""


class CaptureError(InputError):
    """A capture file that cannot be read (not pcap/pcapng, truncated header)."""


class SelectionError(SipedgeError, LookupError):
    """No target can be chosen."""

    exit_code = EXIT_NO_TARGET


class FirewallError(SipedgeError, RuntimeError):
    """The firewall could not be read or changed; the kernel state is unchanged."""

    exit_code = EXIT_SYSTEM


class PermissionDenied(FirewallError, PermissionError):
    """Not root and no CAP_NET_ADMIN."""

    exit_code = EXIT_PERMISSION


class KernelSupportError(FirewallError):
    """The kernel lacks nf_tables / ip_set or a feature sipedge needs."""


class NamespaceError(FirewallError):
    """A network namespace that does not exist or cannot be entered."""


class LockError(FirewallError):
    """Another sipedge run holds the lock."""


class NetlinkError(FirewallError):
    """The kernel answered a netlink request with an error (``code``: the errno)."""

    def __init__(self, code: int, what: str, ext: str = "") -> None:
        self.code = code
        msg = f"kernel rejected {what}: {os.strerror(code)} (errno {code})"
        if ext:
            msg += f": {ext}"
        msg += "; nothing was changed"
        super().__init__(msg)


class UnsafeConfigError(InputError):
    """A firewall configuration that would break the host: drops on its ephemeral
    ports or on SSH, or a set that trusts every address. ``--force`` overrides."""

    exit_code = EXIT_REFUSED


class OwnershipError(FirewallError):
    """A table (or ipset set, iptables chain) that exists but was not created by sipedge."""

    exit_code = EXIT_REFUSED


class AppliedStateError(FirewallError):
    """The firewall's applied-state file is unusable (unreadable, corrupt, foreign)."""


class AppliedButUnrecorded(FirewallError):
    """The firewall change WAS committed, but writing a file after it failed."""

    exit_code = EXIT_APPLIED_WITH_ERRORS

    def __init__(self, msg: str, result: dict) -> None:
        super().__init__(msg)
        self.result = result
