"""The live state of sipedge's table as read from the kernel."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ...desired import OWNER_COMMENT


@dataclass
class LiveSet:
    name: str
    key_type: int
    flags: int
    intervals: tuple
    packed: Optional[bytes] = None  # the contents as pack_intervals bytes, when known that way


@dataclass
class LiveChain:
    name: str
    hooknum: Optional[int]
    priority: Optional[int]
    type: Optional[str]
    policy: Optional[int]
    rules: list = field(default_factory=list)  # [canonical rule], in chain order

    def signature(self) -> tuple:
        """Everything but the name: what a structural comparison looks at."""
        return (self.hooknum, self.priority, self.type, self.policy, tuple(self.rules))


@dataclass
class Live:
    exists: bool = False
    genid: int = 0
    owner: Optional[str] = None  # the table's comment (NFTA_TABLE_USERDATA)
    chains: dict = field(default_factory=dict)  # name -> LiveChain
    sets: dict = field(default_factory=dict)  # name -> LiveSet
    rules: list = field(default_factory=list)  # [(chain, canon, packets, bytes, handle)]

    @property
    def owned(self) -> bool:
        """True when the table carries sipedge's mark (or does not exist)."""
        return not self.exists or self.owner == OWNER_COMMENT
