"""Firewall backends behind one protocol: ``nft`` (nf_tables over netlink) and
``ipset`` (``hash:net`` sets plus iptables rules).

:func:`sipedge.firewall.ops.apply` drives a backend through :class:`Backend`:
read the live state, refuse a table that is not sipedge's, converge it to the
desired state (create, sync, or a gapless structural change), and, where the
backend has a generation counter, the cheap fast path (``genid`` + ``verify``
+ ``sync``) behind the applied-state cache.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Protocol, Tuple

if TYPE_CHECKING:
    from ..desired import Desired


class Backend(Protocol):
    name: str

    def __enter__(self) -> "Backend": ...

    def __exit__(self, *exc: Any) -> None: ...

    def genid(self) -> Optional[int]:
        """The ruleset generation (None: the backend has none, no fast path)."""

    def netns_cookie(self) -> Optional[int]:
        """The namespace's cookie (SO_NETNS_COOKIE) or None."""

    def read(self, table: str) -> Any:
        """The live state: ``.exists``, ``.genid``, ``.owned``, ``.sets`` (name -> ``.intervals``)."""

    def check_owner(self, table: str, live: Any) -> None:
        """Raise OwnershipError when *live* exists but is not sipedge's."""

    def structure_matches(self, d: "Desired", live: Any) -> bool: ...

    def converge(self, d: "Desired", live: Any) -> Dict[str, Any]:
        """Make the kernel equal *d*: ``{"action", "added", "deleted", "genid", "chain"}``."""

    def verify(self, d: "Desired", chain: Optional[str]) -> bool:
        """Cheap: table (owned), chain and sets exist."""

    def sync(self, d: "Desired", live_packed: Dict[str, bytes],
             genid: Optional[int] = None) -> Tuple[int, int, Optional[int]]:
        """Element changes only: (added, deleted, generation of the commit)."""

    def rule_report(self, d: "Desired", live: Any) -> List[Dict[str, Any]]: ...

    def remove(self, table: str) -> bool: ...
