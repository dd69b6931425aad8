"""The nftables backend: nf_tables over netlink.

* :mod:`.encode` - every message sipedge sends, byte for byte what pyroute2
  encodes (tests compare, tests/nft_reference.py); set elements packed straight
  from the packed intervals.
* :mod:`.decode` - the kernel's answers: set elements by hand, rules and chains
  with pyroute2's classes (imported only when the live table must be read).
* :mod:`.live` - the live table as read: chains, sets, rules, owner mark.
* :mod:`.backend` - :class:`NftBackend`: read, verify, converge (create, sync,
  gapless structural change), remove.
"""
from .backend import NftBackend, chain_names
from .decode import canon_rule, elements_to_intervals, parse_elements, rule_counter
from .encode import *  # noqa: F401,F403
from .encode import _EXPR_CACHE, _attr, _expr_bytes, _t  # noqa: F401
from .decode import _pr  # noqa: F401
from .encode import _parse_attrs  # noqa: F401
from .live import Live, LiveChain, LiveSet
